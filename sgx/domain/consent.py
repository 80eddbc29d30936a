"""The author's consent to one onward share: what it lifts, and what a request must say.

A consent request names one delivered item, one recipient category and one purpose; the
author's answer covers exactly that. A granted consent lifts, for that category and
purpose, the third-party restriction (``THIRD_PARTY_AUTHOR_CONSENT``) and the author's
own restrictions. It never lifts ``POLICE_CONFIDENTIAL_TO_PROCEEDINGS`` on its own:
police material disclosed under the 2013 / 2024 Protocol goes to parents or other
agencies only under a court order, so that restriction is lifted only by a grant that
records the order (:data:`COURT_ORDER_ONLY`).

Purposes are compared as words (:func:`purpose_key`: case and runs of spaces do not
matter), so "Child protection conference" and "child  protection conference" are one
purpose, and "planning" another.

The checks here (:func:`check_request`, :func:`check_answer`) are the contract rules of
the consent records beyond their Avro schema; a failure is a ContractError naming the
field. The LA, the author's producer and the gateway all apply them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sgx.domain.restrictions import FORBIDS
from sgx.errors import ContractError

COURT_ORDER_ONLY = frozenset({"POLICE_CONFIDENTIAL_TO_PROCEEDINGS"})
PURPOSE_MAX = 500  # characters: a purpose is a sentence, not the case notes
NAME_MAX = 200
TEXT_MAX = 1000


@dataclass(frozen=True, slots=True)
class Grant:
    """A consent the author gave for one (item, LA, category, purpose)."""

    request_id: str
    purpose: str
    answered_by: str
    court_order: str | None


def purpose_key(purpose: str) -> str:
    """The purpose as compared: words joined by one space, case folded."""
    return " ".join(purpose.split()).casefold()


def blocking(codes: Iterable[str], consents: Iterable[str], category: str) -> list[str]:
    """The restriction codes an onward share to ``category`` breaks, before any grant.

    A consent the author put on the record itself (``sharing.onward_consent``) lifts them
    for that category, except those only a court order lifts.
    """
    consented = category in set(consents)
    return [
        code
        for code in dict.fromkeys(codes)
        if category in FORBIDS.get(code, frozenset())
        and (not consented or code in COURT_ORDER_ONLY)
    ]


def still_blocked(codes: Iterable[str], grant: Grant | None) -> list[str]:
    """Of the ``codes`` a share breaks, those a ``grant`` (if any) does not lift."""
    if grant is None:
        return list(codes)
    return [code for code in codes if code in COURT_ORDER_ONLY and not grant.court_order]


def _text(record: Mapping[str, Any], name: str, limit: int, schema: str) -> None:
    value = record.get(name)
    if value is None:
        return
    if not str(value).strip():
        raise ContractError(name, "must not be blank", schema=schema)
    if len(str(value)) > limit:
        raise ContractError(
            name, f"is {len(str(value))} characters; at most {limit}", schema=schema
        )


def check_request(record: Mapping[str, Any], schema: str) -> None:
    """The rules of a ConsentRequest beyond its schema."""
    _text(record, "requested_by", NAME_MAX, schema)
    _text(record, "purpose", PURPOSE_MAX, schema)
    if record.get("category") == "LA_SOCIAL_CARE":
        raise ContractError(
            "category",
            "sharing within the LA's social care needs no consent; ask for another category",
            schema=schema,
        )


def check_answer(record: Mapping[str, Any], schema: str) -> None:
    """The rules of a ConsentAnswer beyond its schema."""
    _text(record, "answered_by", NAME_MAX, schema)
    _text(record, "reason", TEXT_MAX, schema)
    _text(record, "court_order", TEXT_MAX, schema)
    if not record.get("granted") and record.get("court_order"):
        raise ContractError("court_order", "is recorded only with a grant", schema=schema)
