"""Information requests and answers over hundreds of random partnerships, against the judge.

The routing property (tests/unit/test_routing_property.py) extended to network checks, on
the same random partnerships (:mod:`tests.partnerships`) and the same real judge, stores
and envelope crypto, with a random agreement: which agency kinds a MASH may ask and which
may answer automatically. A random script has LAs ask random agencies with random ratings
(BLUE has no hours) and agencies answer random requests, now and then someone else's,
naming another LA, a request that does not exist, one already answered, or automatically.
The model says what must happen: a request is forwarded (to that agency only, with only
the identifiers its kind can match, and the LA told the deadline) exactly when the agency
serves the LA, its kind may be asked and the rating has hours; an answer reaches the
asking LA (and no one else) exactly when it comes from the agency asked, names that LA,
the request is open and an automatic answer is agreed; anything else is quarantined with
the model's reason and nothing is delivered.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.network_checks import request_record
from gateway.allocation_feed import AllocationFeed
from gateway.allocations import AllocationDirectory
from gateway.consent_book import ConsentBook
from gateway.decide import Judge
from gateway.decision import Decision
from gateway.information import InformationJudge
from gateway.information_book import InformationBook
from gateway.partnership import Partnership
from gateway.requests import DisclosureRequests
from gateway.store import GatewayStore
from sgx.domain.calendar import CalendarSettings
from sgx.domain.network_checks import MATCH_FIELDS
from sgx.kafka.quarantine import Source
from sgx.kafka.wiring import inbound_topic
from sgx.keys.pseudonym import Pseudonymiser
from sgx.wire import contract as c
from sgx.wire.contract import Contract, default_contract
from sgx.wire.envelope import Opener, Purpose, Sealer
from tests.partnerships import KINDS, Spec, la_id, specs
from tests.unit.test_routing_property import PSEUDONYM_KEY, _agreement, _template, _world

EXAMPLES = 150
PARTNER_KINDS = sorted({kind for kind, _ in KINDS.values()})


@dataclass(frozen=True)
class Ask:
    la: int
    agency: int
    rating: str
    told: bool


@dataclass(frozen=True)
class Answer:
    sender: int  # an agency index
    request: int | None  # an earlier Ask's index, or None: a request that does not exist
    names_other_la: bool
    automatic: bool


@dataclass(frozen=True)
class Script:
    spec: Spec
    asked: frozenset[str]  # the agreement's kinds a MASH may ask
    auto: frozenset[str]
    steps: tuple[Ask | Answer, ...]


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    spec = draw(specs(max_steps=1))
    asked = frozenset(draw(st.sets(st.sampled_from(PARTNER_KINDS))))
    auto = frozenset(draw(st.sets(st.sampled_from(sorted(asked))))) if asked else frozenset()
    agencies = st.integers(0, len(spec.agencies) - 1)
    steps: list[Ask | Answer] = []
    for _ in range(draw(st.integers(1, 10))):
        asks = [i for i, s in enumerate(steps) if isinstance(s, Ask)]
        if not asks or draw(st.booleans()):
            rating = draw(st.sampled_from(["RED", "AMBER", "GREEN", "BLUE"]))
            steps.append(Ask(draw(st.integers(0, spec.las - 1)), draw(agencies), rating,
                             draw(st.booleans())))  # fmt: skip
            continue
        request = draw(st.one_of(st.none(), st.sampled_from(asks), st.sampled_from(asks)))
        sender = draw(agencies)
        if request is not None and draw(st.integers(0, 2)) > 0:
            target = steps[request]
            assert isinstance(target, Ask)
            sender = target.agency  # mostly the agency asked
        steps.append(Answer(sender, request, draw(st.integers(0, 5)) == 0, draw(st.booleans())))
    return Script(spec, asked, auto, tuple(steps))


class _Run:
    """A judge with real stores over one script's partnership and agreement."""

    def __init__(self, script: Script, home: Path, contract: Contract) -> None:
        self.script, self.home, self.contract = script, home, contract
        self.trust, self.identities = _world(script.spec)
        self.offset = 0

    async def __aenter__(self) -> _Run:
        for name in ("gateway.db", "requests.db"):
            shutil.copyfile(_template() / name, self.home / name)
        self.store = await GatewayStore.open(None, self.home / "gateway.db", owner="gateway")
        self.requests = await DisclosureRequests.open(
            None, self.home / "requests.db", owner="gateway"
        )
        pseudonyms = Pseudonymiser(PSEUDONYM_KEY)
        opener = Opener(self.identities["gateway"], self.trust)
        feed = AllocationFeed(
            directory=AllocationDirectory(self.store.engine, pseudonyms), opener=opener,
            contract=self.contract, trust=self.trust,
        )  # fmt: skip
        await feed.start()
        terms = dict(_agreement()["information_requests"])
        terms["asked"], terms["auto_answer"] = sorted(self.script.asked), sorted(self.script.auto)
        data = {**_agreement(), "information_requests": terms,
                "default_las": self.script.spec.default_las()}  # fmt: skip
        partnership = Partnership.from_mapping(data, self.contract, self.trust, source="test")
        self.book = InformationBook(self.store.engine)
        self.judge = Judge(
            opener=opener, contract=self.contract, partnership=partnership, feed=feed,
            store=self.store, pseudonyms=pseudonyms, trust=self.trust, requests=self.requests,
            consents=ConsentBook(self.store.engine),
            information=InformationJudge(
                contract=self.contract, partnership=partnership, trust=self.trust,
                calendar=CalendarSettings().calendar(), pseudonyms=pseudonyms, book=self.book,
            ),
        )  # fmt: skip
        self.match = partnership.default.information.match
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.requests.close()
        await self.store.close()

    async def send(
        self, sender: str, purpose: Purpose, name: str, record: dict[str, Any], mid: uuid.UUID
    ) -> Decision:
        sealed = Sealer(self.identities[sender], self.trust, "gateway").seal(
            purpose, mid, self.contract.encode(name, record)
        )
        self.offset += 1
        topic = inbound_topic(sender)
        decision = await self.judge.judge(Source(topic, 0, self.offset, 0, sealed))
        writes = decision.information
        await self.store.record(
            decision.audit, decision.quarantine, decision.ledger,
            chains=[f"{topic}:0"] * len(decision.audit),
            also=[lambda conn: self.book.persist(conn, writes)] if writes else (),
        )  # fmt: skip
        return decision


CHILD = {"nhs_number": None, "upn": None, "given_name": "Ada", "family_name": "Test",
         "date_of_birth": date(2015, 1, 2), "postcode": "N1 1AA"}  # fmt: skip


async def _play(script: Script, contract: Contract) -> None:
    sent: dict[int, tuple[dict[str, Any], bool]] = {}  # ask index -> (request, forwarded)
    closed: set[int] = set()
    with tempfile.TemporaryDirectory() as tmp:
        async with _Run(script, Path(tmp), contract) as run:
            for index, step in enumerate(script.steps):
                if isinstance(step, Ask):
                    sent[index] = await _ask(run, step)
                    continue
                await _answer(run, step, sent, closed)


async def _ask(run: _Run, step: Ask) -> tuple[dict[str, Any], bool]:
    spec = run.script.spec
    agency = spec.agencies[step.agency]
    kind = KINDS[agency.kind][0]
    la = la_id(step.la)
    child = {**CHILD, "nhs_number": spec.children[0].nhs_number, "upn": spec.children[0].upn}
    record = request_record(
        request_id=uuid.uuid4(), la=la, agency=agency.id, rating=step.rating, child=child,
        asked="what do you hold", requested_by="mash-1", told=step.told,
        exception=None if step.told else "UNDUE_DELAY", decided_by="mash-manager",
    )  # fmt: skip
    decision = await run.send(la, Purpose.SHARE_REQUEST, c.INFORMATION_REQUEST, record,
                              record["request_id"])  # fmt: skip
    forwarded = (
        step.la in spec.served(agency) and kind in run.script.asked and step.rating != "BLUE"
    )
    parties = [(m.party, m.schema) for m in decision.messages]
    assert decision.quarantine == []
    if not forwarded:
        assert decision.outcome == "information_refused", decision
        assert parties == [(la, c.INFORMATION_STATUS)]
        assert decision.messages[0].on_delivery  # kept by the LA's consumer
        assert decision.messages[0].record["state"] == "REFUSED"
        return record, False
    assert decision.outcome == "information_asked", decision
    assert parties == [(agency.id, c.INFORMATION_REQUEST), (la, c.INFORMATION_STATUS)]
    assert [m.on_delivery for m in decision.messages] == [
        False,
        True,
    ]  # the status: to the LA's consumer
    out = decision.messages[0].record["child"]
    allowed = set(run.match[kind])
    assert {f for f in MATCH_FIELDS if out[f] is not None} == {
        f for f in MATCH_FIELDS if f in allowed and child[f] is not None
    }
    assert decision.messages[1].record["deadline"] == decision.messages[0].record["deadline"]
    assert decision.messages[1].record["deadline"] > datetime.now(UTC)
    assert [e.local_authority for e in decision.audit] == [la]
    return record, True


def _expected(
    run: _Run, step: Answer, sent: dict[int, tuple[dict[str, Any], bool]], closed: set[int]
) -> str | None:
    """The quarantine reason the model gives an answer, or None: delivered."""
    spec = run.script.spec
    if step.request is None or not sent[step.request][1]:
        return "unknown_information_request"
    request = sent[step.request][0]
    if spec.agencies[step.sender].id != request["agency"]:
        return "not_the_agency_asked"
    if step.names_other_la:
        return "not_the_asking_la"
    if step.request in closed:
        return "information_request_closed"
    kind = KINDS[spec.agencies[step.sender].kind][0]
    if step.automatic and kind not in run.script.auto:
        return "automatic_answer_not_agreed"
    return None


async def _answer(
    run: _Run, step: Answer, sent: dict[int, tuple[dict[str, Any], bool]], closed: set[int]
) -> None:
    spec = run.script.spec
    sender = spec.agencies[step.sender].id
    request = sent[step.request][0] if step.request is not None else None
    asking = request["local_authority"] if request else la_id(0)
    named = la_id((int(asking.split("-")[1]) + 1) % spec.las) if step.names_other_la else asking
    answer_id = uuid.uuid4()
    record: dict[str, Any] = {
        "answer_id": answer_id,
        "request_id": request["request_id"] if request else uuid.uuid4(),
        "local_authority": named, "outcome": "HELD", "facts": "known to us",
        "professional_opinion": None, "restrictions": [], "answered_by": "someone",
        "automatic": step.automatic, "answered_at": datetime.now(UTC),
    }  # fmt: skip
    expected = _expected(run, step, sent, closed)
    decision = await run.send(sender, Purpose.NOTIFICATION, c.INFORMATION_ANSWER, record,
                              answer_id)  # fmt: skip
    if expected is not None:
        assert [q.reason for q in decision.quarantine] == [expected], (step, decision)
        assert decision.messages == []
        assert decision.deliveries == []
        return
    assert request is not None
    assert step.request is not None
    closed.add(step.request)
    assert decision.outcome == "information_answered", decision
    # delivered to the asking LA's MASH queue only, and in the ledger for that LA only
    assert decision.messages == []
    assert [(d.party, d.record["notification_type"]) for d in decision.deliveries] == [
        (asking, c.INFORMATION_ANSWER)
    ]
    (to,) = decision.deliveries[0].record["recipients"]
    assert (to["id"], to["route_reason"]) == (f"mash:{asking}", "REQUESTING_LA_MASH")
    assert [(e.notification_id, e.local_authority) for e in decision.ledger] == [
        (str(answer_id), asking)
    ]
    assert decision.receipt is not None
    assert decision.receipt[0] == sender
    assert [e.local_authority for e in decision.audit] == [asking]
    # The same answer judged again (a crash between the commit and the publish): delivered
    # again to the same MASH, not quarantined as closed by itself.
    again = await run.send(sender, Purpose.NOTIFICATION, c.INFORMATION_ANSWER, record,
                           answer_id)  # fmt: skip
    assert again.outcome == "information_answered", again
    assert [d.record["recipients"][0]["id"] for d in again.deliveries] == [f"mash:{asking}"]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scripts())
def test_an_answer_reaches_the_asking_mash_exactly_when_the_rule_says(script: Script) -> None:
    asyncio.run(_play(script, default_contract()))


def test_scripts_cover_every_outcome() -> None:
    """Every quarantine reason, a refusal and a delivery occur (the property is not vacuous)."""
    seen: set[str | None] = set()

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(scripts())
    def collect(script: Script) -> None:
        seen.update(_model_only(script))

    collect()
    assert seen >= {None, "refused", "unknown_information_request", "not_the_agency_asked",
                    "not_the_asking_la", "information_request_closed",
                    "automatic_answer_not_agreed"}  # fmt: skip


def _model_only(script: Script) -> set[str | None]:
    """What the model says of each step, without a judge."""
    spec = script.spec
    outcomes: set[str | None] = set()
    forwarded: dict[int, bool] = {}
    closed: set[int] = set()
    for index, step in enumerate(script.steps):
        if isinstance(step, Ask):
            agency = spec.agencies[step.agency]
            ok = (step.la in spec.served(agency) and KINDS[agency.kind][0] in script.asked
                  and step.rating != "BLUE")  # fmt: skip
            forwarded[index] = ok
            outcomes.add("asked" if ok else "refused")
            continue
        if step.request is None or not forwarded[step.request]:
            outcomes.add("unknown_information_request")
            continue
        target = script.steps[step.request]
        assert isinstance(target, Ask)
        sender = spec.agencies[step.sender]
        if sender.id != spec.agencies[target.agency].id:
            outcomes.add("not_the_agency_asked")
        elif step.names_other_la:
            outcomes.add("not_the_asking_la")
        elif step.request in closed:
            outcomes.add("information_request_closed")
        elif step.automatic and KINDS[sender.kind][0] not in script.auto:
            outcomes.add("automatic_answer_not_agreed")
        else:
            closed.add(step.request)
            outcomes.add(None)
    return outcomes
