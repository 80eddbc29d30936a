"""MASH information requests as an agency's receipt listener keeps them, for tests of the
agency's side (its push endpoint, its CLI)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from producers.information_requests import InformationRequest, InformationRequests
from safeguard.parties import LA
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.store.db import write_transaction

ASKED_AT = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)


def information_request(agency: str, **changes: Any) -> InformationRequest:
    """An Amber request of Camden's MASH to ``agency`` about Amira, due 24 working hours on
    (the deadline here: a day after it was asked, in the past)."""
    fields: dict[str, Any] = {
        "agency": agency, "request_id": uuid.uuid4(), "local_authority": LA,
        "rating": "AMBER", "deadline": ASKED_AT + timedelta(days=1),
        "asked": "Attendance, exclusions and any concerns this term",
        "requested_by": "mash-duty-1", "requested_at": ASKED_AT, "family_told": False,
        "family_exception": "RISK_TO_CHILD", "nhs_number": make_nhs_number(61),
        "upn": make_upn(61), "given_name": "Amira", "family_name": "Zephyrine",
        "date_of_birth": date(2016, 4, 1), "postcode": None,
        "received_at": ASKED_AT + timedelta(minutes=1),
    }  # fmt: skip
    return InformationRequest(**(fields | changes))


async def keep(engine: AsyncEngine, book: InformationRequests, *asked: InformationRequest) -> None:
    """Keep ``asked`` as the receipt listener does."""
    async with write_transaction(engine) as conn:
        await book.persist(conn, list(asked))
