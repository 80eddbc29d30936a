"""Gateway routing for the agency feeds, end to end through a real Kafka-protocol broker.

Open-case lists from the gateway to the schools an LA serves; Operation Encompass to the
school's key adult as well as social care; 2013 / 2024 Protocol requests to the police
single point of contact, tracked against the 14-day deadline and closed by the answer.
Every queue here is filled by a real delivery consumer (``run_consumer``) of its party.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from consumers.reader import QueueView, detail, summary_line
from producers.open_cases import OpenCaseListener, OpenCaseStore, pupil_keys
from producers.police import disclosure_request, map_police_export
from safeguard import samples
from safeguard.cli import main
from safeguard.cli_police import police
from safeguard.parties import (
    DEMO_PARTIES,
    HEALTH,
    LA,
    OTHER_LA,
    OTHER_SCHOOL,
    POLICE,
    SCHOOL,
)
from safeguard.runtime import Runtime, run_consumer
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ConfigError, WrongRecipient
from sgx.kafka.wiring import delivery_topic, read_topic, receipts_topic
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, unpack
from tests.integration.harness import (
    Exchange,
    agreement_with_defaults,
    eventually,
    running_exchange,
)

pytestmark = pytest.mark.broker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "police"
BOUNDARY_SCHOOL = "school-boundary"  # near the Camden / Islington boundary: serves both
PARTIES = (
    *DEMO_PARTIES,
    PartySpec(BOUNDARY_SCHOOL, "school", "Boundary Primary School", (LA, OTHER_LA)),
)
AMIRA = samples.child(make_nhs_number(11), make_upn(11), given="Amira", family="Zephyrine")
LEO = samples.child(make_nhs_number(22), None, given="Leopold", family="Quixotic")
ALLOCATE = samples.allocation_update(
    [
        (AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones"),
        (LEO["nhs_number"], None, "sw-ben", "Assessment Team 2", "tm-lee"),
    ]
)
NOAH = samples.child(make_nhs_number(23), None, given="Noah", family="Islington")
ISLINGTON_ALLOCATES_NOAH = samples.allocation_update(
    [(NOAH["nhs_number"], None, "sw-ines", "North", "tm-okoro")], la=OTHER_LA
)
KEY_ADULT, SPOC = f"key-adult:{SCHOOL}", f"spoc:{POLICE}"
DEFAULT_POLICE_RESTRICTIONS = {
    "THIRD_PARTY_AUTHOR_CONSENT": "DEFAULT",
    "POLICE_CONFIDENTIAL_TO_PROCEEDINGS": "DEFAULT",
}


def encompass(school_id: str | None) -> dict[str, Any]:
    record = samples.police_notification(AMIRA)
    record["police"]["incident"]["school_id"] = school_id
    return record


def request(reference: str, *, force: str = POLICE) -> dict[str, Any]:
    """A 2013 Protocol (Annex D) request from the LA, made now (to the millisecond)."""
    now = datetime.now(UTC)
    return disclosure_request(
        request_reference=reference,
        protocol="2013",
        requested_by={
            "name": "Amara Mensah",
            "role": "Social worker",
            "agency_id": LA,
            "agency_name": "London Borough of Camden Children's Social Care",
            "contact": None,
        },
        police_force=force,
        child=AMIRA,
        proceedings={"stage": "ISSUED", "court": "Family Court at Central London",
                     "case_number": "ZW25C00042"},
        material_requested="Records of police attendance at the family home since January",
        reasons="The incidents bear on whether the threshold for a care order is met.",
        requested_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
    )  # fmt: skip


def disclosure_answering(reference: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / "disclosure.json").read_text())
    data.update(
        notification_id=str(uuid.uuid4()),
        request_reference=reference,
        child={"nhs_number": AMIRA["nhs_number"]},
    )
    return map_police_export(data)


def restriction_sources(view: QueueView) -> dict[str, str]:
    return {r["code"]: r["source"] for r in view.delivery["restrictions"]}


async def police_requests(home: Path, now: datetime) -> Result:
    args = ["requests", "--home", str(home), "--now", now.isoformat()]
    return await asyncio.to_thread(CliRunner().invoke, police, args, env={"SGX_STORE_DSN": None})


async def receipt_for(ex: Exchange, agency: str, message_id: uuid.UUID) -> dict[str, Any]:
    """The gateway's receipt to ``agency`` for ``message_id`` (waits for it)."""
    opener, contract = Opener(ex.rt.identity(agency), ex.rt.trust()), ex.rt.contract()
    found: dict[str, dict[str, Any]] = {}

    async def arrived() -> bool:
        for record in await read_topic(ex.rt.kafka, receipts_topic(agency)):
            opened = opener.open(record.value or b"")
            if opened.purpose is Purpose.RECEIPTS:
                for r in contract.decode_as(c.RECEIPT_BATCH, opened.plaintext)["receipts"]:
                    found[str(r["message_id"])] = r
        return str(message_id) in found

    await eventually(arrived, f"the receipt for {message_id}")
    return found[str(message_id)]


# --- open-case lists ---------------------------------------------------------------------


def boundary_agreement(folder: Path) -> Path:
    """The demo's default LAs, and Camden as the boundary school's."""
    defaults = {HEALTH: [LA], POLICE: [LA], BOUNDARY_SCHOOL: [LA]}
    return agreement_with_defaults(folder, defaults)


def listener_for(ex: Exchange, school: str, store: OpenCaseStore) -> OpenCaseListener:
    trust = ex.rt.trust()
    return OpenCaseListener(
        school_id=school,
        opener=Opener(ex.rt.identity(school, trust), trust),
        contract=ex.rt.contract(),
        store=store,
    )


async def test_open_case_lists_are_the_union_of_the_las_each_school_serves(
    tmp_path: Path,
) -> None:
    async with (
        running_exchange(
            tmp_path / "x", consumer=False, parties=PARTIES, agreement=boundary_agreement(tmp_path)
        ) as ex,
        await OpenCaseStore.open(None, tmp_path / "open-cases.db", owner="school-test") as cases,
        await OpenCaseStore.open(
            None, tmp_path / "boundary.db", owner="school-test"
        ) as boundary_cases,
    ):
        camden_school = listener_for(ex, SCHOOL, cases)
        boundary = listener_for(ex, BOUNDARY_SCHOOL, boundary_cases)
        pseudonyms = ex.rt.pseudonyms()
        amira = pupil_keys(pseudonyms, AMIRA["nhs_number"], AMIRA["upn"])
        leo = pupil_keys(pseudonyms, LEO["nhs_number"], None)
        noah = pupil_keys(pseudonyms, NOAH["nhs_number"], None)

        await ex.allocate(ALLOCATE)
        assert await camden_school.catch_up(ex.rt.kafka) == 1
        held = await cases.current()
        assert held.keys == amira | leo  # both pseudonyms of Amira, Leo's NHS number
        assert held.issued_at is not None

        await ex.allocate(ISLINGTON_ALLOCATES_NOAH)
        assert await boundary.catch_up(ex.rt.kafka) == 2  # after each LA's update
        assert (await boundary_cases.current()).keys == amira | leo | noah  # the union

        ended = samples.allocation_update([], ended=[(LEO["nhs_number"], None)])
        await ex.allocate(ended)
        assert await camden_school.catch_up(ex.rt.kafka) == 1  # the newer, complete list
        held = await cases.current()
        assert held.keys == amira
        assert not held.is_open(leo)
        assert not held.is_open(noah)  # Islington's child: Hillside serves only Camden
        assert await boundary.catch_up(ex.rt.kafka) == 1
        assert (await boundary_cases.current()).keys == amira | noah

        # a school served only by Islington hears nothing of Camden's children
        async with await OpenCaseStore.open(
            None, tmp_path / "canonbury.db", owner="school-test"
        ) as islington:
            assert await listener_for(ex, OTHER_SCHOOL, islington).catch_up(ex.rt.kafka) == 1
            assert (await islington.current()).keys == noah


# --- Operation Encompass -----------------------------------------------------------------


async def test_encompass_reaches_the_worker_and_the_school_key_adult_minimised(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=SCHOOL)
        await ex.allocate(ALLOCATE)
        record = encompass(SCHOOL)
        sent = await ex.publish(POLICE, c.POLICE_NOTIFICATION, record)

        (worker,) = await ex.wait_items("sw-amara", 1)
        (adult,) = await ex.wait_items(KEY_ADULT, 1, party=SCHOOL)
        assert worker.item.notification_id == adult.item.notification_id == str(sent)
        assert worker.notification["police"]["offence_details"] is not None  # worker: all
        assert (adult.item.route_reason, adult.item.recipient_role) == (
            "ENCOMPASS_KEY_ADULT",
            "KEY_ADULT",
        )
        incident = adult.notification["police"]["incident"]
        sent_incident = record["police"]["incident"]
        assert incident["occurred_at"] == sent_incident["occurred_at"]
        assert incident["child_present"] is True
        assert incident["voice_of_child"] == sent_incident["voice_of_child"]
        assert incident["location"] is None
        police_matter = adult.notification["police"]
        assert police_matter["offence_details"] is None
        assert police_matter["disclosure"] is None
        assert adult.notification["assessment"]["professional_opinion"] is None
        assert {"police.offence_details", "police.incident.location"} <= set(
            adult.delivery["withheld"]
        )
        assert restriction_sources(adult) == DEFAULT_POLICE_RESTRICTIONS
        assert restriction_sources(worker) == DEFAULT_POLICE_RESTRICTIONS

        async with ex.gateway_store() as store:
            audit = await store.audit_records(notification_id=str(sent))
        by_recipient = {a.recipient: a for a in audit}
        assert set(by_recipient) == {"sw-amara", "tm-jones", KEY_ADULT}
        entry = by_recipient[KEY_ADULT]
        assert (entry.decision, entry.reason, entry.recipient_role) == (
            "delivered",
            "ENCOMPASS_KEY_ADULT",
            "KEY_ADULT",
        )
        assert "police.offence_details" in entry.withheld
        assert adult.addressee["audit_sequence"] == entry.sequence

        # the key adult's copy is sealed for the school: the LA cannot open it
        (raw,) = await read_topic(ex.rt.kafka, delivery_topic(SCHOOL))
        (sealed,) = unpack(raw.value or b"")
        with pytest.raises(WrongRecipient):
            Opener(ex.rt.identity(LA), ex.rt.trust()).open(sealed)
        answer = await receipt_for(ex, POLICE, sent)
        assert answer["outcome"] == "DELIVERED"
        assert SCHOOL in answer["detail"]


async def test_encompass_reaches_the_key_adult_of_the_school_wherever_it_is(
    tmp_path: Path,
) -> None:
    """Amira is Camden's; her school is in Islington: its key adult is told all the same."""
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_SCHOOL)
        await ex.allocate(ALLOCATE)
        other = await ex.publish(POLICE, c.POLICE_NOTIFICATION, encompass(OTHER_SCHOOL))
        unknown = await ex.publish(POLICE, c.POLICE_NOTIFICATION, encompass("school-nowhere"))
        by_la = await ex.publish(POLICE, c.POLICE_NOTIFICATION, encompass(LA))
        views = await ex.wait_items("sw-amara", 3)
        assert {v.item.notification_id for v in views} == {str(other), str(unknown), str(by_la)}
        (adult,) = await ex.wait_items(f"key-adult:{OTHER_SCHOOL}", 1, party=OTHER_SCHOOL)
        assert adult.item.notification_id == str(other)
        assert adult.item.route_reason == "ENCOMPASS_KEY_ADULT"

        async with ex.gateway_store() as store:
            refused = {
                a.recipient: a
                for a in await store.audit_records()
                if a.decision == "refused"
            }  # fmt: skip
        assert {key: a.reason for key, a in refused.items()} == {
            "key-adult:school-nowhere": "encompass_school_unknown",
            f"key-adult:{LA}": "encompass_not_a_school",
        }
        assert await read_topic(ex.rt.kafka, delivery_topic(SCHOOL)) == []
        assert await ex.queue_rows(OTHER_LA) == 0  # Islington's social care: not its child
        answer = await receipt_for(ex, POLICE, unknown)
        assert answer["outcome"] == "DELIVERED"
        assert "key adult was not told" in answer["detail"]


# --- 2013 / 2024 Protocol requests -------------------------------------------------------


async def test_a_request_reaches_the_spoc_and_the_disclosure_answering_it_closes_it(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=POLICE)
        await ex.allocate(ALLOCATE)
        asked = request("LA-REQ-2026-0001")
        request_id = await ex.publish_request(asked)

        (spoc,) = await ex.wait_items(SPOC, 1, party=POLICE)
        assert spoc.item.notification_id == str(request_id)
        assert (spoc.item.route_reason, spoc.item.recipient_role) == (
            "DISCLOSURE_REQUEST",
            "POLICE_SPOC",
        )
        assert spoc.delivery["notification_type"] == c.DISCLOSURE_REQUEST
        assert spoc.notification["request_reference"] == "LA-REQ-2026-0001"
        assert spoc.notification["material_requested"] == asked["material_requested"]
        assert spoc.notification["child"]["nhs_number"] == AMIRA["nhs_number"]
        shown = detail(spoc)  # the SPOC's queue shows a request, not a notification
        assert "LA-REQ-2026-0001" in shown
        assert asked["material_requested"] in shown
        assert "request" in summary_line(spoc)

        listed = await police_requests(tmp_path, asked["requested_at"])
        assert listed.exit_code == 0, listed.output
        row = next(line for line in listed.output.splitlines() if "LA-REQ-2026-0001" in line)
        assert row.split()[-2:] == ["14", "open"]
        assert row.split()[1:4] == ["2013", LA, POLICE]

        answer = disclosure_answering("LA-REQ-2026-0001")
        disclosed = await ex.publish(POLICE, c.POLICE_NOTIFICATION, answer)
        views = await ex.wait_items("sw-amara", 1)
        assert [v.item.notification_id for v in views] == [str(disclosed)]
        assert restriction_sources(views[0]) == DEFAULT_POLICE_RESTRICTIONS
        async with await ex.rt.disclosure_requests() as requests:
            status = await requests.status("LA-REQ-2026-0001")
        assert status is not None
        assert status.disclosure_id == str(disclosed)
        pseudonym = ex.rt.pseudonyms().child_key(AMIRA["nhs_number"], AMIRA["upn"])
        assert pseudonym is not None
        assert status.child_pseudonym == pseudonym.hex()  # never the NHS number
        later = await police_requests(tmp_path, asked["requested_at"] + timedelta(days=20))
        assert later.output == "no open disclosure requests\n"
        assert (await receipt_for(ex, POLICE, disclosed))["detail"] == (
            "answers the disclosure request"
        )
        receipt = await receipt_for(ex, LA, request_id)
        assert receipt["outcome"] == "DELIVERED"
        assert SPOC.removeprefix("spoc:") in receipt["detail"]


async def test_a_request_not_answered_within_14_days_shows_overdue(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex:
        asked = request("LA-REQ-2026-0002")
        await ex.publish_request(asked)

        async def tracked() -> bool:
            async with await ex.rt.disclosure_requests() as requests:
                return bool(await requests.open_requests(datetime.now(UTC)))

        await eventually(tracked, "the gateway to open the request")
        at = asked["requested_at"]
        on_time = await police_requests(tmp_path, at + timedelta(days=13, hours=1))
        assert on_time.output.splitlines()[1].split()[-2:] == ["0", "open"]
        late = await police_requests(tmp_path, at + timedelta(days=14, minutes=1))
        _, row, summary = late.output.splitlines()
        assert row.split()[0] == "LA-REQ-2026-0002"
        assert row.split()[-2:] == ["-1", "OVERDUE"]
        assert summary.startswith("1 open, 1 overdue")


async def test_a_request_to_a_party_that_is_not_a_police_force_is_refused(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex:
        to_school = await ex.publish_request(request("LA-REQ-2026-0003", force=SCHOOL))
        receipt = await receipt_for(ex, LA, to_school)
        assert (receipt["outcome"], receipt["reason"]) == ("REFUSED", "unknown_police_force")
        async with ex.gateway_store() as store:
            (entry,) = await store.audit_records(notification_id=str(to_school))
        assert (entry.decision, entry.notification_type) == ("refused", "disclosure_request")
        async with await ex.rt.disclosure_requests() as requests:
            assert await requests.status("LA-REQ-2026-0003") is None
        assert await read_topic(ex.rt.kafka, delivery_topic(SCHOOL)) == []


async def test_a_disclosure_goes_back_to_the_requesting_la_only(tmp_path: Path) -> None:
    """Amira is open to Camden and Islington; Islington asked: only Islington is answered."""
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        await ex.start_consumer(party=POLICE)
        await ex.allocate(ALLOCATE)
        await ex.allocate(
            samples.allocation_update(
                [(AMIRA["nhs_number"], None, "sw-ines", "North", "tm-okoro")], la=OTHER_LA
            )
        )
        camden = await ex.publish_request(request("CAM-1"))
        islington_request = request("ISL-1") | {
            "requested_by": {"name": "Ines Duarte", "role": "Social worker",
                             "agency_id": OTHER_LA, "agency_name": "Islington", "contact": None},
        }  # fmt: skip
        islington = await ex.publish_request(islington_request, la=OTHER_LA)
        spoc = await ex.wait_items(SPOC, 2, party=POLICE)
        assert {v.item.notification_id for v in spoc} == {str(camden), str(islington)}

        disclosed = await ex.publish(POLICE, c.POLICE_NOTIFICATION, disclosure_answering("ISL-1"))
        await ex.wait_items("sw-ines", 1, party=OTHER_LA)
        await ex.wait_items("tm-okoro", 1, party=OTHER_LA)
        marker = await ex.publish(HEALTH, c.HEALTH_UPDATE, samples.health_update(AMIRA))
        await ex.wait_items("sw-amara", 1)  # the marker: Camden's queue is up to date
        assert [v.item.notification_id for v in await ex.queue("sw-amara")] == [str(marker)]
        assert [v.item.notification_id for v in await ex.queue("tm-jones")] == [str(marker)]
        async with await ex.rt.disclosure_requests() as requests:
            answered, waiting = await requests.status("ISL-1"), await requests.status("CAM-1")
        assert answered is not None
        assert answered.disclosure_id == str(disclosed)
        assert waiting is not None
        assert waiting.answered_at is None  # Camden's request has its own clock


async def test_a_disclosure_to_an_la_not_holding_the_child_reaches_its_mash(
    tmp_path: Path,
) -> None:
    """Islington asked about Amira, whom only Camden holds: the answer is Islington's own."""
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        await ex.allocate(ALLOCATE)
        asked = request("ISL-2") | {
            "requested_by": {"name": "Ines Duarte", "role": "Social worker",
                             "agency_id": OTHER_LA, "agency_name": "Islington", "contact": None},
        }  # fmt: skip
        await ex.publish_request(asked, la=OTHER_LA)
        disclosed = await ex.publish(POLICE, c.POLICE_NOTIFICATION, disclosure_answering("ISL-2"))
        (mash,) = await ex.wait_items(f"mash:{OTHER_LA}", 1, party=OTHER_LA)
        assert mash.item.notification_id == str(disclosed)
        assert mash.item.route_reason == "REQUESTING_LA_MASH"
        marker = await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        await ex.wait_items("sw-amara", 1)
        assert [v.item.notification_id for v in await ex.queue("sw-amara")] == [str(marker)]


# --- consumers for any receiving party ------------------------------------------------------


async def test_only_a_party_the_gateway_delivers_to_can_run_a_consumer(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    rt = Runtime(exchange=ExchangeSettings(home=tmp_path))
    with pytest.raises(ConfigError, match="is a health"):
        await run_consumer(rt, "nhs-royal-free", asyncio.Event())
    usage = CliRunner().invoke(main, ["consumer", "run", "--help"])
    assert "--party, --la" in usage.output
