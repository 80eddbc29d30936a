"""sgx.wire.ids: the ids the exchange mints are UUIDv7s, ordered as they were minted (so
the indexes keyed by them grow at their end; benchmarks/history.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sgx.wire.ids import new_id


def test_ids_are_version_7_uuids_ordered_as_minted() -> None:
    before = int(datetime.now(UTC).timestamp() * 1000)
    ids = [new_id() for _ in range(2_000)]
    after = int(datetime.now(UTC).timestamp() * 1000)
    assert all(type(i) is uuid.UUID and i.version == 7 for i in ids)
    times = [i.int >> 80 for i in ids]
    assert times == sorted(times), "ordered by the millisecond they were minted in"
    assert before <= times[0] <= times[-1] <= after, "which is the clock's, never ahead"
    by_text = sorted(ids, key=str)
    assert [i.int >> 80 for i in by_text] == times, "as text too (the stores' keys)"
    assert len(set(ids)) == len(ids)
    assert all(i.variant == uuid.RFC_4122 for i in ids)


def test_the_producers_and_the_gateway_mint_ids_with_it() -> None:
    """Every place that minted a uuid4 for a message, notification or request now mints
    with new_id (a uuid4 put each new row on a random page of every index keyed by it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    minting = [
        f"{path.relative_to(root)}:{n}"
        for top in ("producers", "gateway", "consumers", "safeguard", "sgx")
        for path in sorted((root / top).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "uuid.uuid4()" in line and "hex[:" not in line  # an instance name is no key
    ]
    assert not minting, minting
