"""The demo's network checks (issue 24): a school's designated safeguarding lead refers a
child open to no LA; the referral reaches the MASH of the LA the child lives in (Camden),
which acknowledges it, rates it Amber and asks the school, the Royal Free trust, the police
and the GP what they hold, the family told first. The school's feed answers from its
attendance register without a person, the trust and the GP by a person; the police answer
late, after the gateway's overdue gauge (read at a later clock time, not by waiting) has
put ``SgxInformationRequestOverdue`` on. The answers show on the MASH item, each an item of
the MASH queue of its own; their restrictions bind onward shares (the police's answer to
the school is refused, the GP's to a Camden colleague delivered, minimised for her role by
Camden's agreement: the GP's facts, not its opinion, which the audit says was withheld);
Camden decides and tells
the school, and no one else; the family-informed record is shown.

:func:`network_checks` is the story; the broker test walks the same one and asserts it on
every queue and every agency (tests/integration/test_demo_network.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from consumers.inbox.settings import InboxSettings
from gateway.information_book import InformationBook
from gateway.information_monitor import InformationMetrics, InformationMonitor
from producers.information_requests import InformationRequests, attendance_answer
from producers.outbox import Outbox
from producers.referral_outcomes import ReferralOutcomes
from producers.school import parse_export
from safeguard import samples
from safeguard.demo_referral import CONTACT
from safeguard.inbox_wiring import inbox_store, serving_inbox
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import GP, HEALTH, LA, LA_GSS, POLICE, SCHOOL
from safeguard.referral_desk import respond
from safeguard.runtime import Runtime
from sgx.domain.family import DisclosureKind
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.wire import contract as c

SAMI = samples.child(
    make_nhs_number(808), make_upn(808), given="Sami", family="Checked", residence=LA_GSS
)
ASKED_OF = (SCHOOL, HEALTH, POLICE, GP)
LATE = POLICE
DSL = "Ruth Okafor"
DUTY = "Mo Duty, MASH duty social worker"
# The school's attendance export (what its feed holds): Sami missed 3 of 8 sessions.
MISSED = ((3, "AM"), (3, "PM"), (5, "AM"))
EXPORT = "upn,date,session,mark\n" + "".join(
    f"{SAMI['upn']},2026-11-0{d},{s},{'N' if (d, s) in MISSED else '/'}\n"
    for d in (2, 3, 4, 5)
    for s in ("AM", "PM")
)
ANSWERS = {  # what each agency's person says (the school's feed answers by itself)
    HEALTH: ("HELD", "Two A&E attendances in October: a head injury, a scald to the hand",
             "The explanations given did not fit the injuries", "Dr Ada Nwosu, named doctor"),
    GP: ("HELD", "Registered since 2019; missed the last two asthma reviews",
         "Missed reviews with a household under strain would worry us",
         "Dr Priya Nair, practice safeguarding lead"),
    POLICE: ("HELD", "Two domestic abuse call-outs to the home address this year", None,
             "DS Kemi Bello, MASH police"),
}  # fmt: skip
SCOPES = ("deliveries:read", "shares:write", "queue:mash")
Say = Callable[[str], None]
WaitFor = Callable[[Callable[[], Awaitable[bool]], str], Awaitable[None]]


@dataclass
class Story:
    """What the story made, for a test to check on every queue and agency."""

    referral_id: uuid.UUID
    item_id: int = 0
    requests: dict[str, uuid.UUID] = field(default_factory=dict)  # by agency asked
    overdue_at: datetime | None = None  # the clock time the gauge was read at
    answers: dict[str, int] = field(default_factory=dict)  # by agency: its MASH queue item


def words(code: str) -> str:
    return code.lower().replace("_", " ")


def school_referral() -> dict[str, Any]:
    record = samples.referral(SAMI, SCHOOL, urgency="PRIORITY")
    record["author"].update(name=DSL, role="designated safeguarding lead")
    record["assessment"].update(
        facts="Sami came in with a bruise on his cheek and said 'Dad got angry'; his "
        "attendance has fallen to 62% since September.",
        professional_opinion="He is frightened to go home.",
        support_offered="Daily check-ins with his class teacher.",
    )
    record["referral"].update(
        concerns=["PHYSICAL_ABUSE"],
        how_it_arose="Sami told his teacher at morning registration.",
        child_needs="Safety at home; his attendance and learning.",
        parenting_capacity="Mother says the father's temper has worsened since he lost his job.",
        family_and_environment="Lives with his mother and father; no other children.",
        household=[],
        parents_views="Mother agreed the school should ask for help.",
        others_informed=[],
        discussed_with="Ms Patel, deputy DSL",
        referrer_reference="HPS-DSL-2026-031",
    )
    return record


async def network_checks(rt: Runtime, say: Say, wait_for: WaitFor) -> Story:
    """The whole story, on a running gateway and Camden consumer."""
    async with contextlib.AsyncExitStack() as stack:
        outboxes = {
            agency: await stack.enter_async_context(running_outbox(rt, agency))
            for agency in ASKED_OF
        }
        story = await _refer(rt, outboxes[SCHOOL], say, wait_for)
        await respond(rt, LA, story.item_id, by=DUTY, stage="ACKNOWLEDGED", la_contact=CONTACT,
                      la_reference="MASH-2026-0808")  # fmt: skip
        say("  Camden's MASH acknowledges it (signed by Camden), from its command line: "
            f"safeguard referral acknowledge {story.item_id}")  # fmt: skip
        running = await stack.enter_async_context(
            serving_inbox(rt, LA, InboxSettings(host="127.0.0.1", port=0))
        )
        async with await inbox_store(rt, LA) as store:
            token = await store.add_client("demo-mash-system", SCOPES)
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=running.url, headers={"authorization": f"Bearer {token}"}, timeout=60
            )
        )
        await _ask(http, story, say)
        await _answer(rt, outboxes, story, say, wait_for)
        await _late(rt, outboxes[LATE], story, say, wait_for)
        await _on_the_item(http, story, say, wait_for)
        await _share_answers(rt, http, story, say, wait_for)
        await _decide(rt, outboxes[SCHOOL], story, say, wait_for)
        await _family_record(rt, story, say)
    return story


async def _refer(rt: Runtime, school: Outbox, say: Say, wait_for: WaitFor) -> Story:
    referral_id = await school.add(c.REFERRAL, school_referral())
    say(f"  {DSL}, Hillside Primary's DSL, refers Sami (open to no LA, lives in Camden, "
        f"{LA_GSS})")  # fmt: skip
    story = Story(referral_id)

    async def at_mash() -> bool:
        async with await rt.queue_store(LA) as store:
            views = await (await rt.queue_reader(LA, store)).list(f"mash:{LA}")
        for v in views:
            if v.item.notification_id == str(referral_id):
                story.item_id = v.item.item_id
        return story.item_id != 0

    await wait_for(at_mash, "the school's referral at Camden's MASH")
    say(f"  it reaches Camden's MASH queue (mash:{LA}) as item #{story.item_id}, and no "
        "worker's: no one holds Sami's case")  # fmt: skip
    return story


async def _ask(http: httpx.AsyncClient, story: Story, say: Say) -> None:
    url = f"/api/v1/deliveries/{story.item_id}/network-checks"
    body = {
        "rating": "AMBER",
        "agencies": list(ASKED_OF),
        "asked": "What you know of Sami and his household: injuries, attendance, incidents",
        "family": {
            "informed": True, "informed_at": datetime.now(UTC).isoformat(),
            "informed_by": "Mo Duty", "method": "PHONE", "family_member": "his mother",
            "decided_by": "Mo Duty",
        },
    }  # fmt: skip
    made = await http.post(url, json=body)
    made.raise_for_status()
    say("  the MASH manager rates the contact AMBER (answers within 24 working hours); the "
        "duty worker tells Sami's mother by phone, then asks four agencies "
        f"(POST {url}):")  # fmt: skip
    for check in made.json()["checks"]:
        story.requests[check["agency"]] = uuid.UUID(check["request_id"])
        deadline = datetime.fromisoformat(check["deadline"])
        say(f"    {check['agency']:<16} {words(check['state'])}, answer due "
            f"{deadline:%a %d %b %H:%M} UTC")  # fmt: skip


async def _open_request(
    outbox: Outbox, request_id: uuid.UUID, wait_for: WaitFor
) -> InformationRequests:
    book = InformationRequests(outbox.store.engine, schema=outbox.store.schema)

    async def arrived() -> bool:
        return any(r.request_id == request_id for r in await book.list(outbox.agency))

    await wait_for(arrived, f"the information request to reach {outbox.agency}")
    return book


async def _answer(
    rt: Runtime, outboxes: dict[str, Outbox], story: Story, say: Say, wait_for: WaitFor
) -> None:
    school = outboxes[SCHOOL]
    book = await _open_request(school, story.requests[SCHOOL], wait_for)
    (request,) = await book.list(SCHOOL, open_only=True)
    outcome, facts = attendance_answer(request, parse_export(EXPORT))
    await book.answer(
        school, request.request_id, outcome=outcome, facts=facts,
        answered_by=f"{SCHOOL} attendance feed", automatic=True,
    )  # fmt: skip
    say(f"  Hillside's feed answers from its attendance register, no person involved "
        f"(safeguard producer information auto-answer): {words(outcome)}")  # fmt: skip
    for agency in (HEALTH, GP):
        book = await _open_request(outboxes[agency], story.requests[agency], wait_for)
        outcome, facts, opinion, by = ANSWERS[agency]
        await book.answer(
            outboxes[agency], story.requests[agency], outcome=outcome, facts=facts,
            opinion=opinion, answered_by=by,
        )  # fmt: skip
        name = rt.trust().party(agency).name
        say(f"  {name} answers (safeguard producer information answer), by {by}")
    await _open_request(outboxes[LATE], story.requests[LATE], wait_for)
    say(f"  {rt.trust().party(LATE).name} has the request, and does not answer in time")


async def _late(rt: Runtime, police: Outbox, story: Story, say: Say, wait_for: WaitFor) -> None:
    book = InformationRequests(police.store.engine, schema=police.store.schema)
    request = await book.get(LATE, story.requests[LATE])
    later = request.deadline + timedelta(minutes=5)
    story.overdue_at = later
    async with await rt.gateway_store() as store:
        registry = CollectorRegistry()
        gauge = InformationMonitor(
            InformationBook(store.engine, schema=store.schema), InformationMetrics(registry),
            clock=lambda: later,
        )  # fmt: skip

        async def overdue() -> float:
            await gauge.refresh()
            labels = {"la": LA, "party": LATE}
            return registry.get_sample_value("sgx_information_requests_overdue", labels) or 0

        n = await overdue()
        say(f"  at {later:%a %d %b %H:%M} UTC, five minutes past the deadline, the gateway's "
            f"gauge reads sgx_information_requests_overdue{{la=\"{LA}\",party=\"{LATE}\"}} "
            f"= {n:.0f}")  # fmt: skip
        say(f"    → the alert SgxInformationRequestOverdue fires: \"{n:.0f} information "
            f"request(s) from {LA}'s MASH overdue at {LATE}\"")  # fmt: skip
        say(f"    (the police's own list marks it: "
            f"{'OVERDUE' if request.overdue(later) else 'not overdue'})")  # fmt: skip
        outcome, facts, opinion, by = ANSWERS[LATE]
        await book.answer(
            police, story.requests[LATE], outcome=outcome, facts=facts, opinion=opinion,
            answered_by=by,
        )  # fmt: skip
        say(f"  the police answer late, by {by}")

        async def quiet() -> bool:
            return await overdue() == 0

        await wait_for(quiet, "the gateway to record the police's answer")
        say("    the gauge has no overdue request any more: the alert resolves")
        say("    (the demo reads the gauge at a later clock rather than waiting a day, so the "
            "gateway's audit, on the real clock, records the answer in time)")  # fmt: skip


async def _on_the_item(http: httpx.AsyncClient, story: Story, say: Say, wait_for: WaitFor) -> None:
    url = f"/api/v1/deliveries/{story.item_id}/network-checks"

    async def all_answered() -> bool:
        checks = (await http.get(url)).json()["checks"]
        return all(check["state"] == "ANSWERED" for check in checks)

    await wait_for(all_answered, "every answer to show on the MASH item")
    say(f"  the answers on Camden's MASH item #{story.item_id} (GET {url}), each an item of "
        "the MASH queue of its own, kept by Camden's consumer:")  # fmt: skip
    for check in (await http.get(url)).json()["checks"]:
        answer = check["answer"]
        story.answers[check["agency"]] = check["answer_item"]
        how = "automatically" if answer["automatic"] else f"by {answer['answered_by']}"
        say(f"    {check['agency']:<16} {words(answer['outcome'])}, {how} "
            f"(item #{check['answer_item']})")  # fmt: skip
        say(f"      facts: {answer['facts']}")
        if answer["professional_opinion"]:
            say(f"      opinion: {answer['professional_opinion']}")


async def _share_answers(
    rt: Runtime, http: httpx.AsyncClient, story: Story, say: Say, wait_for: WaitFor
) -> None:
    """An answer's restrictions bind onward shares as a notification's: the gateway holds
    each answer in its ledger. One delivered to a colleague is minimised for her role."""
    say("  the answers carry their restrictions onward, judged by the gateway's ledger:")
    for agency, category, to, purpose in (
        (LATE, "OTHER_PROFESSIONAL", SCHOOL, "so the DSL can plan Sami's day"),
        (GP, "LA_SOCIAL_CARE", "sw-amara", "the s.47 enquiry's lead worker"),
    ):
        item = story.answers[agency]
        asked = await http.post(
            f"/api/v1/deliveries/{item}/shares",
            json={"category": category, "to_name": to, "purpose": purpose},
        )
        asked.raise_for_status()
        share = asked.json()
        broken = f" ({', '.join(share['broken'])})" if share["broken"] else ""
        say(f"    {agency}'s answer to {to} ({words(category)}): "
            f"{share['status'].upper()}{broken}")  # fmt: skip
    answer_id = (await http.get(f"/api/v1/deliveries/{story.answers[GP]}")).json()[
        "notification_id"
    ]
    withheld: list[str] = []

    async def delivered() -> bool:
        async with await rt.gateway_store() as store:
            audit = await store.audit_records(notification_id=answer_id)
        withheld[:] = [w for a in audit if a.decision == "delivered" for w in a.withheld]
        return any(a.decision == "delivered" for a in audit)

    await wait_for(delivered, "the gateway to deliver the GP's answer to sw-amara")
    kept = ", ".join(withheld) or "nothing"
    say(f"      delivered minimised for her role (an onward share) by {LA}'s agreement: "
        f"withheld {kept}; the MASH keeps the whole answer")  # fmt: skip


async def _decide(rt: Runtime, school: Outbox, story: Story, say: Say, wait_for: WaitFor) -> None:
    await respond(
        rt, LA, story.item_id, by=DUTY, stage="DECIDED", decision="SECTION_47_ENQUIRIES",
        la_contact=CONTACT, la_reference="MASH-2026-0808",
        reasons="The agencies' answers together meet the threshold for enquiries under s.47.",
        next_steps="Keep Sami in school's sight today; a social worker will visit by 15:00.",
    )  # fmt: skip
    say(f"  Camden decides: s.47 enquiries (safeguard referral decide {story.item_id}), and "
        "tells the school why and what it asks")  # fmt: skip
    outcomes = ReferralOutcomes(school.store.engine, schema=school.store.schema)

    async def told() -> bool:
        return len(await outcomes.of(SCHOOL, [story.referral_id])) == 2

    await wait_for(told, "the school to hear Camden's acknowledgement and decision")
    say("  Hillside hears (safeguard producer referral show), Camden's signature verified:")
    for heard in await outcomes.of(SCHOOL, [story.referral_id]):
        say(f"    {heard.local_authority}: {words(heard.decision or heard.stage)}, by "
            f"{heard.responded_by}")  # fmt: skip


async def _family_record(rt: Runtime, story: Story, say: Say) -> None:
    refs = [str(r) for r in story.requests.values()]
    async with await inbox_store(rt, LA) as store:
        recorded = await store.families.current(DisclosureKind.NETWORK_CHECK, refs)
    say(f"  the family-informed record: {len(recorded)} network checks, each with its decision")
    for disclosure in sorted(recorded.values(), key=lambda d: d.to_name):
        decided = disclosure.decision.decision.words() if disclosure.decision else "NO DECISION"
        say(f"    to {disclosure.to_name}: {decided}")
