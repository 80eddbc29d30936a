"""The open-case list: which children the LAs a school serves have open to social care.

Once an allocation update from a local authority is committed, the gateway sends every
school that serves the LA (trust directory ``serves``) an ``OpenCaseList`` sealed for that
school with purpose ALLOCATIONS on ``sgx.receipts.<school>``. The list holds child
pseudonyms, never identifiers: a school learns only which of its own pupils are open,
because it can compute a pseudonym only for a child it already knows. It is the union of
the open cases of every LA the school serves, and does not say which LA holds which child.

Each list is the school's complete current list (it replaces its earlier one), so a
lost or replayed list is healed by the next. The child keys are the pseudonyms of the
NHS number and, separately, of the UPN, exactly as the allocation directory keys them
(``Pseudonymiser.identifier_keys``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from gateway.allocations import AllocationDirectory
from sgx.errors import ContractError
from sgx.keys.pseudonym import PSEUDONYM_LEN
from sgx.keys.trust import TrustDirectory
from sgx.wire.contract import OPEN_CASE_LIST


def open_case_list(
    school_id: str, child_keys: Iterable[bytes], issued_at: datetime
) -> dict[str, Any]:
    """The ``OpenCaseList`` record: keys de-duplicated and sorted (the order tells nothing)."""
    if issued_at.tzinfo is None:
        raise ContractError("issued_at", "must be timezone-aware", schema=OPEN_CASE_LIST)
    keys = sorted(set(child_keys))
    for index, key in enumerate(keys):
        if len(key) != PSEUDONYM_LEN:
            problem = f"is {len(key)} bytes; a child pseudonym is {PSEUDONYM_LEN}"
            raise ContractError(f"child_keys[{index}]", problem, schema=OPEN_CASE_LIST)
    return {"school_id": school_id, "issued_at": issued_at, "child_keys": keys}


async def lists_for(
    local_authorities: Iterable[str],
    trust: TrustDirectory,
    directory: AllocationDirectory,
    issued_at: datetime,
) -> dict[str, dict[str, Any]]:
    """The open-case list of every school serving one of ``local_authorities``, by school,
    read from the committed snapshot (schools serving the same LAs share one read)."""
    lists: dict[str, dict[str, Any]] = {}
    unions: dict[tuple[str, ...], list[bytes]] = {}
    for la in sorted(set(local_authorities)):
        for school in trust.serving(la, "school"):
            if school.id in lists:
                continue
            served = trust.served(school.id)
            if served not in unions:  # sorted and unique: checked once, shared by its schools
                keys = await directory.open_case_keys(served)
                unions[served] = open_case_list(school.id, keys, issued_at)["child_keys"]
            keys = unions[served]
            lists[school.id] = {"school_id": school.id, "issued_at": issued_at, "child_keys": keys}
    return lists
