"""A school's producer process for the outbox kill test (run with ``python -m``).

    python -m tests.integration.outbox_producer HOME BOOTSTRAP COUNT

Adds COUNT attendance updates one at a time to the school's outbox while its relay and
receipt listener run, then waits until the gateway has receipted every one of them as
DELIVERED and exits 0. The notification ids are fixed (uuid5 of the index), so a run
restarted after SIGKILL re-adds the same notifications, as an agency system re-submitting
after a crash would; the outbox keeps the first copy of each.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from producers.relay import RelayOptions
from safeguard import samples
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import SCHOOL
from sgx.domain.identifiers import make_nhs_number
from sgx.wire import contract as c
from tests.integration.harness import make_runtime

NAMESPACE = uuid.UUID("5a6f0f4e-0d7c-4b7e-9a51-6f1b2f3c4d5e")
CHILDREN = [samples.child(make_nhs_number(8100 + i)) for i in range(20)]
ALLOCATE = samples.allocation_update(
    [(ch["nhs_number"], None, f"sw-{i % 4}", "Team", "tm-1") for i, ch in enumerate(CHILDREN)]
)
PACE_S = 0.03
OPTIONS = RelayOptions(batch_size=20, poll_interval=0.2, send_timeout=5.0, backoff_cap=1.0)


def notification_id(index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"outbox-kill-{index}")


def record(index: int) -> dict[str, Any]:
    made = samples.attendance_update(CHILDREN[index % len(CHILDREN)])
    made["notification_id"] = notification_id(index)
    return made


async def produce(home: Path, bootstrap: str, count: int) -> None:
    idempotent = os.environ.get("SGX_KAFKA_IDEMPOTENCE", "true") == "true"  # Tansu: false
    rt = make_runtime(home, bootstrap, idempotence=idempotent)
    async with running_outbox(rt, SCHOOL, options=OPTIONS) as outbox:
        for index in range(count):
            await outbox.add(c.ATTENDANCE_UPDATE, record(index))
            # paced as an agency's system feeds it, so that the stream lasts seconds and
            # a kill after the first acknowledgements lands in it however busy the machine
            # (flat out, a loaded machine's test saw all 200 acknowledged before it looked)
            await asyncio.sleep(PACE_S)
        print("added", flush=True)
        while True:
            entries = await outbox.store.entries(SCHOOL)
            if len(entries) == count and all(e.status == "DELIVERED" for e in entries):
                break
            await asyncio.sleep(0.1)
    print("delivered", flush=True)


if __name__ == "__main__":
    asyncio.run(produce(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
