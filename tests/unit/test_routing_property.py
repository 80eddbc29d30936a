"""Routing by the child over hundreds of random partnerships, against the gateway's judge.

No Kafka here: each step of a random script (:mod:`tests.partnerships`) is sealed by its
sender as the producer would, judged by the real :class:`gateway.decide.Judge` (real
envelope crypto, allocation directory and audit store on SQLite), and its decision is
written to the audit trail. Allocations, closures and notifications name their child by
random subsets of its identifiers (and now and then pair one child's NHS number with
another's UPN), and the model follows the rule for an LA's cases (docs/design.md,
"Cases"). Every notification must reach at least one queue; no worker or supervisor may
receive a child their LA does not hold; a MASH receives only children open nowhere,
resident in (or defaulted to) its LA; every addressee has its own audit record, written
to the chain; each school's open-case list holds exactly the identifiers open in the LAs
it serves. Referrals, from agencies that only refer and now and then from any agency, are
routed by the same rule, and each LA a referral reaches (and no other) gets its deadlines
and a clock naming the sender as the referrer. The end-to-end variant is in
tests/integration/test_partnership_e2e.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings

from gateway.allocation_feed import AllocationFeed
from gateway.allocations import AllocationDirectory
from gateway.consent_book import ConsentBook
from gateway.decide import Judge
from gateway.decision import Decision
from gateway.open_cases import encoded_lists, served_sets
from gateway.partnership import Partnership
from gateway.referral_book import ReferralBook
from gateway.referrals import ReferralClock
from gateway.requests import DisclosureRequests
from gateway.store import GatewayStore
from sgx.domain.calendar import CalendarSettings
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.quarantine import Source
from sgx.kafka.wiring import allocations_topic, inbound_topic
from sgx.keys.identity import Identity
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import Party, PartyKey, TrustDirectory
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.contract import Contract, default_contract
from sgx.wire.envelope import Opener, Purpose, Sealer
from tests.partnerships import (
    FEEDS,
    Agency,
    Allocate,
    Child,
    Close,
    Intrude,
    Model,
    Naming,
    Notify,
    Spec,
    check_routed,
    la_id,
    specs,
)

EXAMPLES = 300
PSEUDONYM_KEY = bytes(range(32))


@functools.cache
def _keys(party_id: str) -> tuple[Ed25519PrivateKey, X25519PrivateKey, PartyKey]:
    """One key pair per party id, made once for every example that uses the id."""
    signing, box = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    now = datetime.now(UTC)
    key = PartyKey(
        kid=f"{party_id}/test-0001",
        signing_public=signing.public_key().public_bytes_raw(),
        box_public=box.public_key().public_bytes_raw(),
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=30),
    )
    return signing, box, key


def _world(spec: Spec) -> tuple[TrustDirectory, dict[str, Identity]]:
    parties = []
    for p in spec.parties():
        key = _keys(p.id)[2]
        parties.append(
            Party(id=p.id, kind=p.kind, name=p.name, gss_code=p.gss_code,
                  serves=list(p.serves), serves_any=p.serves_any, keys=[key])
        )  # fmt: skip
    identities = {
        party.id: Identity(
            party, {party.keys[0].kid: _keys(party.id)[0]}, {party.keys[0].kid: _keys(party.id)[1]}
        )
        for party in parties
    }
    return TrustDirectory(parties), identities


@functools.cache
def _agreement() -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(ExchangeSettings().agreement_file.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in ("default_las", "authorities")}


@functools.cache
def _template() -> Path:
    """Empty gateway and request databases, migrated once and copied for each example:
    migrating two new SQLite files cost more than judging a whole example. Made in a
    thread of its own, so it can be called from within an example's event loop."""
    home = Path(_TEMPLATES.name)

    async def migrate() -> None:
        async with (
            await GatewayStore.open(None, home / "gateway.db", owner="gateway"),
            await DisclosureRequests.open(None, home / "requests.db", owner="gateway"),
        ):
            pass

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, migrate()).result()
    return home


_TEMPLATES = tempfile.TemporaryDirectory(prefix="sgx-routing-")


class _Run:
    """One example: a trust directory, a judge over real stores, and a sealer per sender."""

    def __init__(self, spec: Spec, home: Path, contract: Contract) -> None:
        self.spec, self.home, self.contract = spec, home, contract
        self.trust, self.identities = _world(spec)
        self.offset = 0
        self.open_case_lists: dict[str, dict[str, Any]] = {}

    async def __aenter__(self) -> _Run:
        for name in ("gateway.db", "requests.db"):
            shutil.copyfile(_template() / name, self.home / name)
        self.store = await GatewayStore.open(None, self.home / "gateway.db", owner="gateway")
        self.requests = await DisclosureRequests.open(
            None, self.home / "requests.db", owner="gateway"
        )
        pseudonyms = Pseudonymiser(PSEUDONYM_KEY)
        self.allocations = AllocationDirectory(self.store.engine, pseudonyms)
        opener = Opener(self.identities["gateway"], self.trust)
        self.feed = AllocationFeed(
            directory=self.allocations, opener=opener, contract=self.contract, trust=self.trust
        )
        await self.feed.start()
        data = {**_agreement(), "default_las": self.spec.default_las()}
        partnership = Partnership.from_mapping(data, self.contract, self.trust, source="test")
        self.referrals = ReferralBook(self.requests.engine)
        clock = ReferralClock(
            partnership=partnership, calendar=CalendarSettings().calendar(), book=self.referrals
        )
        self.judge = Judge(
            opener=opener,
            contract=self.contract,
            partnership=partnership,
            feed=self.feed,
            store=self.store,
            pseudonyms=pseudonyms,
            trust=self.trust,
            requests=self.requests,
            consents=ConsentBook(self.store.engine),
            referrals=clock,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.requests.close()
        await self.store.close()

    async def send(
        self, sender: str, purpose: Purpose, name: str, record: dict[str, Any]
    ) -> Decision:
        """Seal ``record`` as ``sender`` would, judge it, and write the decision's audit."""
        message_id = (
            uuid.UUID(str(record["notification_id"]))
            if "notification_id" in record
            else uuid.uuid4()
        )
        plaintext = self.contract.encode(name, record)
        sealed = Sealer(self.identities[sender], self.trust, "gateway").seal(
            purpose, message_id, plaintext
        )
        self.offset += 1
        topic = (
            allocations_topic(sender) if purpose is Purpose.ALLOCATIONS else inbound_topic(sender)
        )
        source = Source(topic, 0, self.offset, 0, sealed)
        decision = await self.judge.judge(source)
        changes = decision.allocation_changes
        sequences = await self.store.record(
            decision.audit,
            decision.quarantine,
            decision.ledger,
            chains=[f"{topic}:0"] * len(decision.audit),
            also=[functools.partial(self.allocations.persist, changes=changes)] if changes else (),
        )
        assert len(set(sequences)) == len(decision.audit), "two decisions share an audit record"
        self.open_case_lists = {}  # as the gateway encodes them, decoded as a school does
        for served, schools in served_sets(decision.open_cases_of, self.trust).items():
            keys = await self.allocations.open_case_keys(served)
            for school, encoded in encoded_lists(self.contract, schools, keys, datetime.now(UTC)):
                self.open_case_lists[school] = self.contract.decode_as(c.OPEN_CASE_LIST, encoded)
        return decision


def _received(decision: Decision) -> list[tuple[str, str, str]]:
    """(LA, queue, reason) of every addressee, checking each has its own audit record."""
    got = []
    for delivery in decision.deliveries:
        for addressee, index in zip(
            delivery.record["recipients"], delivery.audit_indexes, strict=True
        ):
            entry = decision.audit[index]
            assert entry.decision == "delivered"
            assert entry.recipient == addressee["id"]
            assert entry.local_authority == delivery.party
            assert entry.reason == addressee["route_reason"]
            got.append((delivery.party, addressee["id"], addressee["route_reason"]))
    return got


async def _play(spec: Spec, contract: Contract) -> None:
    model = Model(spec)
    with tempfile.TemporaryDirectory() as tmp:
        async with _Run(spec, Path(tmp), contract) as run:
            for step in spec.steps:
                if isinstance(step, Notify):
                    sender, name, record = spec.notification(step)
                    decision = await run.send(sender, Purpose.NOTIFICATION, name, record)
                    assert decision.outcome == "delivered", decision.receipt
                    check_routed(model, step, _received(decision))
                    if name == c.REFERRAL:
                        await _check_referral_clocks(run, sender, record, decision)
                    continue
                sender, update = spec.update(step)
                decision = await run.send(sender, Purpose.ALLOCATIONS, c.ALLOCATION_UPDATE, update)
                applied = model.apply(step)
                if isinstance(step, Intrude):
                    assert decision.outcome == "refused"
                    assert {e.local_authority for e in decision.audit} == {
                        la_id(step.la),
                        la_id(step.other),
                    }
                elif not applied:  # it would put two NHS numbers in one case
                    assert decision.outcome == "refused", (step, decision.receipt)
                    assert [e.reason for e in decision.audit] == ["conflicting_identifiers"]
                else:
                    assert decision.outcome == "applied", (step, decision.receipt)
                    _check_open_case_lists(spec, model, run.open_case_lists)


async def _check_referral_clocks(
    run: _Run, sender: str, record: dict[str, Any], decision: Decision
) -> None:
    """A referral's every delivery carries its LA's deadlines, and each LA it reached (and
    no other) has its clock started, naming the sender as the referrer: the one agency the
    LA's answer may go back to."""
    referral_id = str(record["notification_id"])
    reached = {d.party for d in decision.deliveries}
    for delivery in decision.deliveries:
        due = delivery.record["referral_due"]
        assert due["acknowledge_by"] <= due["decide_by"]
        assert due["acknowledge_by"] > datetime.now(UTC)
        row = await run.referrals.get(referral_id, delivery.party)
        assert row is not None, (referral_id, delivery.party)
        assert (row.referrer, row.acknowledge_due) == (sender, due["acknowledge_by"])
    for la in range(run.spec.las):
        if la_id(la) not in reached:
            assert await run.referrals.get(referral_id, la_id(la)) is None


def _check_open_case_lists(spec: Spec, model: Model, lists: dict[str, dict[str, Any]]) -> None:
    """Each school serving the LA gets the union of the open cases of the LAs it serves:
    every identifier of every case, and no other."""
    pseudonyms = Pseudonymiser(PSEUDONYM_KEY)
    for agency in spec.agencies:
        if agency.kind != "school" or agency.id not in lists:
            continue
        keys = set(lists[agency.id]["child_keys"])
        open_here = model.open_identifiers(agency)
        for child in spec.children:
            nhs, upn = pseudonyms.identifier_keys(child.nhs_number, child.upn)
            for identifier, key in ((child.nhs_number, nhs), (child.upn, upn)):
                if identifier is not None:
                    assert (key in keys) == (identifier in open_here), (agency, identifier)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs())
def test_every_notification_reaches_exactly_who_the_rule_names(spec: Spec) -> None:
    asyncio.run(_play(spec, default_contract()))


def _seen(spec: Spec) -> list[set[str]]:
    """The queues each notification of ``spec`` reached, checked against the model."""
    seen: list[set[str]] = []

    async def play() -> None:
        model = Model(spec)
        with tempfile.TemporaryDirectory() as tmp:
            async with _Run(spec, Path(tmp), default_contract()) as run:
                for step in spec.steps:
                    if isinstance(step, Notify):
                        sender, name, record = spec.notification(step)
                        decision = await run.send(sender, Purpose.NOTIFICATION, name, record)
                        seen.append({queue for _, queue, _ in _received(decision)})
                        check_routed(model, step, _received(decision))
                    else:
                        sender, update = spec.update(step)
                        await run.send(sender, Purpose.ALLOCATIONS, c.ALLOCATION_UPDATE, update)
                        model.apply(step)

    asyncio.run(play())
    return seen


HEALTH = (Agency("ag-0-health", "health", (0, 1), (0,)),)
BY_NHS, BY_UPN = Naming(upn=False), Naming(nhs=False)


def test_a_transfer_reaches_both_las_then_only_the_new_one() -> None:
    """The fixed case the random ones generalise: allocated in 0, transfer to 1, closed in 0."""
    notify = Notify(0, 0, None)
    spec = Spec(
        2,
        HEALTH,
        (Child("9990000018", None),),
        (
            notify,
            Allocate(0, 0, 1),
            notify,
            Allocate(1, 0, 2, transfer_from=0),
            notify,
            Close(0, 0),
            notify,
        ),
    )
    assert _seen(spec) == [
        {"mash:la-0"},
        {"sw-0-1", "tm-0"},
        {"sw-0-1", "tm-0", "sw-1-2", "tm-1"},
        {"sw-1-2", "tm-1"},
    ]


def test_a_case_closed_by_the_nhs_number_alone_sends_the_upn_to_the_mash() -> None:
    """Issue 21, item 8, through the judge: allocated by NHS number and UPN, closed naming
    only the NHS number; a notification naming the child by UPN goes to the MASH."""
    spec = Spec(
        2,
        HEALTH,
        (Child(make_nhs_number(0), make_upn(0)),),
        (
            Allocate(0, 0, 1),
            Notify(0, 0, None, BY_UPN),
            Close(0, 0, BY_NHS),
            Notify(0, 0, None, BY_UPN),
            Notify(0, 0, 1),
        ),
    )
    assert _seen(spec) == [{"sw-0-1", "tm-0"}, {"mash:la-0"}, {"mash:la-1"}]


def test_a_transfer_closed_by_the_nhs_number_alone_reaches_only_the_new_la() -> None:
    """Issue 21, item 8, through the judge: LA 0 allocates the child by NHS number and UPN,
    LA 1 takes the case in, LA 0 closes naming only the NHS number; a notification naming
    the child by its UPN (or by both) reaches LA 1 only, not LA 0's old worker."""
    spec = Spec(
        2,
        HEALTH,
        (Child(make_nhs_number(0), make_upn(0)),),
        (
            Allocate(0, 0, 1),
            Allocate(1, 0, 2, transfer_from=0, names=BY_UPN),
            Notify(0, 0, None, BY_UPN),
            Close(0, 0, BY_NHS),
            Notify(0, 0, None, BY_UPN),
            Notify(0, 0, None),
            Close(1, 0, BY_UPN),
            Notify(0, 0, None, BY_NHS),
        ),
    )
    assert _seen(spec) == [
        {"sw-0-1", "tm-0", "sw-1-2", "tm-1"},
        {"sw-1-2", "tm-1"},
        {"sw-1-2", "tm-1"},
        {"mash:la-0"},
    ]


def test_steps_cover_every_kind() -> None:
    """The strategy can produce every kind of step, naming its child by every subset of its
    identifiers and by a mistaken pairing, and scripts the model refuses (two NHS numbers
    in one case) and in which a closure naming part of a case closes all of it (so the
    property is not vacuous)."""
    kinds = {Allocate, Close, Intrude, Notify}
    found: set[type] = set()
    names: set[tuple[bool, bool, bool]] = set()
    refused = partial_closure = 0
    referrals: set[bool] = (
        set()
    )  # by an agency with a feed of its own (True), or one only referring

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(specs())
    def collect(spec: Spec) -> None:
        nonlocal refused, partial_closure
        found.update(type(step) for step in spec.steps)
        referrals.update(
            spec.agencies[s.agency].kind in FEEDS
            for s in spec.steps
            if isinstance(s, Notify) and s.is_referral(spec)
        )
        names.update((s.names.nhs, s.names.upn, s.names.upn_of is not None) for s in spec.steps)
        model = Model(spec)
        for step in spec.steps:
            if isinstance(step, Close):
                named = model.named(step)
                own = model.cases.get(step.la, [])
                partial_closure += any(named < c.identifiers for c in own)
            if isinstance(step, Allocate) and not model.apply(step):
                refused += 1
            elif not isinstance(step, Allocate):
                model.apply(step)

    collect()
    assert found == kinds
    assert names == {(True, True, False), (True, False, False), (False, True, False),
                     (True, True, True)}  # fmt: skip
    assert refused, "no script puts two NHS numbers in one case"
    assert partial_closure, "no script closes a case naming part of it"
    assert referrals == {True, False}, "referrals by a feed's agency and by a referrer alone"
