"""The open-case list: which children the LAs a school serves have open to social care.

Once an allocation update from a local authority is committed, the gateway sends every
school that serves the LA (trust directory ``serves``) an ``OpenCaseList`` sealed for that
school with purpose ALLOCATIONS on ``sgx.receipts.<school>`` (or its connector's): when
and how, :mod:`gateway.open_case_sender`. The list holds child
pseudonyms, never identifiers: a school learns only which of its own pupils are open,
because it can compute a pseudonym only for a child it already knows. It is the union of
the open cases of every LA the school serves, and does not say which LA holds which child.

Each list is the school's complete current list (it replaces its earlier one), so a
lost or replayed list is healed by the next. The child keys are the pseudonyms of the
NHS number and, separately, of the UPN, exactly as the allocation directory keys them
(``Pseudonymiser.identifier_keys``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sgx.errors import ContractError
from sgx.keys.pseudonym import PSEUDONYM_LEN
from sgx.keys.trust import TrustDirectory
from sgx.wire.avro import split
from sgx.wire.codec import avro_string
from sgx.wire.contract import OPEN_CASE_LIST, Contract


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


def served_sets(
    local_authorities: Iterable[str], trust: TrustDirectory
) -> dict[tuple[str, ...], list[str]]:
    """The schools serving any of ``local_authorities``, grouped by the LAs each serves
    (sorted: schools serving the same LAs get the same list, read and encoded once)."""
    sets: dict[tuple[str, ...], list[str]] = {}
    seen: set[str] = set()
    for la in sorted(set(local_authorities)):
        for school in trust.serving(la, "school"):
            if school.id not in seen:
                seen.add(school.id)
                sets.setdefault(trust.served(school.id), []).append(school.id)
    return sets


def encoded_lists(
    contract: Contract, school_ids: Sequence[str], child_keys: Iterable[bytes], issued_at: datetime
) -> Iterator[tuple[str, bytes]]:
    """Each school's ``OpenCaseList``, single-object encoded, checked and encoded once for
    all of them: the lists differ only in ``school_id``, the record's first field, so each
    is the shared encoding with that field's bytes in place. Encoding the list again per
    school cost 1.5 ms for 6,600 pseudonyms; 24,757 schools serve the LAs of a nation."""
    if not school_ids:
        return
    record = open_case_list(school_ids[0], child_keys, issued_at)
    contract.check(OPEN_CASE_LIST, record)
    blank = contract.encode(OPEN_CASE_LIST, {**record, "school_id": ""}, check=False)
    _, body = split(blank)
    if body[:1] != avro_string(""):  # the schema's first field is no longer school_id
        raise ContractError("school_id", "is not the first field", schema=OPEN_CASE_LIST)
    head, tail = blank[: len(blank) - len(body)], bytes(body[1:])
    for school_id in school_ids:
        yield school_id, b"".join((head, avro_string(school_id), tail))
