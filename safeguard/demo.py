"""``make demo``: a two-borough partnership on the embedded broker, in under a minute.

Camden and Islington each run a consumer; a school in each, the Royal Free (serving both)
and the Metropolitan Police (serving both) send notifications. The demo shows that a
notification follows the child: to the LA holding the child's case whichever LA the
sender is registered under, to the MASH of the LA the child lives in when no LA holds
it, and through a transfer from Camden to Islington. An allocation update from Camden
that names Islington's cases is refused; an invalid and a forged record are quarantined.
Then it prints every queue of both LAs, an onward share refused and one allowed, a
share refused for want of the author's consent that the author, asked through the
exchange, grants, a GP's referral acknowledged and decided by Camden's MASH and told to
the GP alone (:mod:`safeguard.demo_referral`), a school's referral that Camden's MASH rates
and checks with four agencies, one answering automatically and one late (the overdue
alert), before it decides and tells the school (:mod:`safeguard.demo_network`), the
quarantine, each LA's audit and the
chain's verification.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from consumers.reader import detail, summary_line
from producers.consent_requests import ConsentRequests
from safeguard import samples
from safeguard.demo_inbox import serve_demo_inboxes
from safeguard.demo_network import network_checks
from safeguard.demo_referral import referral_both_ways
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import (
    DEMO_CONNECTORS,
    DEMO_PARTIES,
    HEALTH,
    LA,
    LA_GSS,
    OTHER_LA,
    OTHER_LA_GSS,
    POLICE,
    SCHOOL,
)
from safeguard.runtime import Runtime, create_topics, publisher, run_consumer, run_gateway
from safeguard.sharing import ask_consent, ask_share, consent_outcomes
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ContractError, ExchangeError
from sgx.kafka.embedded import EmbeddedBroker
from sgx.kafka.wiring import inbound_topic, start_producer
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust
from sgx.settings import ExchangeSettings, KafkaSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Purpose, Sealer

AMIRA = samples.child(make_nhs_number(101), make_upn(101), given="Amira", family="Example")
LEO = samples.child(make_nhs_number(202), None, given="Leo", family="Sample")
NOAH = samples.child(make_nhs_number(404), None, given="Noah", family="Islington")
MAYA = samples.child(
    make_nhs_number(303), None, given="Maya", family="Unallocated", residence=OTHER_LA_GSS
)
ELLA = samples.child(make_nhs_number(505), None, given="Ella", family="Nowhere")
ZARA = samples.child(make_nhs_number(606), None, given="Zara", family="Moving")
TEAM1, TEAM_N = "Assessment Team 1", "North Islington Team"
CAMDEN = samples.allocation_update(
    [
        (AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", TEAM1, "tm-jones"),
        (LEO["nhs_number"], None, "sw-ben", TEAM1, "tm-jones"),
        (ZARA["nhs_number"], None, "sw-amara", TEAM1, "tm-jones"),
    ]
)
ISLINGTON = samples.allocation_update(
    [(NOAH["nhs_number"], None, "sw-ines", TEAM_N, "tm-okoro")], la=OTHER_LA
)
QUEUES = {
    LA: ("sw-amara", "sw-ben", "tm-jones", f"mash:{LA}"),
    OTHER_LA: ("sw-ines", "tm-okoro", f"mash:{OTHER_LA}"),
}
NAMES = {LA: "Camden", OTHER_LA: "Islington"}


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} " + "=" * max(0, 74 - len(text)))


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise ExchangeError(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.05)


def forged_identity(rt: Runtime, party_id: str) -> Identity:
    """An impostor: the real party's name and key id, but a private key it does not hold."""
    party = rt.trust().party(party_id)
    return Identity(party, {party.keys[-1].kid: Ed25519PrivateKey.generate()}, {})


def seal_unchecked(identity: Identity, rt: Runtime, name: str, record: dict[str, Any]) -> bytes:
    """What a buggy producer would send: sealed properly, but never validated."""
    plaintext = rt.contract().encode(name, record, check=False)
    return Sealer(identity, rt.trust(), "gateway").seal(
        Purpose.NOTIFICATION, uuid.UUID(str(record["notification_id"])), plaintext
    )


async def publish_raw(rt: Runtime, agency: str, values: list[bytes]) -> None:
    producer = await start_producer(rt.kafka)
    try:
        for value in values:
            await producer.send_and_wait(inbound_topic(agency), value)
    finally:
        await producer.stop()


async def run_demo(keep: Path | None, inbox_port: int | None = None) -> None:
    home = keep or Path(tempfile.mkdtemp(prefix="sgx-demo-"))
    started = time.monotonic()
    try:
        heading("The partnership's trust directory (safeguard keys init)")
        trust = init_trust(home / "trust", DEMO_PARTIES, DEMO_CONNECTORS)
        for party in trust.parties():
            serves = f"GSS {party.gss_code}" if party.gss_code else ""
            if party.kind not in ("local_authority", "gateway"):
                serves = "serves " + " and ".join(trust.served(party.id))
            say(f"  {party.id:<17} {party.kind:<16} {party.name}; {serves}".rstrip("; "))
        async with EmbeddedBroker(home) as broker:
            say(f"  embedded broker (memory only) on {broker.bootstrap_servers}")
            rt = Runtime(
                exchange=ExchangeSettings(home=home, metrics_port=-1),
                kafka=KafkaSettings(
                    bootstrap_servers=broker.bootstrap_servers,
                    session_timeout_ms=2000,
                    heartbeat_interval_ms=300,
                    idempotence=False,  # the embedded broker has no idempotent producers
                ),
            )
            await _exchange(rt, inbox_port)
    finally:
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)
    say(f"\nDemo finished in {time.monotonic() - started:.1f} s.")


class _Demo:
    """The running demo: publishes as any party and waits on the gateway's counters."""

    def __init__(self, rt: Runtime, registry: CollectorRegistry) -> None:
        self.rt = rt
        self.registry = registry

    def count(self, type_: str, outcome: str) -> float:
        labels = {"type": type_, "outcome": outcome}
        return self.registry.get_sample_value("sgx_gateway_notifications_total", labels) or 0.0

    def quarantined(self, reason: str) -> float:
        labels = {"reason": reason}
        return self.registry.get_sample_value("sgx_gateway_quarantined_total", labels) or 0.0

    async def allocations(self, sender: str, update: dict[str, Any], what: str) -> None:
        """Publish an allocation update and wait until the gateway has judged it."""
        before = sum(self.count("allocation_update", o) for o in ("applied", "refused"))
        async with publisher(self.rt, sender) as la:
            await la.publish_allocations(update)

        async def judged() -> bool:
            return sum(self.count("allocation_update", o) for o in ("applied", "refused")) > before

        await wait_for(judged, f"the gateway to judge {what}")

    async def send(self, agency: str, name: str, record: dict[str, Any], line: str) -> None:
        """Publish a notification and wait until every queue it reaches has it."""
        before = await self.rows()
        async with publisher(self.rt, agency) as pub:
            await pub.publish(name, record)
        say(f"  {line}")

        async def routed() -> bool:
            return sum(self.count(c.SHORT_NAMES[name], o) for o in ("delivered", "refused")) > 0

        await wait_for(routed, "the gateway to route it")
        await wait_for(lambda: self._grown(before), "the consumers to queue it")

    async def rows(self) -> int:
        total = 0
        for la in QUEUES:
            async with await self.rt.queue_store(la) as store:
                total += await store.count()
        return total

    async def _grown(self, before: int) -> bool:
        return await self.rows() > before


async def _exchange(rt: Runtime, inbox_port: int | None) -> None:
    await create_topics(rt)
    stop = asyncio.Event()
    registry = CollectorRegistry()
    ready = [asyncio.Event() for _ in range(3)]
    services = [
        asyncio.create_task(run_gateway(rt, stop, registry, ready[0])),
        asyncio.create_task(run_consumer(rt, LA, stop, CollectorRegistry(), ready[1])),
        asyncio.create_task(run_consumer(rt, OTHER_LA, stop, CollectorRegistry(), ready[2])),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
        demo = _Demo(rt, registry)
        await _allocate(demo)
        await _traffic(demo)
        await _transfer(demo)
        await _bad_records(demo)
        item = await _show(rt)
        await _shares(rt, item)
        await _consent(rt)
        heading("A GP refers a child to the front door; Camden answers the GP, and only the GP")
        await referral_both_ways(rt, say, wait_for, demo.quarantined)
        heading("A school refers a child to Camden's MASH, which checks with the network")
        await network_checks(rt, say, wait_for)
        if inbox_port is not None:
            heading("The inboxes (safeguard inbox serve): sign in as each to see the difference")
            await serve_demo_inboxes(rt, inbox_port, say)
    finally:
        stop.set()
        await asyncio.gather(*services)
    await _quarantine_and_audit(rt)


async def _allocate(demo: _Demo) -> None:
    heading("Each LA publishes its own allocations")
    await demo.allocations(LA, CAMDEN, "Camden's allocations")
    await demo.allocations(OTHER_LA, ISLINGTON, "Islington's allocations")
    for la, update in ((LA, CAMDEN), (OTHER_LA, ISLINGTON)):
        for a in update["allocations"]:
            worker, supervisor = a["worker"], a["supervisor"]
            say(f"  {NAMES[la]}: a child → {worker['name']} ({worker['id']}), "
                f"supervisor {supervisor['name']} ({supervisor['id']})")  # fmt: skip
    heading("Camden's system sends an update that names Islington's case of Noah")
    intrusion = samples.allocation_update([], [(NOAH["nhs_number"], None)], la=OTHER_LA)
    await demo.allocations(LA, intrusion, "Camden's update for Islington")
    say("  refused by the gateway: an LA may change only its own cases (audited for both LAs)")


async def _traffic(demo: _Demo) -> None:
    heading("Agencies send notifications; each follows its child")
    sends = [
        (SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA),
         "Hillside (Camden) → attendance about Amira, open to Camden"),
        (HEALTH, c.HEALTH_UPDATE, samples.health_update(NOAH),
         "Royal Free → A&E attendance about Noah, open to Islington"),
        (POLICE, c.POLICE_NOTIFICATION, samples.police_notification(LEO),
         "Met Police → Operation Encompass incident about Leo, open to Camden"),
        (HEALTH, c.HEALTH_UPDATE, samples.health_update(MAYA),
         f"Royal Free → A&E about Maya: open to no LA, lives in Islington ({OTHER_LA_GSS})"),
        (HEALTH, c.HEALTH_UPDATE, samples.health_update(ELLA),
         "Royal Free → A&E about Ella: open to no LA, residence unknown"),
    ]  # fmt: skip
    for agency, name, record, line in sends:
        await demo.send(agency, name, record, line)
    say("    (Ella goes to the Royal Free's default LA under the agreement: Camden)")


async def _transfer(demo: _Demo) -> None:
    heading("Zara moves from Camden to Islington")
    transfer_in = samples.allocation_update(
        [(ZARA["nhs_number"], None, "sw-ines", TEAM_N, "tm-okoro")], la=OTHER_LA,
        transfer_from=LA_GSS,
    )  # fmt: skip
    await demo.allocations(OTHER_LA, transfer_in, "Islington's transfer-in")
    say(f"  Islington allocates Zara to Ines Duarte (transfer-in from Camden, {LA_GSS})")
    line = "Hillside (Camden) → attendance about Zara: both LAs hold her now"
    await demo.send(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(ZARA), line)
    closure = samples.allocation_update([], [(ZARA["nhs_number"], None)])
    await demo.allocations(LA, closure, "Camden's closure")
    say("  Camden closes its case for Zara (deallocation)")
    line = "Royal Free → A&E about Zara: only Islington holds her now"
    await demo.send(HEALTH, c.HEALTH_UPDATE, samples.health_update(ZARA), line)


async def _bad_records(demo: _Demo) -> None:
    rt = demo.rt
    heading("Bad input")
    bad = samples.attendance_update(dict(AMIRA, nhs_number="9990000011"))
    async with publisher(rt, SCHOOL) as school:
        try:
            await school.publish(c.ATTENDANCE_UPDATE, bad)
        except ContractError as exc:
            say(f"  school  ✗ refused at the producer: {exc}")
    invalid = seal_unchecked(rt.identity(SCHOOL), rt, c.ATTENDANCE_UPDATE, bad)
    forged = seal_unchecked(
        forged_identity(rt, HEALTH), rt, c.HEALTH_UPDATE, samples.health_update(LEO)
    )
    await publish_raw(rt, SCHOOL, [invalid])
    say("  a buggy school system sends the same invalid record, skipping validation")
    await publish_raw(rt, HEALTH, [forged])
    say("  an impostor sends a health update 'from' the Royal Free, signed with its own key")

    async def settled() -> bool:
        sample = demo.registry.get_sample_value(
            "sgx_gateway_quarantined_total", {"reason": "bad_signature"}
        )
        return (sample or 0) >= 1

    await wait_for(settled, "the gateway to judge every record")


async def _show(rt: Runtime) -> int:
    """Print every queue of both LAs; returns sw-ben's first item (the police notification)."""
    item = 0
    for la, workers in QUEUES.items():
        async with await rt.queue_store(la) as store:
            reader = await rt.queue_reader(la, store)
            for worker in workers:
                views = await reader.list(worker)
                heading(f"{NAMES[la]}: queue of {worker}: {len(views)} item(s)")
                for view in views:
                    say(detail(view) if worker == "tm-okoro" else summary_line(view))
                if worker == "sw-ben" and views:
                    item = views[0].item.item_id
    return item


async def _shares(rt: Runtime, item: int) -> None:
    heading(f"sw-ben (Camden) asks to share police item #{item} onward")
    for to, category in (("parents", "PARENT_OR_CARER"), ("sw-amara", "LA_SOCIAL_CARE")):
        answer = await ask_share(
            rt,
            LA,
            item,
            to_id=to,
            category=category,
            to_name=to,
            purpose="planning meeting",
            by="sw-ben",
        )
        verdict = "allowed" if answer["allowed"] else f"REFUSED ({', '.join(answer['broken'])})"
        say(f"  to {to} ({category.lower().replace('_', ' ')}): {verdict}\n    {answer['reason']}")


async def _consent(rt: Runtime) -> None:
    """A share refused for want of the author's consent; asked, granted, then allowed."""
    async with await rt.queue_store(LA) as store:
        views = await (await rt.queue_reader(LA, store)).list("sw-amara")
    item = next(v.item.item_id for v in views if v.item.notification_type == c.ATTENDANCE_UPDATE)
    heading(f"sw-amara (Camden) asks to share attendance item #{item} with Amira's parents")
    purpose = "family meeting about attendance"

    async def share(category: str, to: str) -> str:
        answer = await ask_share(
            rt, LA, item, to_id=to, category=category, to_name=to, purpose=purpose,
            by="sw-amara",
        )  # fmt: skip
        broken = ", ".join(answer["broken"])
        return f"allowed: {answer['reason']}" if answer["allowed"] else f"REFUSED ({broken})"

    say(f"  to her parents: {await share('PARENT_OR_CARER', 'parents')}")
    async with running_outbox(rt, SCHOOL) as school:
        asked = await ask_consent(
            rt, LA, item, category="PARENT_OR_CARER", purpose=purpose, by="sw-amara"
        )
        say(f"  sw-amara asks the author through the exchange: {asked['reason']}")
        book = ConsentRequests(school.store.engine, schema=school.store.schema)

        async def arrived() -> bool:
            return bool(await book.list(SCHOOL, open_only=True))

        await wait_for(arrived, "the consent request to reach the school")
        (request,) = await book.list(SCHOOL, open_only=True)
        say(f"  Hillside's consent requests (safeguard producer consent list): to share with "
            f"{request.category.lower().replace('_', ' ')} for {request.purpose!r}, asked by "
            f"{request.requested_by} of {request.local_authority}; nothing of the record "
            "comes with it")  # fmt: skip
        by = "Ruth Okafor (designated safeguarding lead)"
        await book.answer(school, request.request_id, granted=True, answered_by=by)
        say("  Hillside grants it (safeguard producer consent grant): signed, sent, audited")

        async def granted() -> bool:
            said = (await consent_outcomes(rt, LA, {request.request_id})).get(
                request.request_id, []
            )
            return any(o["state"] == "GRANTED" for o in said)

        await wait_for(granted, "Camden to hear the school's answer")
    say(f"  Camden hears: granted by {by}")
    say(f"  the same share again: {await share('PARENT_OR_CARER', 'parents')}")
    say(f"  to the family's GP: {await share('OTHER_PROFESSIONAL', 'gp')}")
    say("    (a consent covers the category and purpose asked about, nothing else)")


async def _quarantine_and_audit(rt: Runtime) -> None:
    async with await rt.gateway_store() as store:
        quarantined = await store.quarantine_list()
        heading(f"Gateway quarantine: {len(quarantined)} record(s)")
        for q in quarantined:
            say(f"  {q.topic} offset {q.offset}: {q.reason} — {q.detail}")
        for la in QUEUES:
            records = await store.audit_records(local_authority=la)
            heading(f"{NAMES[la]}'s audit (safeguard audit list --la {la}): {len(records)}")
            for r in records:
                to = f" → {r.recipient}" if r.recipient else ""
                withheld = f" (withheld {', '.join(r.withheld)})" if r.withheld else ""
                why = f" — {r.detail}" if r.notification_type == "allocation_update" else ""
                what = f"{r.decision:<17} {r.notification_type or '-':<19}"
                say(f"  {r.decided_at:%H:%M:%S} {what} "
                    f"{r.sender}{to}: {r.reason}{withheld}{why}")  # fmt: skip
        verified = await store.verify_chains()
        total = sum(count for count, _ in verified.values())
        say(
            f"\n  safeguard audit verify: {len(verified)} chains (one per partition read), "
            f"{total} records, all verified"
        )
