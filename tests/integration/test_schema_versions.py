"""Mixed-version traffic through the real broker: a school still on the previous release's
schemas (AttendanceUpdate v2, no ``sen_status``) and one on this release's (v3) send
through this release's gateway to Camden's consumer (v3) and Islington's (still v2).
Nothing is quarantined or lost; a v3 reader gives a v2 record ``sen_status`` its default;
the v2 consumer learns the v3 writer schema from the registry and its readers skip the
field they do not know."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from consumers.reader import QueueReader
from safeguard.parties import LA, OTHER_LA, OTHER_SCHOOL, SCHOOL
from safeguard.runtime import Runtime, create_topics, publisher, run_consumer
from safeguard.samples import allocation_update
from sgx.domain.identifiers import make_nhs_number
from sgx.errors import ConfigError
from sgx.kafka import schema_topic
from sgx.kafka.wiring import list_topics, read_topic
from sgx.keys.trust import utc_now
from sgx.wire import contract as c
from sgx.wire import schema_registry
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener
from sgx.wire.schema_registry import TOPIC
from tests import samples
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CAMDEN_CHILD, ISLINGTON_CHILD = make_nhs_number(8101), make_nhs_number(8202)


def previous_release(folder: Path) -> Path:
    """The schemas as the previous release shipped them: AttendanceUpdate v2 is current (no
    sen_status, and so not in its own history), everything else as now."""
    shutil.copytree(SCHEMAS, folder)
    path = folder / f"{c.ATTENDANCE_UPDATE}.avsc"
    schema = json.loads(path.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "sen_status"]
    path.write_text(json.dumps(schema, indent=2))
    (folder / "history" / f"{c.ATTENDANCE_UPDATE}.v2.avsc").unlink()
    (folder / f"{c._NS}SenStatus.avsc").unlink()
    return folder


def on(rt: Runtime, schema_dir: Path) -> Runtime:
    return dataclasses.replace(
        rt, exchange=rt.exchange.model_copy(update={"schema_dir": schema_dir})
    )


async def send(rt: Runtime, agency: str, nhs_number: str, sen: str | None, v3: bool) -> None:
    record = samples.attendance_update(nhs_number=nhs_number, upn=None)
    record["author"].update(agency_id=agency, agency_name=agency)
    if v3:
        record["sen_status"] = sen
    else:
        del record["sen_status"]  # the v2 schema has no such field
    async with publisher(rt, agency) as pub:
        await pub.publish(c.ATTENDANCE_UPDATE, record)


async def test_v2_and_v3_producers_through_a_v3_gateway_to_v2_and_v3_consumers(
    tmp_path: Path,
) -> None:
    old_schemas = previous_release(tmp_path / "schemas-v2")
    assert Contract.load(old_schemas).fingerprint(c.ATTENDANCE_UPDATE).hex() == "d655a6c2246ab9e8"
    async with running_exchange(tmp_path / "home") as ex:
        rt_v2 = on(ex.rt, old_schemas)
        await ex._start(
            "consumer:v2", lambda stop, ready: run_consumer(rt_v2, OTHER_LA, stop, None, ready)
        )
        await ex.allocate(
            allocation_update([(CAMDEN_CHILD, None, "sw-amara", "Team 1", "tm-jones")])
        )
        await ex.allocate(
            allocation_update(
                [(ISLINGTON_CHILD, None, "sw-ines", "North", "tm-okoro")], la=OTHER_LA
            )
        )
        for child in (CAMDEN_CHILD, ISLINGTON_CHILD):
            await send(rt_v2, SCHOOL, child, None, v3=False)
            await send(ex.rt, OTHER_SCHOOL, child, "EHC_PLAN", v3=True)
        await ex.wait_rows(4, party=LA)
        await ex.wait_rows(4, party=OTHER_LA)
        assert ex.gateway_count("attendance_update", "delivered") == 4

        # Camden (v3): the v2 school's record has sen_status at its default
        camden = {v.item.sender_agency: v.notification for v in await ex.queue("sw-amara")}
        assert camden[SCHOOL]["sen_status"] is None
        assert camden[OTHER_SCHOOL]["sen_status"] == "EHC_PLAN"

        # Islington (v2): a reader process of the old release, with a fresh contract that
        # has never seen v3, opens both from what the consumer learned and kept
        async with await rt_v2.queue_store(OTHER_LA) as store:
            learned = await store.known_schemas()
            assert [f for f, _ in learned] == [
                ex.rt.contract().fingerprint(c.ATTENDANCE_UPDATE).hex()
            ]
            trust = rt_v2.trust()
            reader = QueueReader(
                store=store,
                opener=Opener(rt_v2.identity(OTHER_LA, trust), trust),
                contract=Contract.load(old_schemas),
            )
            views = await reader.list("sw-ines")
            assert await store.quarantine_list() == []
        assert {v.item.sender_agency for v in views} == {SCHOOL, OTHER_SCHOOL}
        for view in views:
            assert "sen_status" not in view.notification
            assert view.notification["attendance"]["sessions_missed"] == 18
            # logical types survive the registry: times and dates, not bare numbers
            assert isinstance(view.notification["authored_at"], dt.datetime)
            assert isinstance(view.notification["attendance"]["period_start"], dt.date)
        async with ex.gateway_store() as gateway:
            assert await gateway.quarantine_list() == []
        async with await ex.rt.queue_store(LA) as store:
            assert await store.quarantine_list() == []
        registry = await read_topic(ex.rt.kafka, TOPIC)
        assert ex.rt.contract().fingerprint(c.ATTENDANCE_UPDATE).hex().encode() in {
            bytes(r.key or b"") for r in registry
        }


async def test_a_registry_entry_not_signed_by_the_gateway_is_not_learned(tmp_path: Path) -> None:
    """Anyone who could write the registry topic (the ACL lets only the gateway) still
    could not teach a reader a schema: an entry signed by another party, or re-labelled as
    the gateway's, is refused, and the record stays unreadable rather than misread."""
    old_schemas = previous_release(tmp_path / "schemas-v2")
    async with running_exchange(tmp_path / "home") as ex:
        impostor = ex.rt.identity(SCHOOL)
        key, value = schema_registry.entry(impostor, ex.rt.contract(), c.ATTENDANCE_UPDATE)
        relabelled = json.dumps(json.loads(value) | {"signer": "gateway"}).encode()
        trust = ex.rt.trust()
        with pytest.raises(ConfigError, match="not the gateway"):
            schema_registry.verify(value, trust)
        with pytest.raises(ConfigError, match="bad signature"):
            schema_registry.verify(relabelled, trust)
        old = Contract.load(old_schemas)
        digest = bytes.fromhex(key.decode())
        # Only the forged entries on the topic: the genuine one is not there yet.
        registry = schema_topic.SchemaRegistry(ex.rt.kafka, trust, old)
        await clear_and_put(ex, [(key, value), (key, relabelled)])
        assert await registry.learn([digest]) == []
        assert not old.knows(digest)


async def clear_and_put(ex: Exchange, entries: list[tuple[bytes, bytes]]) -> None:
    """Replace the registry topic's contents with ``entries`` (a fresh topic)."""
    from sgx.kafka.wiring import admin_client, start_producer

    async with admin_client(ex.rt.kafka) as admin:
        await admin.delete_topics([schema_registry.TOPIC])
    # gone, then made again as the exchange makes it (a broker need not create topics on use)
    await eventually(
        lambda: topic_gone(ex, schema_registry.TOPIC), "the registry topic to be deleted"
    )
    await create_topics(ex.rt)
    producer = await start_producer(ex.rt.kafka)
    try:
        for key, value in entries:
            await producer.send_and_wait(schema_registry.TOPIC, value, key=key)
    finally:
        await producer.stop()


async def topic_gone(ex: Exchange, topic: str) -> bool:
    return topic not in await list_topics(ex.rt.kafka)


def next_release(folder: Path) -> Path:
    """The schemas a newer gateway writes: a Receipt with one more optional field."""
    shutil.copytree(SCHEMAS, folder)
    path = folder / f"{c._NS}Receipt.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    path.write_text(json.dumps(schema, indent=2))
    return folder


async def test_an_agencys_receipt_listener_reads_a_newer_gateways_receipts(tmp_path: Path) -> None:
    """Receipts of a newer gateway (a ReceiptBatch this release has never seen) are read,
    not quarantined: the listener learns the writer schema from the registry."""
    import uuid

    from producers.outbox import OutboxStore
    from producers.receipts import ReceiptListener, ReceiptRecorder
    from sgx.kafka.wiring import receipts_group, receipts_topic, start_consumer, start_producer
    from sgx.wire.envelope import Purpose, Sealer

    newer = Contract.load(next_release(tmp_path / "schemas-next"))
    async with running_exchange(tmp_path / "home") as ex:
        rt, trust = ex.rt, ex.rt.trust()
        gateway = rt.identity("gateway", trust)
        producer = await start_producer(rt.kafka)
        try:
            await schema_topic.publish(producer, gateway, newer, [c.RECEIPT_BATCH])
            receipt = {
                "message_id": uuid.uuid4(),
                "outcome": "DELIVERED",
                "reason": "ALLOCATED_WORKER",
                "detail": "to sw-amara",
                "decided_at": utc_now(),
                "note": "from a newer release",
            }
            plaintext = newer.encode(c.RECEIPT_BATCH, {"receipts": [receipt]}, check=False)
            sealed = Sealer(gateway, trust, SCHOOL).seal(Purpose.RECEIPTS, uuid.uuid4(), plaintext)
            await producer.send_and_wait(receipts_topic(SCHOOL), sealed)
        finally:
            await producer.stop()
        async with await OutboxStore.open(
            None, tmp_path / "outbox.db", owner="agency-test"
        ) as store:
            current = Contract.load(SCHEMAS)  # this release: it has never seen the newer batch
            consumer = await start_consumer(
                rt.kafka, [receipts_topic(SCHOOL)], group_id=receipts_group(SCHOOL)
            )
            recorder = ReceiptRecorder(
                store=store, agency=SCHOOL, opener=Opener(rt.identity(SCHOOL, trust), trust),
                contract=current, registry=schema_topic.SchemaRegistry(rt.kafka, trust, current),
            )  # fmt: skip
            listener = ReceiptListener(recorder, consumer)
            stop = asyncio.Event()
            running = asyncio.create_task(listener.run(stop))
            try:
                await eventually(lambda: listener.received == 1, "the receipt", timeout=20)
            finally:
                stop.set()
                await running
                await consumer.stop()
            assert await store.quarantine_list(SCHOOL) == []
