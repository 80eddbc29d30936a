"""Connectors through a real broker: several agencies on one topic, each envelope signed by
its agency and sealed for the connector; what may not arrive there is quarantined.

The demo partnership's connector ``mis-north-london`` carries Gospel Oak (Camden) and
Highbury Fields (Islington); Hillside and Canonbury are their own connectors.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

from safeguard import samples
from safeguard.demo import publish_raw
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import (
    CONNECTED_SCHOOL,
    CONNECTOR,
    DEMO_CONNECTORS,
    DEMO_PARTIES,
    HEALTH,
    LA,
    OTHER_CONNECTED_SCHOOL,
    OTHER_LA,
    OTHER_SCHOOL,
    SCHOOL,
)
from safeguard.runtime import Runtime, publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.outbound import for_agency, receipts_topic_of
from sgx.kafka.wiring import list_topics, read_topic
from sgx.keys.connectors import Connector
from sgx.keys.identity import Identity
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

EPR = "epr-north-london"  # a second connector: the Royal Free's patient record
WITH_EPR = (*DEMO_CONNECTORS, Connector(id=EPR, name="North London EPR", carries=[HEALTH]))


def _attendance(school: str, n: int, given: str) -> dict[str, Any]:
    """An attendance update by ``school`` about a child open nowhere (to its LA's MASH)."""
    child = samples.child(make_nhs_number(700 + n), make_upn(700 + n), given=given, family="Cole")
    record = samples.attendance_update(child)
    return samples.from_agency(record, school, samples.AGENCY_NAMES[school])


def _sealed(rt: Runtime, sender: str, record: dict[str, Any], **options: Any) -> bytes:
    """``record`` sealed by ``sender`` to the gateway (``connector=``, ``format_version=``)."""
    trust = rt.trust()
    plaintext = rt.contract().encode(c.ATTENDANCE_UPDATE, record)
    sealer = Sealer(rt.identity(sender, trust), trust, "gateway", **options)
    return sealer.seal(Purpose.NOTIFICATION, uuid.UUID(str(record["notification_id"])), plaintext)


async def _mash(ex: Exchange, la: str) -> set[str]:
    return {v.item.notification_id for v in await ex.queue(f"mash:{la}", party=la)}


async def _receipts(rt: Runtime, agency: str) -> dict[str, dict[str, Any]]:
    """The receipts for ``agency`` on its receipts topic (its connector's, if one carries
    it: only the records naming it), opened with its key."""
    identity: Identity = rt.identity(agency)
    trust = rt.trust()
    opener, contract = Opener(identity, trust), rt.contract()
    found: dict[str, dict[str, Any]] = {}
    topic = receipts_topic_of(trust, agency)
    for record in for_agency(await read_topic(rt.kafka, topic), agency):
        opened = opener.open(record.value)
        if opened.purpose is Purpose.RECEIPTS:
            for r in contract.decode_as(c.RECEIPT_BATCH, opened.plaintext)["receipts"]:
                found[str(r["message_id"])] = r
    return found


async def test_two_schools_through_one_connector_and_single_agency_topics_still_work(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        rt = ex.rt
        topics = set(await list_topics(rt.kafka))
        assert f"sgx.inbound.{CONNECTOR}" in topics
        assert f"sgx.inbound.{CONNECTED_SCHOOL}" not in topics  # no topic of its own
        assert f"sgx.inbound.{SCHOOL}" in topics

        # both connected schools publish through the connector: one process, one topic
        gospel = _attendance(CONNECTED_SCHOOL, 1, "Ada")
        highbury = _attendance(OTHER_CONNECTED_SCHOOL, 2, "Bo")
        async with (
            publisher(rt, CONNECTED_SCHOOL) as one,
            publisher(rt, OTHER_CONNECTED_SCHOOL) as other,
        ):
            assert one.connector == other.connector == CONNECTOR
            await one.publish(c.ATTENDANCE_UPDATE, gospel)
            await other.publish(c.ATTENDANCE_UPDATE, highbury)
        # a school that is its own connector, as before connectors (format 2, its own name)
        hillside = _attendance(SCHOOL, 3, "Cy")
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, hillside)
        # and a producer of the release before (format 1) on its own topic
        canonbury = _attendance(OTHER_SCHOOL, 4, "Di")
        await publish_raw(
            rt, OTHER_SCHOOL, [_sealed(rt, OTHER_SCHOOL, canonbury, format_version=1)]
        )

        await ex.wait_rows(2, party=LA)
        await ex.wait_rows(2, party=OTHER_LA)
        assert await _mash(ex, LA) == {
            str(gospel["notification_id"]),
            str(hillside["notification_id"]),
        }
        assert await _mash(ex, OTHER_LA) == {
            str(highbury["notification_id"]),
            str(canonbury["notification_id"]),
        }

        # receipts go back per agency, each sealed for its school
        async def receipted() -> bool:
            return str(gospel["notification_id"]) in await _receipts(rt, CONNECTED_SCHOOL)

        await eventually(receipted, "Gospel Oak's receipt")
        assert (await _receipts(rt, CONNECTED_SCHOOL))[str(gospel["notification_id"])][
            "outcome"
        ] == "DELIVERED"
        assert str(highbury["notification_id"]) in await _receipts(rt, OTHER_CONNECTED_SCHOOL)
        assert ex.quarantined("not_carried") == ex.quarantined("connector_mismatch") == 0


async def test_what_a_connector_may_not_carry_is_quarantined_in_words(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, parties=DEMO_PARTIES, connectors=WITH_EPR) as ex:
        rt = ex.rt
        # Gospel Oak's envelope for its connector, published there and copied onto the EPR's
        gospel = _attendance(CONNECTED_SCHOOL, 5, "Eve")
        value = _sealed(rt, CONNECTED_SCHOOL, gospel, connector=CONNECTOR)
        await publish_raw(rt, CONNECTOR, [value])
        await publish_raw(rt, EPR, [value])
        # Hillside is not listed for the connector, though it sealed for it
        stray = _attendance(SCHOOL, 6, "Fay")
        await publish_raw(rt, CONNECTOR, [_sealed(rt, SCHOOL, stray, connector=CONNECTOR)])
        # a format 1 envelope names no connector: on a connector's topic it is refused
        old = _attendance(CONNECTED_SCHOOL, 7, "Gus")
        await publish_raw(rt, CONNECTOR, [_sealed(rt, CONNECTED_SCHOOL, old, format_version=1)])

        async def judged() -> bool:
            async with ex.gateway_store() as store:
                return len(await store.quarantine_list()) >= 3

        await eventually(judged, "three quarantined records")
        await ex.wait_rows(1, party=LA)  # the original, through its connector
        async with ex.gateway_store() as store:
            kept = {q.reason: q for q in await store.quarantine_list()}
        assert sorted(kept) == ["connector_mismatch", "not_carried", "sender_topic_mismatch"]
        assert kept["connector_mismatch"].topic == f"sgx.inbound.{EPR}"
        assert kept["connector_mismatch"].detail == (
            f"{CONNECTED_SCHOOL} sealed this envelope for connector {CONNECTOR}, but it was read"
            f" from sgx.inbound.{EPR}, connector {EPR}'s: copied onto another connector's topic"
        )
        assert kept["not_carried"].detail == (
            f"connector {CONNECTOR} may not carry {SCHOOL}: the trust directory does not list"
            f" {SCHOOL} among the agencies it carries"
        )
        assert "names no connector" in kept["sender_topic_mismatch"].detail
        reasons = ("connector_mismatch", "not_carried", "sender_topic_mismatch")
        # counted once the batch is published (after the store's commit)
        await eventually(lambda: all(ex.quarantined(r) == 1 for r in reasons), "the counts")
        async with ex.gateway_store() as store:
            audited = await store.audit_records(message_id=str(gospel["notification_id"]))
        assert sorted(r.decision for r in audited) == ["delivered", "quarantined"]  # the MASH once
        assert [r.reason for r in audited if r.decision == "quarantined"] == ["connector_mismatch"]
        assert await _mash(ex, LA) == {str(gospel["notification_id"])}

        # the copy does not contradict the original's receipt; Hillside hears of its own
        async def receipted() -> bool:
            return str(stray["notification_id"]) in await _receipts(rt, SCHOOL)

        await eventually(receipted, "Hillside's receipt")
        assert (await _receipts(rt, SCHOOL))[str(stray["notification_id"])]["reason"] == (
            "not_carried"
        )
        gospel_receipts = await _receipts(rt, CONNECTED_SCHOOL)
        assert gospel_receipts[str(gospel["notification_id"])]["outcome"] == "DELIVERED"


async def test_one_connector_process_runs_both_schools_outboxes_with_their_receipts(
    tmp_path: Path,
) -> None:
    """As ``SGX_CONNECTOR=mis-north-london safeguard push serve --agency ... --agency ...``
    does: each school's outbox, relay and receipt listener in one process, publishing on
    the connector's topic; each school's receipt comes back to its own outbox."""
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        settings = ex.rt.exchange.model_copy(update={"connector": CONNECTOR})  # SGX_CONNECTOR
        rt = dataclasses.replace(ex.rt, exchange=settings)
        gospel = _attendance(CONNECTED_SCHOOL, 8, "Hal")
        highbury = _attendance(OTHER_CONNECTED_SCHOOL, 9, "Ivy")
        async with (
            running_outbox(rt, CONNECTED_SCHOOL) as one,
            running_outbox(rt, OTHER_CONNECTED_SCHOOL) as other,
        ):
            sent = [await one.add(c.ATTENDANCE_UPDATE, gospel)]
            sent.append(await other.add(c.ATTENDANCE_UPDATE, highbury))

            async def receipted() -> bool:
                mine = await one.store.entries(CONNECTED_SCHOOL)
                theirs = await other.store.entries(OTHER_CONNECTED_SCHOOL)
                return all(e.receipt_outcome is not None for e in [*mine, *theirs])

            await eventually(receipted, "both schools' receipts")
            entries = [
                *(await one.store.entries(CONNECTED_SCHOOL)),
                *(await other.store.entries(OTHER_CONNECTED_SCHOOL)),
            ]
        assert sorted(e.message_id for e in entries) == sorted(sent)
        assert {e.receipt_outcome for e in entries} == {"DELIVERED"}
        assert await _mash(ex, LA) == {str(gospel["notification_id"])}
        assert await _mash(ex, OTHER_LA) == {str(highbury["notification_id"])}
