"""The family-facing summary never contains what is restricted or what an exception
protects: a property test over random items (every free-text field a unique marker),
random restrictions, the author's consents, random disclosures and random decisions.
The summary is checked as printed (text), as the API's JSON and as the web page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.inbox.family_store import DecisionRecord, Disclosure
from consumers.inbox.family_summary import Source, family_may_know, family_summary
from consumers.inbox.web import TEMPLATES
from sgx.domain.consent import Grant
from sgx.domain.family import (
    DisclosureKind,
    FamilyDecision,
    FamilyException,
    InformMethod,
)
from sgx.domain.restrictions import FORBIDS
from tests import samples

ZONE = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
CODES = sorted(FORBIDS)
CATEGORIES = ["LA_SOCIAL_CARE", "PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS"]


def information_answer() -> dict[str, Any]:
    """An agency's answer to a network check, shared onward like any item (it has no
    ``sharing``: its restrictions are the delivery's)."""
    return {
        "answer_id": "00000000-0000-4000-8000-000000000001",
        "request_id": "00000000-0000-4000-8000-000000000002",
        "local_authority": "la-camden", "outcome": "HELD", "facts": "held facts",
        "professional_opinion": "an opinion", "restrictions": [],
        "answered_by": "Ms Patel, DSL", "automatic": False, "answered_at": NOW,
    }  # fmt: skip


BUILDERS = {
    "attendance_update": samples.attendance_update,
    "health_update": samples.health_update,
    "police_notification": samples.police_notification,
    "information_answer": information_answer,
}


def _is_symbol(value: str) -> bool:
    """An Avro enum symbol (``PUBLIC_TASK``): the summary may map these to fixed words."""
    return value.isupper() and value.replace("_", "").isalnum()


def marked(record: Any, prefix: str, markers: dict[str, str]) -> Any:
    """``record`` with every free-text value replaced by a unique marker (path -> marker)."""
    if isinstance(record, dict):
        return {k: marked(v, f"{prefix}.{k}", markers) for k, v in record.items()}
    if isinstance(record, list):
        return [marked(v, f"{prefix}[{i}]", markers) for i, v in enumerate(record)]
    if isinstance(record, str) and not _is_symbol(record):
        markers[prefix] = f"«{prefix}»"
        return markers[prefix]
    return record


@dataclasses.dataclass
class World:
    sources: dict[str, Source]
    markers: dict[str, dict[str, str]]  # notification id -> field path -> marker
    disclosures: list[Disclosure]


@st.composite
def sources(draw: st.DrawFn, n: int) -> tuple[str, Source, dict[str, str]]:
    kind = draw(st.sampled_from(sorted(BUILDERS)))
    record = BUILDERS[kind]()
    consents = draw(st.lists(st.sampled_from(CATEGORIES), unique=True))
    if "sharing" in record:
        record["sharing"]["onward_consent"] = consents
    markers: dict[str, str] = {}
    notification = marked(record, f"n{n}", markers)
    court = draw(st.booleans())
    grants = draw(
        st.lists(
            st.builds(
                Grant, st.just("r"), st.just("p"), st.just("x"), st.just("order" if court else None)
            ),
            max_size=1,
        )
    )
    source = Source(
        notification=notification,
        type_label=kind,
        authored_at=NOW - dt.timedelta(days=draw(st.integers(0, 30))),
        restrictions=tuple(draw(st.lists(st.sampled_from(CODES), unique=True))),
        grants=tuple(grants),
    )
    return f"notification-{n}", source, markers


@st.composite
def decisions(draw: st.DrawFn, d: int) -> FamilyDecision | None:
    choice = draw(st.sampled_from(["none", "told", "exception"]))
    if choice == "none":
        return None
    decided_by, reason = f"«d{d}.decided_by»", f"«d{d}.reason»"
    if choice == "told":
        return FamilyDecision(
            True, decided_by, NOW, NOW - dt.timedelta(hours=draw(st.integers(0, 500))),
            f"«d{d}.informed_by»", draw(st.sampled_from(list(InformMethod))),
            f"«d{d}.family_member»", None, draw(st.sampled_from([None, reason])),
        )  # fmt: skip
    exception = draw(st.sampled_from(list(FamilyException)))
    return FamilyDecision(False, decided_by, NOW, exception=exception, reason=reason)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    made_sources = [draw(sources(n)) for n in range(draw(st.integers(1, 4)))]
    disclosures = []
    for d in range(draw(st.integers(0, 8))):
        nid, _, _ = draw(st.sampled_from(made_sources))
        made = draw(st.sampled_from([True, True, False, None]))
        decision = draw(decisions(d))
        record = (
            DecisionRecord(100 + d, d, decision, "sw-x", "person", NOW, None) if decision else None
        )
        disclosures.append(
            Disclosure(
                disclosure_id=d,
                kind=draw(st.sampled_from(list(DisclosureKind))),
                ref=str(d),
                item_id=1,
                notification_id=nid,
                to_name=f"«d{d}.to_name»",
                to_category=draw(st.sampled_from(CATEGORIES)),
                purpose=f"«d{d}.purpose»",
                asked_by=f"«d{d}.asked_by»",
                asked_at=NOW - dt.timedelta(days=d),
                made=made,
                made_at=NOW - dt.timedelta(days=d, hours=1) if made else None,
                decision=record,
            )
        )
    return World(
        sources={nid: source for nid, source, _ in made_sources},
        markers={nid: markers for nid, _, markers in made_sources},
        disclosures=disclosures,
    )


_PAGE = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


def shown(world: World) -> Iterator[str]:
    """The summary of ``world`` in every form a family or a system sees it."""
    summary = family_summary("Amira", world.disclosures, world.sources, ZONE)
    yield summary.text()
    yield json.dumps(dataclasses.asdict(summary), ensure_ascii=False)
    yield _PAGE.get_template("family_summary.html").render(
        summary=summary, la_name="Camden", printable=True, item_id=1, now="now", who=None
    )


def told(d: Disclosure) -> bool:
    return bool(d.made) and d.decision is not None and d.decision.decision.informed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_the_family_facing_summary_never_shows_what_is_restricted(world: World) -> None:
    given = {  # the exchange allowed a share of the item to the parents, and they were told
        d.notification_id
        for d in world.disclosures
        if told(d) and d.kind is DisclosureKind.ONWARD_SHARE and d.to_category == "PARENT_OR_CARER"
    }
    for text in shown(world):
        for nid, markers in world.markers.items():
            source = world.sources[nid]
            allowed = set()
            if family_may_know(source) or nid in given:  # who wrote it, never what it says
                allowed = {markers[p] for p in markers if p.endswith(".author.agency_name")}
            leaked = [p for p, m in markers.items() if m in text and m not in allowed]
            assert not leaked, f"restricted fields in the summary: {leaked}"
        for d in world.disclosures:
            for field in ("decided_by", "reason", "family_member", "informed_by", "asked_by"):
                assert f"«d{d.disclosure_id}.{field}»" not in text, field
            listed = f"«d{d.disclosure_id}.to_name»" in text
            assert listed == told(d), "listed exactly when made and the family told"
            assert (f"«d{d.disclosure_id}.purpose»" in text) == told(d)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_what_an_exception_protects_leaves_no_trace(world: World) -> None:
    """The summary with the disclosures not told (exceptions, undecided, not made) is
    exactly the summary without them: no line, no count, no date gives them away."""
    only_told = dataclasses.replace(world, disclosures=[d for d in world.disclosures if told(d)])
    assert list(shown(world)) == list(shown(only_told))


def test_an_author_restriction_hides_even_the_kind_of_information() -> None:
    """Examples of the rule the property test checks: a police notification the author
    barred from parents is 'information we hold'; the school's attendance update, with
    its author's consent to parents, is named, by the school and the date."""
    police = samples.police_notification()
    school = samples.attendance_update()
    school["sharing"]["onward_consent"] = ["PARENT_OR_CARER", "OTHER_PROFESSIONAL"]
    sources = {
        "p": Source(police, "police_notification", NOW, ("THIRD_PARTY_AUTHOR_CONSENT",
                    "POLICE_CONFIDENTIAL_TO_PROCEEDINGS")),
        "s": Source(school, "attendance_update", NOW, ("THIRD_PARTY_AUTHOR_CONSENT",)),
    }  # fmt: skip
    told_by_phone = FamilyDecision(
        True, "Amara", NOW, NOW, "Amara", InformMethod.PHONE, None, None, None
    )
    record = DecisionRecord(1, 1, told_by_phone, "sw-amara", "person", NOW, None)

    def shared(n: int, nid: str) -> Disclosure:
        return Disclosure(
            n, DisclosureKind.ONWARD_SHARE, str(n), n, nid, "Dr Patel", "OTHER_PROFESSIONAL",
            "to plan Amira's support", "sw-amara", NOW, True, NOW, record,
        )  # fmt: skip

    summary = family_summary("Amira", [shared(1, "p"), shared(2, "s")], sources, ZONE)
    police_line, school_line = summary.lines
    assert police_line.what == "Information we hold about Amira"
    assert (
        school_line.what
        == "School attendance information from Hillside Primary School, written 7 December 2026"
    )
    assert school_line.with_whom == "Dr Patel (a professional working with your family)"
    assert school_line.basis == "our legal duty to keep children safe (a public task)"
    assert school_line.told == "7 December 2026, by phone"
    police["sharing"]["onward_consent"] = ["PARENT_OR_CARER"]  # consent cannot lift the
    assert not family_may_know(sources["p"])  # police Protocol bar: only a court order
    with_order = dataclasses.replace(sources["p"], grants=(Grant("r", "p", "x", "order"),))
    assert family_may_know(with_order)


def test_an_answer_to_a_network_check_shared_onward_reads_as_information_we_asked_for() -> None:
    """An agency's answer carries the third-party default, so shared with a professional
    it is 'information we hold'; once the agency consented to parents knowing, it is
    named as information we asked for, never by what it says or who answered."""
    answer = information_answer()
    source = Source(answer, "information_answer", NOW, ("THIRD_PARTY_AUTHOR_CONSENT",))
    told_by_phone = FamilyDecision(True, "Mo", NOW, NOW, "Mo", InformMethod.PHONE, None, None, None)
    record = DecisionRecord(1, 1, told_by_phone, "mash-duty-1", "person", NOW, None)
    shared = Disclosure(
        1, DisclosureKind.ONWARD_SHARE, "1", 1, "a", "Dr Patel", "OTHER_PROFESSIONAL",
        "to plan Maya's support", "mash-duty-1", NOW, True, NOW, record,
    )  # fmt: skip
    (line,) = family_summary("Maya", [shared], {"a": source}, ZONE).lines
    assert line.what == "Information we hold about Maya"
    granted = dataclasses.replace(source, grants=(Grant("r", "p", "x", None),))
    (line,) = family_summary("Maya", [shared], {"a": granted}, ZONE).lines
    assert line.what == "Information we asked for from another agency, written 7 December 2026"
    text = family_summary("Maya", [shared], {"a": granted}, ZONE).text()
    for said in ("held facts", "Ms Patel", "an opinion"):
        assert said not in text
