"""The exchange end to end through a real Kafka-protocol broker (never a fake)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safeguard import samples
from safeguard.demo import forged_identity, publish_raw, seal_unchecked
from safeguard.parties import CONNECTED_SCHOOL, CONNECTOR, HEALTH, LA, POLICE, SCHOOL
from safeguard.runtime import Runtime
from safeguard.sharing import ask_share
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import AuditChainBroken, WrongRecipient
from sgx.kafka.embedded import free_port
from sgx.kafka.wiring import delivery_topic, list_topics, read_topic, receipts_topic
from sgx.keys.identity import Identity
from sgx.keys.trust import Party, PartyKey
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, unpack
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

AMIRA = samples.child(make_nhs_number(11), make_upn(11), given="Amira", family="Zephyrine")
LEO = samples.child(make_nhs_number(22), None, given="Leopold", family="Quixotic")
MAYA = samples.child(make_nhs_number(33), None, given="Mayabelle", family="Unallotted")
ALLOCATE = samples.allocation_update(
    [
        (AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones"),
        (LEO["nhs_number"], None, "sw-ben", "Assessment Team 2", "tm-lee"),
    ]
)


async def _share(ex: Exchange, item: int, to: str, category: str, by: str) -> dict[str, Any]:
    """Ask the gateway, as ``by``, to share queue item ``item`` with ``to``."""
    return await ask_share(
        ex.rt, LA, item, to_id=to, category=category, to_name=to, purpose="planning", by=by
    )


@pytest.mark.parametrize("broker", [None, "tansu"], ids=["SGX_TEST_BROKER", "tansu"])
async def test_delivers_to_the_allocated_worker_and_supervisor_only(
    tmp_path: Path, broker: str | None
) -> None:
    """On the tests' broker (Apache Kafka, production's, by default) and on Tansu, the
    embedded default of ``make demo`` and of users without Java (its smoke flow)."""
    async with running_exchange(tmp_path, broker=broker) as ex:
        await ex.allocate(ALLOCATE)
        sent = await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        await ex.wait_rows(2)

        worker, supervisor = await ex.queue("sw-amara"), await ex.queue("tm-jones")
        assert [v.item.notification_id for v in worker] == [str(sent)]
        assert [v.item.notification_id for v in supervisor] == [str(sent)]
        assert worker[0].item.route_reason == "ALLOCATED_WORKER"
        assert supervisor[0].item.route_reason == "SUPERVISOR"
        assert worker[0].notification["child"]["nhs_number"] == AMIRA["nhs_number"]
        assert await ex.queue("sw-ben") == []
        assert await ex.queue("tm-lee") == []
        assert await ex.queue(f"mash:{LA}") == []
        assert await ex.queue_rows() == 2


async def test_unallocated_child_goes_to_the_mash_queue(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        sent = await ex.publish(HEALTH, c.HEALTH_UPDATE, samples.health_update(MAYA))
        await ex.wait_rows(1)
        mash = await ex.queue(f"mash:{LA}")
        assert [v.item.notification_id for v in mash] == [str(sent)]
        assert mash[0].item.route_reason == "DEFAULT_LA_MASH"  # the Royal Free's default LA
        assert mash[0].item.recipient_role == "MASH_DUTY"
        for worker in ("sw-amara", "tm-jones", "sw-ben", "tm-lee"):
            assert await ex.queue(worker) == []


async def test_minimisation_withholds_by_role_and_records_it(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        record = samples.health_update(AMIRA)
        await ex.publish(HEALTH, c.HEALTH_UPDATE, record)
        await ex.wait_rows(2)
        (worker,), (supervisor,) = await ex.queue("sw-amara"), await ex.queue("tm-jones")

        assert (
            worker.notification["health"]["clinical_detail"] == record["health"]["clinical_detail"]
        )
        assert worker.delivery["withheld"] == []
        assert supervisor.notification["health"]["clinical_detail"] is None
        views = supervisor.notification["assessment"]["child_views"]
        assert views["what_was_said"] is None
        assert (
            views["wishes_and_feelings"]
            == record["assessment"]["child_views"]["wishes_and_feelings"]
        )
        assert set(supervisor.delivery["withheld"]) >= {
            "health.clinical_detail",
            "assessment.child_views.what_was_said",
        }
        # what is mandatory still travels
        assert supervisor.notification["assessment"]["facts"] == record["assessment"]["facts"]
        async with ex.gateway_store() as store:
            audit = await store.audit_records(notification_id=str(record["notification_id"]))
        by_recipient = {a.recipient: a for a in audit}
        assert "health.clinical_detail" in by_recipient["tm-jones"].withheld
        assert by_recipient["sw-amara"].withheld == ()
        assert by_recipient["tm-jones"].lawful_basis == "PUBLIC_TASK"
        assert by_recipient["tm-jones"].no_consent_reason == "RISK_TO_CHILD"


async def test_onward_share_refused_then_allowed_and_both_audited(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        sent = await ex.publish(POLICE, c.POLICE_NOTIFICATION, samples.police_notification(LEO))
        await ex.wait_rows(2)
        (item,) = await ex.queue("sw-ben")
        assert {r["code"] for r in item.delivery["restrictions"]} == {
            "THIRD_PARTY_AUTHOR_CONSENT",
            "POLICE_CONFIDENTIAL_TO_PROCEEDINGS",
        }

        refused = await _share(ex, item.item.item_id, "parents", "PARENT_OR_CARER", "sw-ben")
        assert refused["allowed"] is False
        assert set(refused["broken"]) == {
            "THIRD_PARTY_AUTHOR_CONSENT",
            "POLICE_CONFIDENTIAL_TO_PROCEEDINGS",
        }
        assert "confidential to the proceedings" in refused["reason"]

        allowed = await _share(ex, item.item.item_id, "sw-amara", "LA_SOCIAL_CARE", "sw-ben")
        assert allowed["allowed"] is True
        assert allowed["broken"] == []
        await ex.wait_rows(3)
        (shared,) = await ex.queue("sw-amara")
        assert shared.item.notification_id == str(sent)
        assert shared.item.route_reason == "ONWARD_SHARE"
        assert shared.delivery["sender_kind"] == "police"  # the author's kind travels on
        assert {r["source"] for r in shared.delivery["restrictions"]} == {"DEFAULT"}
        assert shared.notification["police"]["offence_details"] is None  # minimised for "onward"

        async with ex.gateway_store() as store:
            decisions = [a.decision for a in await store.audit_records(notification_id=str(sent))]
        assert decisions.count("share_refused") == 1
        assert decisions.count("share_allowed") == 1


async def test_author_consent_on_record_lifts_the_restriction(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        record = samples.attendance_update(AMIRA)
        record["sharing"]["onward_consent"] = ["CARE_PROCEEDINGS"]
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
        await ex.wait_rows(2)
        (item,) = await ex.queue("sw-amara")
        court = await _share(ex, item.item.item_id, "court", "CARE_PROCEEDINGS", "sw-amara")
        parents = await _share(ex, item.item.item_id, "parents", "PARENT_OR_CARER", "sw-amara")
        assert court["allowed"] is True
        assert parents["allowed"] is False
        assert parents["broken"] == ["THIRD_PARTY_AUTHOR_CONSENT"]


def _impostor_party(real: Party) -> Identity:
    """A party the directory has never heard of, using a real party's name for its topic."""
    key = Ed25519PrivateKey.generate()
    fake = Party(
        id="school-nowhere",
        kind="school",
        name="Nowhere School",
        local_authority=LA,
        keys=[
            PartyKey(
                kid="school-nowhere/1",
                signing_public=key.public_key().public_bytes_raw(),
                box_public=real.keys[0].box_public,
                not_before=real.keys[0].not_before,
                not_after=real.keys[0].not_after,
            )
        ],
    )
    return Identity(fake, {"school-nowhere/1": key}, {})


async def test_bad_records_are_quarantined_with_reasons_while_valid_ones_flow(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        rt = ex.rt
        await ex.allocate(ALLOCATE)
        school = rt.identity(SCHOOL)
        valid_before = samples.attendance_update(AMIRA)
        valid_after = samples.attendance_update(LEO)

        invalid = samples.attendance_update(AMIRA)
        invalid["attendance"]["sessions_missed"] = 99  # more than possible
        tampered = bytearray(
            seal_unchecked(school, rt, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        )
        tampered[-5] ^= 0x01
        forged = seal_unchecked(
            forged_identity(rt, SCHOOL), rt, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA)
        )
        unknown_kid = _with_unknown_kid(rt, school)
        stranger = seal_unchecked(
            _impostor_party(rt.trust().party(SCHOOL)),
            rt,
            c.ATTENDANCE_UPDATE,
            samples.attendance_update(AMIRA),
        )
        garbage = b"\xc3\x01" + b"\x00" * 40

        values = [
            seal_unchecked(school, rt, c.ATTENDANCE_UPDATE, valid_before),
            seal_unchecked(school, rt, c.ATTENDANCE_UPDATE, invalid),
            bytes(tampered),
            forged,
            unknown_kid,
            stranger,
            garbage,
            seal_unchecked(school, rt, c.ATTENDANCE_UPDATE, valid_after),
        ]
        await publish_raw(rt, SCHOOL, values)
        await ex.wait_rows(4)  # both valid ones, each to worker + supervisor

        async def judged() -> bool:
            async with ex.gateway_store() as store:
                return len(await store.quarantine_list()) >= 6

        await eventually(judged, "six quarantined records")
        async with ex.gateway_store() as store:
            reasons = sorted(q.reason for q in await store.quarantine_list())
            assert all(q.raw for q in await store.quarantine_list())  # kept whole, not dropped
            invalid_q = [q for q in await store.quarantine_list() if q.reason == "invalid_record"]
        assert reasons == sorted(
            [
                "invalid_record",
                "tampered_ciphertext",
                "bad_signature",
                "unknown_key_id",
                "unknown_sender",
                "malformed_envelope",
            ]
        )
        assert "attendance.sessions_missed" in invalid_q[0].detail
        delivered = {
            v.item.notification_id for v in await ex.queue("sw-amara") + await ex.queue("sw-ben")
        }
        assert delivered == {
            str(valid_before["notification_id"]),
            str(valid_after["notification_id"]),
        }

        receipts = await _receipts(rt, school)
        assert receipts[str(invalid["notification_id"])]["outcome"] == "QUARANTINED"
        assert receipts[str(invalid["notification_id"])]["reason"] == "invalid_record"
        assert receipts[str(valid_before["notification_id"])]["outcome"] == "DELIVERED"


def _with_unknown_kid(rt: Runtime, school: Identity) -> bytes:
    party = school.party
    renamed = party.model_copy(
        update={
            "keys": [
                k.model_copy(update={"kid": "school-hillside/never-issued"}) for k in party.keys
            ]
        }
    )
    signing = Ed25519PrivateKey.generate()
    impostor = Identity(renamed, {"school-hillside/never-issued": signing}, {})
    return seal_unchecked(impostor, rt, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))


async def _receipts(rt: Runtime, school: Identity) -> dict[str, dict[str, object]]:
    opener, contract = Opener(school, rt.trust()), rt.contract()
    found: dict[str, dict[str, object]] = {}
    for record in await read_topic(rt.kafka, receipts_topic(SCHOOL)):
        opened = opener.open(record.value)
        if opened.purpose is not Purpose.RECEIPTS:
            continue  # the gateway's open-case lists share a school's receipts topic
        for r in contract.decode_as(c.RECEIPT_BATCH, opened.plaintext)["receipts"]:
            found[str(r["message_id"])] = r
    return found


async def test_a_policy_refusal_is_audited_and_receipted(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        # a school may not send health updates under the agreement
        record = samples.health_update(AMIRA)
        record["author"] = dict(
            record["author"], agency_id=SCHOOL, agency_name="Hillside Primary School"
        )
        await ex.publish(SCHOOL, c.HEALTH_UPDATE, record)

        async def refused() -> bool:
            return ex.gateway_count("health_update", "refused") >= 1

        await eventually(refused, "the refusal")
        async with ex.gateway_store() as store:
            (entry,) = await store.audit_records(notification_id=str(record["notification_id"]))
        assert entry.decision == "refused"
        assert entry.reason == "not_permitted_by_agreement"
        receipts = await _receipts(ex.rt, ex.rt.identity(SCHOOL))
        assert receipts[str(record["notification_id"])]["outcome"] == "REFUSED"
        assert await ex.queue_rows() == 0


async def test_no_child_identifier_or_fact_in_plain_text_on_any_topic(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        police = samples.police_notification(LEO)
        # its key adult's copy on the school's connector's topic, keyed and named (header)
        police["police"]["incident"]["school_id"] = CONNECTED_SCHOOL
        records = [
            (SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA)),
            (HEALTH, c.HEALTH_UPDATE, samples.health_update(MAYA)),
            (POLICE, c.POLICE_NOTIFICATION, police),
        ]
        for agency, name, record in records:
            await ex.publish(agency, name, record)
        await ex.wait_rows(5)
        (item,) = await ex.queue("sw-ben")
        await _share(ex, item.item.item_id, "parents", "PARENT_OR_CARER", "sw-ben")
        secrets = _plain_texts([AMIRA, LEO, MAYA], [r for _, _, r in records])
        raw: list[bytes] = []
        topics = await list_topics(ex.rt.kafka)
        assert len([t for t in topics if t.startswith("sgx.")]) >= 9
        headers = 0
        for topic in topics:
            for rec in await read_topic(ex.rt.kafka, topic):
                raw.extend([rec.value or b"", rec.key or b""])
                raw.extend(v for _, v in rec.headers or ())
                headers += len(rec.headers or ())
        assert len(raw) > 20
        assert f"sgx.delivery.{CONNECTOR}" in topics
        assert headers >= 1  # the key adult's delivery names its school
        blob = b"\x00".join(raw)
        leaked = [s for s in secrets if s.encode() in blob]
        assert leaked == []


def _plain_texts(children: list[dict[str, object]], records: list[dict[str, object]]) -> list[str]:
    texts: list[str] = []
    for child in children:
        texts += [
            str(child[k])
            for k in ("nhs_number", "upn", "given_name", "family_name")
            if child.get(k)
        ]
    for record in records:
        texts.append(str(record["assessment"]["facts"]))  # type: ignore[index]
        texts.append(str(record["notification_id"]))
    return texts


async def test_audit_chain_verifies_and_an_edited_row_is_detected(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        await ex.publish(HEALTH, c.HEALTH_UPDATE, samples.health_update(MAYA))
        await ex.wait_rows(3)
    async with ex.gateway_store() as store:
        verified = await store.verify_chains()
        school_chain = max((c for c in verified if SCHOOL in c), key=lambda c: verified[c][0])
        # one chain per partition read: the allocation update, two deliveries (worker and
        # supervisor) on the school's, one MASH delivery on the trust's
        assert sum(count for count, _ in verified.values()) == 4
        assert verified[school_chain][0] == 2
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE audit_record SET recipient = 'sw-ben' WHERE chain = :c AND sequence = 2"
            ),
            {"c": school_chain},
        )
    engine.dispose()
    async with ex.gateway_store() as store:
        with pytest.raises(AuditChainBroken) as broken:
            await store.verify_chains()
    assert (broken.value.chain, broken.value.sequence) == (school_chain, 2)


async def test_a_delivery_opens_only_for_its_local_authority(tmp_path: Path) -> None:
    """A delivery sealed for Camden cannot be opened with any other party's keys."""
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        await ex.wait_rows(2)
        (record, *_) = await read_topic(ex.rt.kafka, delivery_topic(LA))
        (first,) = unpack(record.value or b"")  # one view: worker and supervisor share it
        with pytest.raises(WrongRecipient):
            Opener(ex.rt.identity(SCHOOL), ex.rt.trust()).open(first)
        assert Opener(ex.rt.identity(LA), ex.rt.trust()).open(first).purpose is Purpose.DELIVERY


async def test_each_service_serves_its_prometheus_metrics(tmp_path: Path) -> None:
    gateway_port, consumer_port = free_port(), free_port()
    async with running_exchange(tmp_path, metrics_ports=(gateway_port, consumer_port)) as ex:
        await ex.allocate(ALLOCATE)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        await ex.wait_rows(2)
        async with httpx.AsyncClient() as client:
            gateway = (await client.get(f"http://127.0.0.1:{gateway_port}/metrics")).text
            consumer = (await client.get(f"http://127.0.0.1:{consumer_port}/metrics")).text
        assert (
            'sgx_gateway_notifications_total{outcome="delivered",type="attendance_update"} 1.0'
            in gateway
        )
        decisions = 'sgx_gateway_decisions_total{la="la-camden",reason="ALLOCATED_WORKER"} 1.0'
        assert decisions in gateway
        assert (
            'sgx_consumer_notifications_total{outcome="queued",type="attendance_update"} 2.0'
            in consumer
        )
        assert "sgx_end_to_end_latency_seconds_count" in consumer
        for text in (gateway, consumer):
            assert AMIRA["nhs_number"] not in text
            assert AMIRA["given_name"] not in text
