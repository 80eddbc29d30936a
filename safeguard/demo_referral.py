"""The demo's referral: a GP refers a child open to no LA; Camden's MASH acknowledges it
and decides, signed by Camden; the GP is told, and no one else; a response Camden tries
to address to a school instead is quarantined (issue 24)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from consumers.referral_client import ReferralResponder
from producers.referral_outcomes import ReferralOutcomes
from safeguard import samples
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import GP, LA, LA_GSS, SCHOOL
from safeguard.referral_desk import respond
from safeguard.runtime import Runtime
from sgx.domain.identifiers import make_nhs_number
from sgx.kafka.wiring import start_producer
from sgx.wire import contract as c
from sgx.wire.ids import new_id

MIA = samples.child(make_nhs_number(707), None, given="Mia", family="Referred", residence=LA_GSS)
CONTACT = "Camden MASH: 020 7974 3317, mash@camden.example"
Say = Callable[[str], None]
WaitFor = Callable[[Callable[[], Awaitable[bool]], str], Awaitable[None]]


def la_response(referral_id: uuid.UUID, referrer: str, **said: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "response_id": new_id(),
        "referral_id": referral_id,
        "local_authority": LA,
        "referrer": referrer,
        "stage": "ACKNOWLEDGED",
        "decision": None,
        "reasons": None,
        "next_steps": None,
        "la_contact": CONTACT,
        "la_reference": "MASH-2026-0707",
        "responded_by": "Mo Duty, MASH duty social worker",
        "responded_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
    } | said


async def referral_both_ways(
    rt: Runtime, say: Say, wait_for: WaitFor, quarantined: Callable[[str], float]
) -> None:
    """``quarantined(reason)``: the gateway's count of records quarantined for it."""
    async with running_outbox(rt, GP) as gp:
        record = samples.referral(MIA)
        referral_id = await gp.add(c.REFERRAL, record)
        say(f"  Hillside Medical Practice refers Mia (open to no LA, lives in Camden, {LA_GSS})")

        async def at_mash() -> bool:
            async with await rt.queue_store(LA) as store:
                views = await (await rt.queue_reader(LA, store)).list(f"mash:{LA}")
            return any(v.item.notification_id == str(referral_id) for v in views)

        await wait_for(at_mash, "the referral at Camden's MASH")
        async with await rt.queue_store(LA) as store:
            views = await (await rt.queue_reader(LA, store)).list(f"mash:{LA}")
        view = next(v for v in views if v.item.notification_id == str(referral_id))
        due = view.delivery["referral_due"]
        say(f"  Camden's MASH has it ({view.item.route_reason.lower().replace('_', ' ')}): "
            f"acknowledge by {due['acknowledge_by']:%a %d %b %H:%M} UTC, decide by "
            f"{due['decide_by']:%a %d %b %H:%M} UTC (one working day each)")  # fmt: skip
        item, by = view.item.item_id, "Mo Duty, MASH duty social worker"
        await respond(rt, LA, item, by=by, stage="ACKNOWLEDGED", la_contact=CONTACT,
                      la_reference="MASH-2026-0707")  # fmt: skip
        say(f"  the MASH acknowledges it (signed by Camden): safeguard referral acknowledge {item}")
        await respond(
            rt, LA, item, by=by, stage="DECIDED", decision="SECTION_47_ENQUIRIES",
            reasons="What you describe meets the threshold for enquiries under s.47.",
            next_steps="Please join the strategy discussion tomorrow at 10:00.",
            la_contact=CONTACT, la_reference="MASH-2026-0707",
        )  # fmt: skip
        say("  and decides: s.47 enquiries; tells the GP why and what it asks of them")
        producer = await start_producer(rt.kafka)
        try:  # a response the LA's desk would never make: sent by hand, past it
            trust = rt.trust()
            camden = ReferralResponder(
                identity=rt.identity(LA, trust), trust=trust, contract=rt.contract(),
                producer=producer,
            )  # fmt: skip
            await camden.send(la_response(referral_id, SCHOOL))
            say("  a third response, addressed to Hillside school instead of the GP ...")
        finally:
            await producer.stop()
        outcomes = ReferralOutcomes(gp.store.engine, schema=gp.store.schema)

        async def told() -> bool:
            return len(await outcomes.of(GP, [referral_id])) == 2

        await wait_for(told, "the GP to hear Camden's acknowledgement and decision")
        say("  the GP hears (safeguard producer referral show), Camden's signature verified:")
        for heard in await outcomes.of(GP, [referral_id]):
            what = (heard.decision or heard.stage).lower().replace("_", " ")
            say(f"    {heard.local_authority}: {what}, by {heard.responded_by}; contact "
                f"{heard.la_contact}")  # fmt: skip

    async def refused() -> bool:
        return quarantined("not_the_referrer") > 0

    await wait_for(refused, "the gateway to refuse the response addressed to the school")
    say("    (the one addressed to the school reached no one: quarantined, not_the_referrer)")
