"""``make demo``: the whole exchange on the embedded broker, in under a minute.

Starts the memory-only broker, the gateway and Camden's consumer; Camden publishes its
allocations; a school, a hospital and the police send notifications (one about a child
with no allocated worker, one invalid, one forged); then it prints two social workers'
queues, the MASH queue, an onward share refused and one allowed, the quarantine and the
audit chain's verification.
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
from safeguard import samples
from safeguard.parties import DEMO_PARTIES, HEALTH, LA, POLICE, SCHOOL
from safeguard.runtime import Runtime, create_topics, publisher, run_consumer, run_gateway
from safeguard.sharing import ask_share
from sgx import contract as c
from sgx.broker import EmbeddedBroker
from sgx.envelope import Purpose, Sealer
from sgx.errors import ContractError, ExchangeError
from sgx.identifiers import make_nhs_number, make_upn
from sgx.kafka import inbound_topic, start_producer
from sgx.settings import ExchangeSettings, KafkaSettings
from sgx.trust import Identity, init_trust

CHILD_A = samples.child(make_nhs_number(101), make_upn(101), given="Amira", family="Example")
CHILD_B = samples.child(make_nhs_number(202), None, given="Leo", family="Sample")
CHILD_C = samples.child(make_nhs_number(303), None, given="Maya", family="Unallocated")
ALLOCATIONS = samples.allocation_update(
    [
        (CHILD_A["nhs_number"], CHILD_A["upn"], "sw-amara", "Assessment Team 1", "tm-jones"),
        (CHILD_B["nhs_number"], None, "sw-ben", "Assessment Team 1", "tm-jones"),
    ]
)


QUEUE_ROWS = 7


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


async def run_demo(keep: Path | None) -> None:
    home = keep or Path(tempfile.mkdtemp(prefix="sgx-demo-"))
    started = time.monotonic()
    try:
        heading("Trust directory (safeguard keys init)")
        trust = init_trust(home / "trust", DEMO_PARTIES)
        for party in trust.parties():
            say(f"  {party.id:<16} {party.kind:<16} {party.name}")
        async with EmbeddedBroker(home) as broker:
            say(f"  embedded broker (memory only) on {broker.bootstrap_servers}")
            rt = Runtime(
                exchange=ExchangeSettings(home=home, metrics_port=-1),
                kafka=KafkaSettings(
                    bootstrap_servers=broker.bootstrap_servers,
                    session_timeout_ms=2000,
                    heartbeat_interval_ms=300,
                ),
            )
            await _exchange(rt)
    finally:
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)
    say(f"\nDemo finished in {time.monotonic() - started:.1f} s.")


async def _exchange(rt: Runtime) -> None:
    await create_topics(rt)
    stop = asyncio.Event()
    registry = CollectorRegistry()
    ready = [asyncio.Event(), asyncio.Event()]
    services = [
        asyncio.create_task(run_gateway(rt, stop, registry, ready[0])),
        asyncio.create_task(run_consumer(rt, LA, stop, CollectorRegistry(), ready[1])),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
        await _traffic(rt, registry)
        item = await _show(rt)
        await _shares(rt, item)
    finally:
        stop.set()
        await asyncio.gather(*services)
    await _quarantine_and_audit(rt)


async def _traffic(rt: Runtime, registry: CollectorRegistry) -> None:
    heading("Camden publishes its allocations")
    async with publisher(rt, LA) as camden:
        await camden.publish_allocations(ALLOCATIONS)
    for a in ALLOCATIONS["allocations"]:
        worker, supervisor = a["worker"], a["supervisor"]
        say(f"  a child → {worker['name']} ({worker['id']}), supervisor {supervisor['id']}")

    def applied() -> float:
        value = registry.get_sample_value(
            "sgx_gateway_notifications_total", {"type": "allocation_update", "outcome": "applied"}
        )
        return value or 0.0

    async def allocations_applied() -> bool:
        return applied() >= 1

    await wait_for(allocations_applied, "the gateway to apply the allocations")

    heading("Agencies send notifications")
    async with (
        publisher(rt, SCHOOL) as school,
        publisher(rt, HEALTH) as health,
        publisher(rt, POLICE) as police,
    ):
        await school.publish(c.ATTENDANCE_UPDATE, samples.attendance_update(CHILD_A))
        say("  school  → attendance update about Amira (allocated to sw-amara)")
        await health.publish(c.HEALTH_UPDATE, samples.health_update(CHILD_A))
        say("  health  → A&E attendance about Amira (with clinical detail)")
        await police.publish(c.POLICE_NOTIFICATION, samples.police_notification(CHILD_B))
        say("  police  → Operation Encompass incident about Leo (allocated to sw-ben)")
        await health.publish(c.HEALTH_UPDATE, samples.health_update(CHILD_C))
        say("  health  → A&E attendance about Maya (no allocated worker)")
        bad = samples.attendance_update(dict(CHILD_A, nhs_number="9990000011"))
        try:
            await school.publish(c.ATTENDANCE_UPDATE, bad)
        except ContractError as exc:
            say(f"  school  ✗ refused at the producer: {exc}")
    invalid = seal_unchecked(rt.identity(SCHOOL), rt, c.ATTENDANCE_UPDATE, bad)
    forged = seal_unchecked(
        forged_identity(rt, HEALTH), rt, c.HEALTH_UPDATE, samples.health_update(CHILD_B)
    )
    await publish_raw(rt, SCHOOL, [invalid])
    say("  a buggy school system sends the same invalid record, skipping validation")
    await publish_raw(rt, HEALTH, [forged])
    say("  an impostor sends a health update 'from' the Royal Free, signed with its own key")

    async def settled() -> bool:
        return (
            registry.get_sample_value("sgx_gateway_quarantined_total", {"reason": "bad_signature"})
            or 0
        ) >= 1

    await wait_for(settled, "the gateway to judge every record")

    async def queued() -> bool:  # 2 for sw-amara, 3 for tm-jones, 1 for sw-ben, 1 for MASH
        async with await rt.queue_store(LA) as store:
            return await store.count() >= QUEUE_ROWS

    await wait_for(queued, "the consumer to queue every delivery")


async def _show(rt: Runtime) -> int:
    """Print the queues; returns sw-ben's first item (the police notification)."""
    async with await rt.queue_store(LA) as store:
        reader = await rt.queue_reader(LA, store)
        for worker in ("sw-amara", "tm-jones", "sw-ben", f"mash:{LA}"):
            views = await reader.list(worker)
            heading(f"Queue of {worker}: {len(views)} item(s)")
            for view in views:
                say(detail(view) if worker == "tm-jones" else summary_line(view))
        ben = await reader.list("sw-ben")
    return ben[0].item.item_id if ben else 0


async def _shares(rt: Runtime, item: int) -> None:
    heading(f"sw-ben asks to share police item #{item} onward")
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
        say(f"  to {to} ({category}): {verdict}\n    {answer['reason']}")


async def _quarantine_and_audit(rt: Runtime) -> None:
    async with await rt.gateway_store() as store:
        quarantined = await store.quarantine_list()
        heading(f"Gateway quarantine: {len(quarantined)} record(s)")
        for q in quarantined:
            say(f"  {q.topic} offset {q.offset}: {q.reason} — {q.detail}")
        records = await store.audit_records()
        heading(f"Audit trail: {len(records)} decision(s)")
        for r in records:
            to = f" → {r.recipient}" if r.recipient else ""
            say(
                f"  {r.sequence:>3} {r.decision:<13} {r.sender}{to}: {r.reason}"
                + (f" (withheld {', '.join(r.withheld)})" if r.withheld else "")
            )
        count, head = await store.verify_chain()
        say(f"\n  safeguard audit verify: chain of {count} records verified, head {head[:16]}…")
