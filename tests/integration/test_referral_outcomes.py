"""The LA's acknowledgement and decision, back to the referrer and no one else, through a
real Kafka-protocol broker.

Camden's MASH acknowledges a GP's referral and decides it from the inbox's pages; a
case-management system decides a charity's referral about an allocated child through the
API. Each response is signed by Camden, judged by the gateway, audited, carried to the
referring agency only (its receipts topic), verified and kept by the agency's receipt
listener, and shown by its CLI and its push endpoint. A response addressed to another
agency, one to a referral the LA never received, and one whose signature is not the LA's
are quarantined, and reach nobody. The gateway's clocks stop; the overdue gauge counts
what is left.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers.inbox.settings import InboxSettings
from consumers.referral_client import ReferralResponder
from gateway.referral_book import ReferralBook
from producers.push import push_app
from producers.push_referrals import ReferralBoard
from producers.push_tokens import PushTokens, mint_token, tokens_file
from producers.referral_outcomes import ReferralOutcomes
from safeguard import samples
from safeguard.inbox_wiring import inbox_store, serving_inbox
from safeguard.outbox_wiring import open_outbox_store
from safeguard.parties import (
    DEMO_PARTIES,
    GP,
    HEALTH,
    LA,
    LA_GSS,
    OTHER_LA,
    POLICE,
    SCHOOL,
    VOLUNTARY,
)
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.wiring import inbound_topic, read_topic, receipts_topic, start_producer
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer, message_id_of, unpack
from sgx.wire.referral_signature import DOMAIN
from tests.integration.harness import Exchange, eventually, running_exchange
from tests.integration.test_author_consent import cli
from tests.integration.test_inbox_api import Person
from tests.integration.test_routing import receipt_for

pytestmark = pytest.mark.broker

PASSWORD = "correct horse battery staple"
MIA = samples.child(make_nhs_number(51), None, given="Mia", family="Quill", residence=LA_GSS)
AMIRA = samples.child(make_nhs_number(52), make_upn(52), given="Amira", family="Zephyrine")
CONTACT = "Camden MASH: 020 7974 3317, mash@camden.example"
FORMS = Path(__file__).resolve().parent.parent / "fixtures" / "referrals"


async def responses_on(ex: Exchange, agency: str) -> list[dict[str, Any]]:
    """Every SignedReferralResponse on ``agency``'s receipts topic, opened as ``agency``."""
    opener, contract = Opener(ex.rt.identity(agency), ex.rt.trust()), ex.rt.contract()
    found = []
    for record in await read_topic(ex.rt.kafka, receipts_topic(agency)):
        for envelope in unpack(record.value or b""):
            opened = opener.open(envelope)
            if opened.purpose is Purpose.RECEIPTS:
                name, body = contract.decode(opened.plaintext)
                if name == c.SIGNED_REFERRAL_RESPONSE:
                    found.append(body)
    return found


@asynccontextmanager
async def referral_book(ex: Exchange) -> AsyncIterator[ReferralBook]:
    """The gateway's referral book (in its requests database)."""
    async with await ex.rt.disclosure_requests() as requests:
        yield ReferralBook(requests.engine, schema=requests.schema)


async def test_the_outcome_reaches_the_referrer_only_signed_by_the_la(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(
            samples.allocation_update(
                [(AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
            )
        )
        gp_referral = await _gp_refers_with_a_form(ex, tmp_path)
        charity_referral = await ex.publish(
            VOLUNTARY, c.REFERRAL, samples.referral(AMIRA, agency=VOLUNTARY)
        )
        (mash_item,) = await ex.wait_items(f"mash:{LA}", 1)
        await ex.wait_items("sw-amara", 1)
        async with await inbox_store(ex.rt, LA) as store:
            await store.add_account(
                "mash", PASSWORD, worker_id="mash-duty-1", name="Mo Duty", role="mash_duty",
                team=None,
            )  # fmt: skip
            api = await store.add_client("mosaic", ["referrals:respond", "deliveries:read",
                                                    "queue:all"])  # fmt: skip
        settings = InboxSettings(port=0, referral_contact=CONTACT)
        async with serving_inbox(ex.rt, LA, settings) as running:
            duty = Person(running.url)
            try:
                await duty.sign_in("mash")
                await _mash_acknowledges_then_decides(duty, mash_item.item.item_id)
            finally:
                await duty.close()
            async with httpx.AsyncClient(base_url=running.url) as system:
                await _the_system_decides(system, api, ex, str(charity_referral))

        # the gateway judged each response and stopped the clocks
        async with referral_book(ex) as referrals:
            gp_state = await referrals.get(str(gp_referral), LA)
            charity_state = await referrals.get(str(charity_referral), LA)
            later = datetime.now(UTC) + timedelta(days=10)
            assert await referrals.overdue(later) == {}  # nothing left waiting
        assert gp_state is not None
        assert gp_state.acknowledged_at is not None
        assert gp_state.decision == "SECTION_47_ENQUIRIES"
        assert charity_state is not None
        assert charity_state.decision == "EARLY_HELP"
        assert charity_state.acknowledged_at == charity_state.decided_at  # it acknowledges too

        # each response went to its referrer, and to no other agency
        async def told() -> bool:
            return len(await responses_on(ex, GP)) == 2

        await eventually(told, "the GP to hear both of Camden's responses")
        assert len(await responses_on(ex, VOLUNTARY)) == 1
        for agency in (SCHOOL, HEALTH, POLICE, OTHER_LA, LA):
            assert await responses_on(ex, agency) == [], agency

        async with ex.gateway_store() as gateway:
            audit = await gateway.audit_records(notification_id=str(gp_referral))
        said = [
            (a.decision, a.reason, a.recipient, a.recipient_role, a.local_authority)
            for a in audit
            if a.notification_type == "referral_response"
        ]
        assert said == [
            ("delivered", "referral_acknowledged", GP, "REFERRER", LA),
            ("delivered", "referral_decided", GP, "REFERRER", LA),
        ]
        decided = next(a for a in audit if a.reason == "referral_decided")
        assert "section 47 enquiries" in decided.detail
        await _the_gp_sees_it(ex, tmp_path, str(gp_referral))


async def _gp_refers_with_a_form(ex: Exchange, home: Path) -> uuid.UUID:
    """The GP's referral form about Mia, open to no LA, living in Camden: through its outbox."""
    form = json.loads((FORMS / "gp-neglect.json").read_text(encoding="utf-8"))
    form["referral_id"] = str(uuid.uuid4())
    form["child"] |= {"nhs_number": MIA["nhs_number"], "given_name": "Mia", "family_name": "Quill"}
    path = home / "form.json"
    path.write_text(json.dumps(form), encoding="utf-8")
    sent = await cli(ex, "producer", "referral", "send", str(path), "--agency", GP)
    assert sent.exit_code == 0, sent.output
    return uuid.UUID(form["referral_id"])


async def _mash_acknowledges_then_decides(duty: Person, item_id: int) -> None:
    queue = (await duty.request("GET", "/queue")).text
    assert "Acknowledge by" in queue
    page = (await duty.request("GET", f"/items/{item_id}")).text
    assert "Respond to the referrer" in page
    assert CONTACT in page  # offered as the contact
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    ack = await duty.request(
        "POST",
        f"/items/{item_id}/referral",
        data={"csrf_token": token.group(1), "stage": "ACKNOWLEDGED", "la_contact": CONTACT},
    )
    assert ack.status_code == 303, ack.text
    decided = await duty.request(
        "POST",
        f"/items/{item_id}/referral",
        data={
            "csrf_token": token.group(1),
            "stage": "DECIDED",
            "decision": "SECTION_47_ENQUIRIES",
            "reasons": "The information meets the threshold for enquiries under s.47.",
            "next_steps": "Please join a strategy discussion tomorrow at 10:00.",
            "la_contact": CONTACT,
            "la_reference": "MASH-2026-0412",
        },
    )
    assert decided.status_code == 303, decided.text

    async def passed_on() -> bool:
        shown = (await duty.request("GET", f"/items/{item_id}")).text
        return shown.count("passed to the referrer") == 2

    await eventually(passed_on, "the gateway's receipts for both responses")
    again = await duty.request(
        "POST",
        f"/items/{item_id}/referral",
        data={"csrf_token": token.group(1), "stage": "ACKNOWLEDGED", "la_contact": CONTACT},
    )
    assert again.status_code == 409  # acknowledged once
    queue = (await duty.request("GET", "/queue")).text
    assert "Decided: Child protection enquiries (s.47)" in queue


async def _the_system_decides(
    system: httpx.AsyncClient, token: str, ex: Exchange, referral_id: str
) -> None:
    headers = {"authorization": f"Bearer {token}"}
    (view,) = [v for v in await ex.queue("sw-amara") if v.item.notification_id == referral_id]
    item = view.item.item_id
    before = await system.get(f"/api/v1/deliveries/{item}/referral", headers=headers)
    assert before.status_code == 200, before.text
    assert before.json()["responses"] == []
    assert before.json()["referrer"] == VOLUNTARY
    bad = await system.post(
        f"/api/v1/deliveries/{item}/referral/responses",
        headers=headers,
        json={"stage": "DECIDED", "responded_by": "x", "la_contact": "y", "decision": "MAYBE"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "body.decision"
    made = await system.post(
        f"/api/v1/deliveries/{item}/referral/responses",
        headers=headers,
        json={
            "stage": "DECIDED",
            "decision": "EARLY_HELP",
            "responded_by": "Assessment Team 1 manager",
            "la_contact": CONTACT,
            "reasons": "Needs are best met by an early help assessment.",
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["status"] in ("sent", "delivered")

    async def receipted() -> bool:
        state = await system.get(f"/api/v1/deliveries/{item}/referral", headers=headers)
        return bool(state.json()["responses"][0]["status"] == "delivered")

    await eventually(receipted, "the gateway's receipt for the system's decision")
    state = (await system.get(f"/api/v1/deliveries/{item}/referral", headers=headers)).json()
    assert (state["decision"], state["overdue"]) == ("EARLY_HELP", None)


async def _the_gp_sees_it(ex: Exchange, home: Path, referral_id: str) -> None:
    """The GP's CLI and push endpoint show Camden's words, as Camden signed them."""
    listed = await cli(ex, "producer", "referral", "list", "--agency", GP)
    assert listed.exit_code == 0, listed.output
    (row,) = [line for line in listed.output.splitlines() if line.startswith(referral_id)]
    assert "la-camden decided: child protection enquiries (s.47)" in row
    shown = await cli(ex, "producer", "referral", "show", referral_id, "--agency", GP)
    assert shown.exit_code == 0, shown.output
    assert (
        "next steps for you: Please join a strategy discussion tomorrow at 10:00." in shown.output
    )
    assert "(reference MASH-2026-0412)" in shown.output
    assert "verified" in shown.output

    path = tokens_file(home)
    token = mint_token(path, GP)
    async with await open_outbox_store(ex.rt, GP) as store:
        board = ReferralBoard(store, ReferralOutcomes(store.engine), GP)
        app = push_app({GP: _refuse}, PushTokens.load(path), referrals={GP: board})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as http:
            headers = {"authorization": f"Bearer {token}"}
            got = (await http.get(f"/v1/referrals/{referral_id}", headers=headers)).json()
            assert got["receipt"] == "DELIVERED"
            assert [r["stage"] for r in got["responses"]] == ["ACKNOWLEDGED", "DECIDED"]
            assert got["responses"][1]["decision"] == "SECTION_47_ENQUIRIES"
            polled = (await http.get("/v1/referral-responses?after=0", headers=headers)).json()
            assert len(polled["responses"]) == 2
            after = polled["next_cursor"]
            empty = await http.get(f"/v1/referral-responses?after={after}", headers=headers)
            assert empty.json() == {"responses": [], "next_cursor": after}


async def _refuse(name: str, record: Any) -> uuid.UUID:
    raise AssertionError("nothing is pushed here")


async def test_a_response_to_another_agency_or_not_the_las_own_is_quarantined(
    tmp_path: Path,
) -> None:
    """Camden addresses its response to the school, not the GP that referred; Islington
    answers Camden's referral; a response claims Camden's name under Islington's key:
    each is quarantined, audited, receipted to its sender, and reaches no agency."""
    async with running_exchange(tmp_path, consumer=False) as ex:
        referral_id = await ex.publish(GP, c.REFERRAL, samples.referral(MIA))

        async def routed() -> bool:
            async with referral_book(ex) as referrals:
                return await referrals.get(str(referral_id), LA) is not None

        await eventually(routed, "the gateway to route the referral")
        producer = await start_producer(ex.rt.kafka)
        try:
            camden, islington = _responder(ex, LA, producer), _responder(ex, OTHER_LA, producer)
            to_school = _response(referral_id, LA, referrer=SCHOOL)
            await camden.send(to_school)
            islington_answers = _response(referral_id, OTHER_LA, referrer=GP)
            await islington.send(islington_answers)
            forged = _response(referral_id, LA, referrer=GP)
            await _send_forged(ex, islington, forged)
        finally:
            await producer.stop()

        async def quarantined() -> bool:
            return all(
                ex.quarantined(reason) >= 1
                for reason in ("not_the_referrer", "unknown_referral", "unknown_key_id")
            )

        await eventually(quarantined, "the three responses to be quarantined")
        receipt = await receipt_for(ex, LA, to_school["response_id"])
        assert (receipt["outcome"], receipt["reason"]) == ("QUARANTINED", "not_the_referrer")
        assert "a response goes to the referrer only" in receipt["detail"]
        receipt = await receipt_for(ex, OTHER_LA, islington_answers["response_id"])
        assert (receipt["outcome"], receipt["reason"]) == ("QUARANTINED", "unknown_referral")
        for party in DEMO_PARTIES:
            if party.kind != "gateway":
                assert await responses_on(ex, party.id) == [], party.id
        async with referral_book(ex) as referrals:
            state = await referrals.get(str(referral_id), LA)
            assert state is not None
            assert state.acknowledged_at is None  # nothing stopped the clock
            due = state.acknowledge_due + timedelta(seconds=1)
            assert (await referrals.overdue(due))[LA, "acknowledgement"] == 1


def _responder(ex: Exchange, la: str, producer: Any) -> ReferralResponder:
    trust = ex.rt.trust()
    return ReferralResponder(
        identity=ex.rt.identity(la, trust),
        trust=trust,
        contract=ex.rt.contract(),
        producer=producer,
    )


def _response(referral_id: uuid.UUID, la: str, *, referrer: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "response_id": uuid.uuid4(),
        "referral_id": referral_id,
        "local_authority": la,
        "referrer": referrer,
        "stage": "ACKNOWLEDGED",
        "decision": None,
        "reasons": None,
        "next_steps": None,
        "la_contact": CONTACT,
        "la_reference": None,
        "responded_by": "MASH duty",
        "responded_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
    }


async def _send_forged(ex: Exchange, islington: ReferralResponder, forged: dict[str, Any]) -> None:
    """Islington signs a response that names Camden, and sends it as Islington: the
    signature names Islington's key, which is not Camden's."""
    contract, identity = ex.rt.contract(), ex.rt.identity(OTHER_LA)
    encoded = contract.encode(c.REFERRAL_RESPONSE, forged)
    signed = {
        "response": encoded,
        "signer_key_id": identity.signing_kid,
        "signature": identity.sign(DOMAIN + encoded),
    }
    plaintext = contract.encode(c.SIGNED_REFERRAL_RESPONSE, signed)
    value = Sealer(identity, ex.rt.trust(), "gateway").seal(
        Purpose.NOTIFICATION, forged["response_id"], plaintext
    )
    producer = await start_producer(ex.rt.kafka)
    try:
        await (await producer.send(inbound_topic(OTHER_LA), value))
    finally:
        await producer.stop()


async def test_an_las_responses_to_one_referral_reach_the_gateway_in_the_order_sent(
    tmp_path: Path,
) -> None:
    """An LA's acknowledgement and decision on one referral are on one partition of its
    inbound topic, in the order sent: unkeyed, they were spread over its partitions, a
    decision could be judged before the acknowledgement sent first, and the gateway then
    refused that acknowledgement as a second one (the referrer heard one response of two;
    seen as the demo timing out now and then)."""
    async with running_exchange(tmp_path, consumer=False) as ex:
        producer = await start_producer(ex.rt.kafka)
        try:
            camden = _responder(ex, LA, producer)
            sent: dict[uuid.UUID, list[uuid.UUID]] = {}
            for _ in range(6):
                referral_id = uuid.uuid4()
                ack = _response(referral_id, LA, referrer=GP)
                decided = ack | {
                    "response_id": uuid.uuid4(),
                    "stage": "DECIDED",
                    "decision": "EARLY_HELP",
                    "reasons": "r",
                    "next_steps": "n",
                }
                for response in (ack, decided):
                    await camden.send(response)
                sent[referral_id] = [ack["response_id"], decided["response_id"]]
        finally:
            await producer.stop()
        records = await read_topic(ex.rt.kafka, inbound_topic(LA))
        partitions = {r.partition for r in records}
        assert len(partitions) > 1, "the six referrals used one partition: nothing is shown"
        for referral_id, ids in sent.items():
            mine = [r for r in records if r.key == str(referral_id).encode()]
            assert len({r.partition for r in mine}) == 1, referral_id
            assert [message_id_of(r.value) for r in mine] == ids
