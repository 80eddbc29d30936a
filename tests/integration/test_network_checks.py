"""MASH information requests (network checks), end to end through the real broker.

The MASH asks a partner agency with a BRAG rating and the family-informed decision; the
gateway sets the deadline, forwards only what the agency can match, and delivers the
agency's answer to the asking LA only. An answer from an agency not asked, naming another
LA, to no request, to a closed request, or given automatically by a kind the agreement
does not allow, is quarantined with its reason.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.network_checks import request_record
from safeguard.parties import HEALTH, LA, OTHER_LA, OTHER_SCHOOL, POLICE, SCHOOL
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ContractError
from sgx.kafka.wiring import read_topic, receipts_topic
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose
from tests.integration.harness import Exchange, eventually, running_exchange
from tests.integration.mash import Mash, mash
from tests.integration.test_author_consent import cli

pytestmark = pytest.mark.broker

CHILD: dict[str, str | date | None] = {
    "nhs_number": make_nhs_number(51),
    "upn": make_upn(51),
    "given_name": "Amira",
    "family_name": "Zephyrine",
    "date_of_birth": date(2016, 4, 1),
    "postcode": "NW1 2AB",
}


def ask(agency: str, rating: str = "AMBER", *, told: bool = True) -> dict[str, Any]:
    return request_record(
        request_id=uuid.uuid4(), la=LA, agency=agency, rating=rating, child=CHILD,
        asked="Attendance, exclusions and any concerns this term", requested_by="mash-duty-1",
        told=told, exception=None if told else "RISK_TO_CHILD", decided_by="mash-manager",
    )  # fmt: skip


def answer(request_id: uuid.UUID, **fields: Any) -> dict[str, Any]:
    return {
        "answer_id": uuid.uuid4(), "request_id": request_id, "local_authority": LA,
        "outcome": "HELD", "facts": "Attendance 71% this term; two fixed-term exclusions",
        "professional_opinion": "The DSL is worried about the child's weight",
        "restrictions": [], "answered_by": "Ms Patel, DSL", "automatic": False,
        "answered_at": datetime.now(UTC),
        **fields,
    }  # fmt: skip


async def forwarded_to(ex: Exchange, agency: str) -> list[dict[str, Any]]:
    """The information requests on ``agency``'s receipts topic, opened as the agency."""
    trust = ex.rt.trust()
    opener, contract = Opener(ex.rt.identity(agency, trust), trust), ex.rt.contract()
    found = []
    for record in await read_topic(ex.rt.kafka, receipts_topic(agency)):
        opened = opener.open(bytes(record.value or b""))
        if opened.purpose is Purpose.SHARE_REQUEST:
            name, request = contract.decode(opened.plaintext)
            if name == c.INFORMATION_REQUEST:
                found.append(request)
    return found


async def _has(client: Mash, request_id: uuid.UUID) -> bool:
    return request_id in await client.answers()


async def test_the_mash_asks_and_hears_the_answer_only_it_may_see(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex, mash(ex) as client:
        sent = ask(SCHOOL)
        status = await client.ask(sent)
        assert status["state"] == "ASKED", status
        assert status["deadline"] is not None
        assert status["deadline"] > datetime.now(UTC)
        # A school matches by UPN, name and date of birth: never the NHS number or address.
        assert status["identifiers_sent"] == ["upn", "given_name", "family_name", "date_of_birth"]

        (request,) = await forwarded_to(ex, SCHOOL)
        assert request["request_id"] == sent["request_id"]
        assert request["child"]["nhs_number"] is None
        assert request["child"]["postcode"] is None
        assert request["child"]["upn"] == CHILD["upn"]
        assert request["deadline"] == status["deadline"]
        assert request["family_informed"]["told"] is True

        said = answer(sent["request_id"])
        await ex.publish(SCHOOL, c.INFORMATION_ANSWER, said)

        async def answered() -> bool:
            return sent["request_id"] in await client.answers()

        await eventually(answered, "the school's answer to reach the MASH")
        (item,) = (await client.answer_items()).values()
        heard = item.notification
        assert heard["facts"] == said["facts"]
        assert heard["professional_opinion"] == said["professional_opinion"]
        # An item of the MASH queue of its own, with the exchange's default restriction.
        routed = (item.item.recipient_id, item.item.route_reason)
        assert routed == (f"mash:{LA}", "REQUESTING_LA_MASH")
        assert item.item.notification_type == c.INFORMATION_ANSWER
        assert item.item.restrictions == ("THIRD_PARTY_AUTHOR_CONSENT",)
        async with mash(ex, OTHER_LA) as islington:
            assert await islington.answers() == {}
        async with ex.gateway_store() as store:
            audit = await store.audit_records(notification_id=str(sent["request_id"]))
        assert [a.decision for a in audit] == ["information_requested", "information_answered"]
        assert all(a.local_authority == LA for a in audit)


async def test_answers_from_the_wrong_agency_la_or_request_are_quarantined(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex, mash(ex) as client:
        school, health = ask(SCHOOL), ask(HEALTH)
        assert (await client.ask(school))["state"] == "ASKED"
        assert (await client.ask(health))["state"] == "ASKED"
        rid = school["request_id"]
        # The health trust (which serves Camden too) answering the school's request; the
        # school answering as if Islington had asked; the school answering nothing.
        await ex.publish(HEALTH, c.INFORMATION_ANSWER, answer(rid))
        await ex.publish(SCHOOL, c.INFORMATION_ANSWER, answer(rid, local_authority=OTHER_LA))
        await ex.publish(SCHOOL, c.INFORMATION_ANSWER, answer(uuid.uuid4()))
        # Automatically, from a health trust: Camden's agreement lets only schools do that.
        automatic = answer(health["request_id"], automatic=True, answered_by="PAS feed")
        await ex.publish(HEALTH, c.INFORMATION_ANSWER, automatic)
        for reason in ("not_the_agency_asked", "not_the_asking_la",
                       "unknown_information_request", "automatic_answer_not_agreed"):  # fmt: skip
            await eventually(lambda r=reason: ex.quarantined(r) == 1, reason)  # type: ignore[misc]

        # The school's own answer closes its request; a second answer is quarantined.
        nothing = answer(rid, outcome="NOTHING_HELD", facts=None, professional_opinion=None)
        await ex.publish(SCHOOL, c.INFORMATION_ANSWER, nothing)
        await ex.publish(SCHOOL, c.INFORMATION_ANSWER, answer(rid))
        await eventually(
            lambda: ex.quarantined("information_request_closed") == 1, "a second answer"
        )
        await eventually(lambda: _has(client, rid), "the school's answer")
        only = (await client.answers())[rid]
        assert only["outcome"] == "NOTHING_HELD"
        assert health["request_id"] not in await client.answers()


async def test_requests_the_agreement_does_not_allow_are_refused(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex, mash(ex) as client:
        blue = await client.ask(ask(POLICE, "BLUE"))
        assert blue["state"] == "REFUSED"
        assert "sets no time to answer a BLUE request" in blue["reason"]
        other = await client.ask(ask(OTHER_SCHOOL))
        assert other["state"] == "REFUSED"
        assert f"{OTHER_SCHOOL} does not serve {LA}" in other["reason"]
        excepted = await client.ask(ask(POLICE, "RED", told=False))
        assert excepted["state"] == "ASKED"
        assert await forwarded_to(ex, OTHER_SCHOOL) == []
        (to_police,) = await forwarded_to(ex, POLICE)
        assert to_police["family_informed"]["exception"] == "RISK_TO_CHILD"
        assert to_police["child"]["upn"] is None
    with pytest.raises(ContractError, match="family-informed decision comes before"):
        request_record(
            request_id=uuid.uuid4(), la=LA, agency=SCHOOL, rating="RED", child=CHILD,
            asked="x", requested_by="m", told=False, exception=None, decided_by="m",
        )  # fmt: skip


async def test_the_school_lists_answers_and_its_feed_answers_from_the_register(
    tmp_path: Path,
) -> None:
    other = {**CHILD, "upn": make_upn(52), "given_name": "Leo"}
    unknown = {**CHILD, "upn": make_upn(53), "given_name": "Zed"}
    export = tmp_path / "attendance.csv"
    export.write_text(
        "upn,date,session,mark\n"
        + "".join(f"{other['upn']},2026-11-0{d},{s},{'N' if d == 3 else '/'}\n"
                  for d in (2, 3, 4) for s in ("AM", "PM")),
        encoding="utf-8",
    )  # fmt: skip
    async with running_exchange(tmp_path) as ex, mash(ex) as client:
        by_person = ask(SCHOOL)
        from_register = {**ask(SCHOOL), "child": other}
        no_match = {**ask(SCHOOL, "RED"), "child": unknown}
        for sent in (by_person, from_register, no_match):
            assert (await client.ask(sent))["state"] == "ASKED"

        listed = await cli(ex, "producer", "information", "list", "--agency", SCHOOL)
        assert listed.exit_code == 0, listed.output
        assert "3 information request(s), 3 awaiting an answer, 0 overdue" in listed.output
        assert f"upn={CHILD['upn']}" in listed.output
        assert str(CHILD["nhs_number"]) not in listed.output  # a school is never sent it
        answered = await cli(
            ex, "producer", "information", "answer", str(by_person["request_id"]),
            "--agency", SCHOOL, "--outcome", "held", "--facts", "Two exclusions this year",
            "--opinion", "We are worried", "--by", "Ms Patel, DSL",
            "--restrict", "not-to-parents",
        )  # fmt: skip
        assert answered.exit_code == 0, answered.output
        again = await cli(
            ex, "producer", "information", "answer", str(by_person["request_id"]),
            "--agency", SCHOOL, "--outcome", "nothing-held", "--by", "Ms Patel, DSL",
        )  # fmt: skip
        assert again.exit_code != 0
        assert "answered already" in again.output
        auto = await cli(ex, "producer", "information", "auto-answer", "--agency", SCHOOL,
                         "--export", str(export))  # fmt: skip
        assert auto.exit_code == 0, auto.output
        assert "2 information request(s) answered from the register" in auto.output

        async def all_answered() -> bool:
            return len(await client.answers()) == 3

        await eventually(all_answered, "three answers to reach the MASH")
        heard = await client.answers()
        person = heard[by_person["request_id"]]
        assert (person["outcome"], person["automatic"]) == ("HELD", False)
        assert person["professional_opinion"] == "We are worried"
        assert "NOT_TO_PARENTS" in [r["code"] for r in person["restrictions"]]
        register = heard[from_register["request_id"]]
        assert (register["outcome"], register["automatic"]) == ("HELD", True)
        assert "missed 2 of 6 possible sessions" in register["facts"]
        assert register["professional_opinion"] is None
        assert heard[no_match["request_id"]]["outcome"] == "CANNOT_MATCH"
        listed = await cli(ex, "producer", "information", "list", "--agency", SCHOOL, "--open")
        assert "0 information request(s), 0 awaiting an answer" in listed.output
