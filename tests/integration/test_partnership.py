"""A partnership of two LAs, end to end through a real Kafka-protocol broker.

Camden and Islington each run their own delivery consumer; the Royal Free and the Met
serve both, each borough has a school (safeguard.parties). Every test asserts the queue of
every worker, supervisor and MASH of BOTH LAs, so a delivery to the wrong authority fails
as surely as a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from safeguard import samples
from safeguard.parties import HEALTH, LA, LA_GSS, OTHER_LA, OTHER_LA_GSS, POLICE, SCHOOL
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.wire import contract as c
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

QUEUES = {
    LA: ("sw-amara", "sw-ben", "tm-jones", "tm-lee", f"mash:{LA}"),
    OTHER_LA: ("sw-ines", "tm-okoro", f"mash:{OTHER_LA}"),
}
AMIRA = samples.child(make_nhs_number(31), make_upn(31), given="Amira", family="Camden")
NOAH = samples.child(make_nhs_number(32), None, given="Noah", family="Islington")
ZARA = samples.child(None, make_upn(33), given="Zara", family="Moving")
CAMDEN = samples.allocation_update(
    [(AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Team 1", "tm-jones")]
)
ISLINGTON = samples.allocation_update(
    [(NOAH["nhs_number"], None, "sw-ines", "North", "tm-okoro")], la=OTHER_LA
)


@asynccontextmanager
async def partnership(tmp_path: Path) -> AsyncIterator[Exchange]:
    """The demo partnership with both LAs' consumers running and both LAs' allocations."""
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        await ex.allocate(CAMDEN)
        await ex.allocate(ISLINGTON)
        yield ex


async def everything(ex: Exchange) -> dict[tuple[str, str], list[str]]:
    """(LA, queue id) -> notification ids queued there, for every queue of both LAs."""
    return {
        (la, queue): [v.item.notification_id for v in await ex.queue(queue, la)]
        for la, queues in QUEUES.items()
        for queue in queues
    }


async def sent_to(
    ex: Exchange, agency: str, name: str, record: dict[str, Any], rows: int
) -> tuple[str, dict[tuple[str, str], list[str]]]:
    """Publish, wait until both LAs hold ``rows`` more queue rows in all, and return what
    every queue holds."""
    before = await ex.queue_rows(LA) + await ex.queue_rows(OTHER_LA)
    sent = str(await ex.publish(agency, name, record))

    async def arrived() -> bool:
        return await ex.queue_rows(LA) + await ex.queue_rows(OTHER_LA) >= before + rows

    await eventually(arrived, f"{rows} queue rows for {name}")
    return sent, await everything(ex)


def holding(queues: dict[tuple[str, str], list[str]], sent: str) -> set[tuple[str, str]]:
    return {where for where, ids in queues.items() if sent in ids}


async def test_a_child_allocated_in_islington_reaches_islington_whoever_sends(
    tmp_path: Path,
) -> None:
    """The Royal Free serves both boroughs; Noah is Islington's: Camden sees nothing."""
    async with partnership(tmp_path) as ex:
        sent, queues = await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(NOAH), 2)
        assert holding(queues, sent) == {(OTHER_LA, "sw-ines"), (OTHER_LA, "tm-okoro")}
        assert await ex.queue_rows(LA) == 0
        async with ex.gateway_store() as store:
            records = await store.audit_records(notification_id=sent)
        assert {(r.local_authority, r.recipient, r.reason) for r in records} == {
            (OTHER_LA, "sw-ines", "ALLOCATED_WORKER"),
            (OTHER_LA, "tm-okoro", "SUPERVISOR"),
        }
        assert all(f"open to {OTHER_LA}" in r.detail for r in records)


async def test_a_child_open_nowhere_goes_to_the_mash_of_residence_else_the_default(
    tmp_path: Path,
) -> None:
    async with partnership(tmp_path) as ex:
        maya = samples.child(make_nhs_number(34), None, given="Maya", residence=OTHER_LA_GSS)
        sent, queues = await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(maya), 1)
        assert holding(queues, sent) == {(OTHER_LA, f"mash:{OTHER_LA}")}
        [item] = await ex.queue(f"mash:{OTHER_LA}", OTHER_LA)
        assert item.item.route_reason == "RESIDENCE_MASH"

        # The Royal Free does not know where Ella lives: its default LA under the agreement.
        ella = samples.child(make_nhs_number(35), None, given="Ella")
        sent, queues = await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(ella), 1)
        assert holding(queues, sent) == {(LA, f"mash:{LA}")}
        [item] = await ex.queue(f"mash:{LA}", LA)
        assert item.item.route_reason == "DEFAULT_LA_MASH"

        # A residence outside the partnership is not an LA to send to: the default again.
        away = samples.child(make_nhs_number(36), None, given="Kai", residence="E10000016")
        sent, queues = await sent_to(ex, POLICE, c.POLICE_NOTIFICATION,
                                     samples.police_notification(away), 1)  # fmt: skip
        assert holding(queues, sent) == {(LA, f"mash:{LA}")}
        async with ex.gateway_store() as store:
            [record] = await store.audit_records(notification_id=sent)
        assert record.reason == "DEFAULT_LA_MASH"
        assert "residence E10000016 is not an LA of this exchange" in record.detail
        assert f"{LA} is {POLICE}'s default LA under the agreement" in record.detail


async def test_a_transfer_reaches_both_las_until_the_old_one_closes_the_case(
    tmp_path: Path,
) -> None:
    async with partnership(tmp_path) as ex:
        await ex.allocate(
            samples.allocation_update([(None, ZARA["upn"], "sw-ben", "T2", "tm-lee")])
        )
        transfer_in = samples.allocation_update(
            [(None, ZARA["upn"], "sw-ines", "North", "tm-okoro")], la=OTHER_LA,
            transfer_from=LA_GSS,
        )  # fmt: skip
        await ex.allocate(transfer_in)
        during, queues = await sent_to(
            ex, SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(ZARA), 4
        )
        assert holding(queues, during) == {
            (LA, "sw-ben"), (LA, "tm-lee"), (OTHER_LA, "sw-ines"), (OTHER_LA, "tm-okoro"),
        }  # fmt: skip

        await ex.allocate(samples.allocation_update([], [(None, ZARA["upn"])]))  # Camden closes
        after, queues = await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(ZARA), 2)
        assert holding(queues, after) == {(OTHER_LA, "sw-ines"), (OTHER_LA, "tm-okoro")}
        async with ex.gateway_store() as store:
            applied = [r for r in await store.audit_records(local_authority=OTHER_LA)
                       if r.decision == "applied"]  # fmt: skip
        assert f"1 transferred in from {LA} ({LA_GSS})" in applied[-1].detail


async def test_an_la_cannot_change_another_la_s_cases(tmp_path: Path) -> None:
    async with partnership(tmp_path) as ex:
        # Camden's system sends an update in Islington's name, closing Noah's case.
        intrusion = samples.allocation_update([], [(NOAH["nhs_number"], None)], la=OTHER_LA)
        await ex.allocate(intrusion, sender=LA)
        assert ex.gateway_count("allocation_update", "refused") == 1
        # Camden closing a case it does not hold changes nothing either.
        await ex.allocate(samples.allocation_update([], [(NOAH["nhs_number"], None)]))

        sent, queues = await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(NOAH), 2)
        assert holding(queues, sent) == {(OTHER_LA, "sw-ines"), (OTHER_LA, "tm-okoro")}
        async with ex.gateway_store() as store:
            for la in (LA, OTHER_LA):
                refused = [r for r in await store.audit_records(local_authority=la)
                           if r.reason == "not_own_cases"]  # fmt: skip
                assert len(refused) == 1, la
                assert refused[0].sender == LA
                assert refused[0].decision == "refused"
            camden = await store.audit_records(local_authority=LA)
        assert "1 closure(s) of a case not open here changed nothing" in camden[-1].detail


async def test_each_la_minimises_by_its_own_agreement(tmp_path: Path) -> None:
    """Islington's agreement hides the child's wishes from its supervisors; Camden's not."""
    async with partnership(tmp_path) as ex:
        both = samples.allocation_update(
            [(AMIRA["nhs_number"], AMIRA["upn"], "sw-ines", "North", "tm-okoro")], la=OTHER_LA
        )
        await ex.allocate(both)
        sent, queues = await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(AMIRA), 4)
        assert len(holding(queues, sent)) == 4
        [camden] = await ex.queue("tm-jones", LA)
        [islington] = await ex.queue("tm-okoro", OTHER_LA)
        assert camden.notification["assessment"]["child_views"]["wishes_and_feelings"]
        assert islington.notification["assessment"]["child_views"] is None
        assert "assessment.child_views" in islington.delivery["withheld"]
        assert "assessment.child_views" not in camden.delivery["withheld"]


async def test_every_decision_is_counted_per_la(tmp_path: Path) -> None:
    async with partnership(tmp_path) as ex:
        ella = samples.child(make_nhs_number(37), None, given="Ella")
        await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(NOAH), 2)
        await sent_to(ex, HEALTH, c.HEALTH_UPDATE, samples.health_update(ella), 1)

        def count(reason: str, la: str) -> float:
            labels = {"reason": reason, "la": la}
            return ex.gateway_metrics.get_sample_value("sgx_gateway_decisions_total", labels) or 0

        assert count("ALLOCATED_WORKER", OTHER_LA) == 1
        assert count("SUPERVISOR", OTHER_LA) == 1
        assert count("DEFAULT_LA_MASH", LA) == 1
        assert count("ALLOCATED_WORKER", LA) == 0
        assert count("ALLOCATION_UPDATE", LA) == 1
        assert count("ALLOCATION_UPDATE", OTHER_LA) == 1


async def test_a_resend_of_the_same_notification_queues_nothing_twice(tmp_path: Path) -> None:
    """Two LAs, one notification id: each LA's queue keeps one row per recipient."""
    async with partnership(tmp_path) as ex:
        both = samples.allocation_update(
            [(AMIRA["nhs_number"], AMIRA["upn"], "sw-ines", "North", "tm-okoro")], la=OTHER_LA
        )
        await ex.allocate(both)
        record = samples.attendance_update(AMIRA, notification_id=uuid.uuid4())
        await sent_to(ex, SCHOOL, c.ATTENDANCE_UPDATE, record, 4)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(NOAH))
        await eventually(lambda: _rows_at_least(ex, 6), "the marker notification")
        assert await ex.queue_rows(LA) == 2
        assert await ex.queue_rows(OTHER_LA) == 4


async def _rows_at_least(ex: Exchange, n: int) -> bool:
    return await ex.queue_rows(LA) + await ex.queue_rows(OTHER_LA) >= n
