"""Quarantine replay through the real broker: records kept for a cause since fixed are
judged again and delivered exactly once, audited as replays; what still fails stays
quarantined with its reason; nothing is deleted."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from safeguard.parties import LA, SCHOOL
from safeguard.quarantine_ops import replay_consumer, replay_gateway
from safeguard.runtime import Runtime, publisher
from safeguard.samples import allocation_update
from sgx.domain.identifiers import make_nhs_number
from sgx.kafka.quarantine_replay import QuarantineQuery, ReplayLog
from sgx.keys.key_admin import rotate_key
from sgx.keys.trust import DIRECTORY_FILE, PRIVATE_DIR
from sgx.wire import contract as c
from tests import samples
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker
CHILDREN = [make_nhs_number(8300 + n) for n in range(3)]


def school_on_a_new_key(rt: Runtime, folder: Path) -> tuple[Runtime, Path]:
    """The school's own copy of the trust directory, with a key the exchange has not been
    told about yet (it rotated, and the directory update has not reached the gateway)."""
    home = folder / "school"
    shutil.copytree(rt.exchange.trust_dir, home / "trust")
    rotate_key(home / "trust", SCHOOL)
    return dataclasses.replace(rt, exchange=rt.exchange.model_copy(update={"home": home})), home


async def test_a_replay_after_adding_the_missing_key_delivers_each_once(tmp_path: Path) -> None:
    async with running_exchange(tmp_path / "home") as ex:
        await ex.allocate(
            allocation_update([(n, None, "sw-amara", "Team 1", "tm-jones") for n in CHILDREN])
        )
        school, school_home = school_on_a_new_key(ex.rt, tmp_path)
        async with publisher(school, SCHOOL) as pub:
            for n in CHILDREN:
                await pub.publish(
                    c.ATTENDANCE_UPDATE, samples.attendance_update(nhs_number=n, upn=None)
                )
        await eventually(lambda: ex.quarantined("unknown_key_id") == 3, "3 quarantined")
        assert await ex.queue_rows() == 0

        # Nothing to deliver yet: replaying now leaves each quarantined, with its reason.
        report = await replay_gateway(
            ex.rt, QuarantineQuery(reason="unknown_key_id"), by="ops", wait_s=20
        )
        assert [r[1:3] for r in report.outcomes] == [("still_quarantined", "unknown_key_id")] * 3

        # The operator adds the school's new key to the exchange's directory; the gateway
        # picks it up on restart, then a replay delivers each notification once.
        trust = ex.rt.exchange.trust_dir
        shutil.copy(school_home / "trust" / DIRECTORY_FILE, trust / DIRECTORY_FILE)
        await restart_gateway(ex)
        query = QuarantineQuery(reason="unknown_key_id", sender=SCHOOL)
        report = await replay_gateway(ex.rt, query, by="ops", wait_s=20)
        delivered = [r for r in report.outcomes if r[1] == "delivered"]
        assert len(delivered) == 3, report
        assert len(report.skipped) == 3  # the first replays, quarantined again: same messages
        await ex.wait_rows(6)  # worker and supervisor each
        # Replaying again (every row, the re-quarantined replays too) delivers nothing twice:
        # what was judged since is not sent again.
        again = await replay_gateway(ex.rt, QuarantineQuery(), by="ops", wait_s=20)
        assert again.outcomes == []
        assert len(again.skipped) == 6
        assert all("already judged (delivered)" in why for _, why in again.skipped)
        async with await ex.rt.queue_store(LA) as store:
            assert set((await store.rows_per_notification()).values()) == {1}
            assert await store.count() == 6
        async with ex.gateway_store() as gateway:
            kept = await gateway.quarantine_list()
            replays = [
                r for r in await gateway.audit_records() if "replay from quarantine" in r.detail
            ]
            log = ReplayLog(gateway.engine, gateway.quarantine_table, schema=None)
            history = await log.held(QuarantineQuery(reason="unknown_key_id", sender=SCHOOL))
        assert len([q for q in kept if q.topic.startswith("sgx.inbound.")]) == 3, "never deleted"
        assert {r.decision for r in replays} >= {"delivered"}
        assert {r.recipient for r in replays if r.decision == "delivered"} == {
            "sw-amara",
            "tm-jones",
        }
        results = [
            [r["result"] for r in h.replays] for h in history if h.entry.topic != "sgx.replay"
        ]
        assert results == [["sent", "still_quarantined", "sent", "delivered"]] * 3


async def test_a_consumer_quarantine_replay_queues_what_now_reads(tmp_path: Path) -> None:
    """A delivery the consumer could not open (sealed to an LA key the consumer does not
    hold yet) is queued once it is replayed with the key in place."""
    async with running_exchange(tmp_path / "home") as ex:
        await ex.allocate(
            allocation_update([(CHILDREN[0], None, "sw-amara", "Team 1", "tm-jones")])
        )
        # The LA rotates; the gateway seals to the new key at once, but the consumer's
        # directory copy (its home) still lacks the new private key.
        trust = ex.rt.exchange.trust_dir
        saved = tmp_path / "la-private"
        shutil.copytree(trust / PRIVATE_DIR / LA, saved)
        rotate_key(trust, LA)
        new_keys = set((trust / PRIVATE_DIR / LA).iterdir()) - {
            trust / PRIVATE_DIR / LA / p.name for p in saved.iterdir()
        }
        held_back = tmp_path / "held-back"
        held_back.mkdir()
        for path in new_keys:
            shutil.move(path, held_back / path.name)
        await restart_gateway(ex)
        await ex.publish(
            SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(nhs_number=CHILDREN[0], upn=None)
        )

        async def kept() -> bool:
            async with await ex.rt.queue_store(LA) as store:
                return len(await store.quarantine_list()) == 1

        await eventually(kept, "the consumer to quarantine the delivery")
        for path in held_back.iterdir():  # the key reaches the LA's consumer host
            shutil.move(path, trust / PRIVATE_DIR / LA / path.name)
        report = await replay_consumer(ex.rt, LA, QuarantineQuery(), by="ops")
        assert [r[1] for r in report.outcomes] == ["delivered"]
        again = await replay_consumer(ex.rt, LA, QuarantineQuery(), by="ops")
        assert again.outcomes[0][3].startswith("0 new queue row(s)")
        async with await ex.rt.queue_store(LA) as store:
            assert await store.count() == 2
            assert len(await store.quarantine_list()) == 1  # kept, with its replays


async def restart_gateway(ex: Exchange) -> None:
    await ex.stop("gateway")
    ex.gateway_metrics = CollectorRegistry()  # a new process has new counters
    await ex.start_gateway()
