"""The demo's network checks (issue 24) through the real broker, asserted on every queue and
every agency: a school DSL's referral about a child open to no LA reaches Camden's MASH and
no worker's queue (nor Islington's); the school, the trust, the police and the GP each hold
exactly the request put to them and no agency another's; every answer shows on the MASH
item, the school's automatically; the police's, read at a later clock, was overdue; the LA's
acknowledgement and decision reach the school's outbox and no other agency's; the
family-informed decision is recorded on each check.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from producers.information_requests import InformationRequest, InformationRequests
from producers.receipts import catch_up
from producers.referral_outcomes import ReferralHeard, ReferralOutcomes
from safeguard.demo import CAMDEN, ISLINGTON, QUEUES
from safeguard.demo_network import ASKED_OF, LATE, network_checks
from safeguard.inbox_wiring import inbox_store
from safeguard.outbox_wiring import open_outbox_store, receipt_recorder
from safeguard.parties import DEMO_PARTIES, GP, LA, OTHER_LA, SCHOOL
from safeguard.runtime import Runtime
from sgx.domain.family import DisclosureKind
from tests.integration.harness import eventually, running_exchange
from tests.integration.mash import answer_items

pytestmark = pytest.mark.broker
AGENCIES = [p.id for p in DEMO_PARTIES if p.kind not in ("gateway", "local_authority")]


async def collected(
    rt: Runtime, agency: str, referral_id: uuid.UUID
) -> tuple[list[ReferralHeard], list[InformationRequest]]:
    """Everything waiting on the agency's receipts topic kept in its outbox, as the agency's
    own `safeguard producer ... list` keeps it; then the LA's word on the referral it holds,
    and the information requests put to it."""
    trust = rt.trust()
    async with await open_outbox_store(rt, agency) as store:
        recorder = receipt_recorder(rt, store, rt.identity(agency, trust), trust, rt.contract())
        await catch_up(recorder, rt.kafka)
        heard = await ReferralOutcomes(store.engine, schema=store.schema).of(agency, [referral_id])
        held = await InformationRequests(store.engine, schema=store.schema).list(agency)
    return heard, held


async def test_the_demo_story_on_every_queue_and_agency(tmp_path: Path) -> None:
    said: list[str] = []
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        await ex.allocate(CAMDEN)
        await ex.allocate(ISLINGTON)
        story = await network_checks(ex.rt, said.append, eventually)
        referral = str(story.referral_id)

        # The MASH of residence has the referral; no worker of either LA, nor Islington's MASH.
        for la, recipients in QUEUES.items():
            for recipient in recipients:
                ids = [v.item.notification_id for v in await ex.queue(recipient, la)]
                expected = 1 if recipient == f"mash:{LA}" else 0
                assert ids.count(referral) == expected, (la, recipient, ids)

        # The LA's acknowledgement and decision: in the school's outbox, in no other.
        # Each agency asked holds exactly its own request, every other agency none.
        assert set(story.requests) == set(ASKED_OF)
        for agency in AGENCIES:
            heard, held = await collected(ex.rt, agency, story.referral_id)
            if agency == SCHOOL:
                assert [(h.stage, h.decision) for h in heard] == [
                    ("ACKNOWLEDGED", None), ("DECIDED", "SECTION_47_ENQUIRIES"),
                ]  # fmt: skip
                assert all(h.local_authority == LA for h in heard)
            else:
                assert heard == [], agency
            if agency in ASKED_OF:
                assert [r.request_id for r in held] == [story.requests[agency]], agency
                (request,) = held
                assert request.local_authority == LA
                assert request.family_told is True
                assert request.answer_id is not None  # every one answered, the police late
                assert (request.automatic is True) == (agency == SCHOOL), agency
                if agency == LATE:
                    assert story.overdue_at is not None
                    assert request.deadline < story.overdue_at
                    assert request.answered_at is not None
                    assert request.answered_at < request.deadline  # late only by the clock
            else:
                assert held == [], agency

        # Every answer reached Camden's MASH queue as an item of its own, linked to its
        # request; Islington kept none of them.
        answers = {}
        for la in (LA, OTHER_LA):
            async with await ex.rt.queue_store(la) as queue:
                answers[la] = await answer_items(ex, queue, la)
        assert answers[OTHER_LA] == {}
        by_agency = {a: answers[LA][rid] for a, rid in story.requests.items()}
        assert all(v.item.recipient_id == f"mash:{LA}" for v in by_agency.values())
        assert by_agency[SCHOOL].notification["automatic"] is True
        assert "missed 3 of 8 possible sessions" in by_agency[SCHOOL].notification["facts"]
        assert by_agency[GP].notification["automatic"] is False
        assert {a: v.item.item_id for a, v in by_agency.items()} == story.answers

        # The answers' restrictions bound the MASH's onward shares: the police's answer to
        # the school refused, the GP's to a Camden colleague delivered into her queue.
        assert any(
            f"{LATE}'s answer to {SCHOOL} (other professional): REFUSED "
            "(THIRD_PARTY_AUTHOR_CONSENT, POLICE_CONFIDENTIAL_TO_PROCEEDINGS)" in line
            for line in said
        ), said
        gp_answer = by_agency[GP].item.notification_id
        onward = [v for v in await ex.queue("sw-amara") if v.item.notification_id == gp_answer]
        assert [(v.item.route_reason, v.is_answer) for v in onward] == [("ONWARD_SHARE", True)]
        # minimised for her role by Camden's agreement: the GP's facts, not its opinion,
        # which the MASH keeps; the gateway's audit of the delivery says what was withheld
        (copy,) = onward
        assert copy.notification["facts"] == by_agency[GP].notification["facts"]
        assert copy.notification["professional_opinion"] is None
        assert by_agency[GP].notification["professional_opinion"]
        assert (copy.item.withheld, by_agency[GP].item.withheld) == (("professional_opinion",), ())
        async with ex.gateway_store() as gateway:
            shared = await gateway.audit_records(notification_id=gp_answer)
        assert [a.withheld for a in shared if a.decision == "delivered"] == [
            ("professional_opinion",)
        ]
        assert any("withheld professional_opinion; the MASH keeps" in line for line in said)
        async with ex.gateway_store() as gateway:
            police = by_agency[LATE].item.notification_id
            refused = await gateway.audit_records(notification_id=police)
        assert [(a.decision, a.reason) for a in refused] == [("share_refused", "restriction")]
        assert any(f"#{story.item_id} (GET " in line for line in said)
        assert any("SgxInformationRequestOverdue fires" in line for line in said)

        # The family-informed decision, one per agency asked, each check made.
        refs = [str(r) for r in story.requests.values()]
        async with await inbox_store(ex.rt, LA) as store:
            recorded = await store.families.current(DisclosureKind.NETWORK_CHECK, refs)
        assert set(recorded) == set(refs)
        for disclosure in recorded.values():
            assert disclosure.made is True
            assert disclosure.item_id == story.item_id
            assert disclosure.decision is not None
            assert disclosure.decision.decision.informed is True

        async with ex.gateway_store() as gateway:
            for agency, rid in story.requests.items():
                audit = await gateway.audit_records(notification_id=str(rid))
                decisions = [a.decision for a in audit]
                assert decisions == ["information_requested", "information_answered"], agency
