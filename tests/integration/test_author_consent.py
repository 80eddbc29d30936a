"""The author's consent to an onward share, end to end through the real broker.

A share refused for want of the author's consent is asked of the author through the
exchange; the author's agency answers (command line, outbox, push endpoint); the grant
lets exactly that share (recipient category and purpose) through and nothing else.
Police material confidential to the proceedings stays barred until the court order is
recorded.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from producers.consent_requests import ConsentRequest, ConsentRequests
from producers.outbox import Outbox
from producers.push import to_json
from producers.push_tokens import mint_token, tokens_file
from safeguard import samples
from safeguard.cli import main as safeguard
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import HEALTH, LA, POLICE, SCHOOL
from safeguard.sharing import ask_consent, ask_share, consent_outcomes
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import AlreadyAnswered, ContractError
from sgx.kafka.embedded import free_port
from sgx.kafka.wiring import read_topic, receipts_topic
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose
from tests.integration.harness import Exchange, eventually, running_exchange
from tests.integration.test_push import serving

pytestmark = pytest.mark.broker

AMIRA = samples.child(make_nhs_number(41), make_upn(41), given="Amira", family="Zephyrine")
LEO = samples.child(make_nhs_number(42), None, given="Leopold", family="Quixotic")
ALLOCATE = samples.allocation_update(
    [
        (AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones"),
        (LEO["nhs_number"], None, "sw-ben", "Assessment Team 2", "tm-lee"),
    ]
)
CONFERENCE = "Child protection conference"


async def _share(ex: Exchange, item: int, category: str, purpose: str) -> dict[str, Any]:
    return await ask_share(
        ex.rt, LA, item, to_id="them", category=category, to_name="them", purpose=purpose,
        by="sw-amara",
    )  # fmt: skip


async def cli(ex: Exchange, *args: str) -> Result:
    argv = [*args, "--home", str(ex.rt.exchange.home)]
    env = ex.kafka_env()
    return await asyncio.to_thread(CliRunner().invoke, safeguard, argv, env=env)


async def asked_of(outbox: Outbox, agency: str, n: int = 1) -> list[ConsentRequest]:
    """Wait until ``n`` consent requests have reached the author's outbox database."""
    book = ConsentRequests(outbox.store.engine)

    async def arrived() -> bool:
        return len(await book.list(agency)) >= n

    await eventually(arrived, f"{n} consent request(s) to reach {agency}")
    return await book.list(agency)


async def _outcome(ex: Exchange, request_id: uuid.UUID, state: str) -> dict[str, Any]:
    """Wait until the LA hears ``state`` for the request; the outcome."""
    found: dict[str, Any] = {}

    async def heard() -> bool:
        for outcome in (await consent_outcomes(ex.rt, LA)).get(request_id, []):
            if outcome["state"] == state:
                found.update(outcome)
        return bool(found)

    await eventually(heard, f"the LA to hear {state} for {request_id}")
    return found


async def _decisions(ex: Exchange, notification_id: uuid.UUID) -> list[str]:
    async with ex.gateway_store() as store:
        audit = await store.audit_records(notification_id=str(notification_id))
    return [a.decision for a in audit]


async def test_a_grant_lets_exactly_the_named_share_through(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        async with running_outbox(ex.rt, SCHOOL) as school:
            sent = await school.add(c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
            await ex.wait_rows(2)
            (item,) = await ex.queue("sw-amara")
            item_id = item.item.item_id

            refused = await _share(ex, item_id, "PARENT_OR_CARER", CONFERENCE)
            assert refused["allowed"] is False
            assert refused["broken"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
            assert "Ask the author's consent through the exchange" in refused["reason"]
            by_cli = await cli(
                ex, "queue", "share", str(item_id), "--la", LA, "--to", "parents",
                "--category", "parent_or_carer", "--purpose", CONFERENCE, "--by", "sw-amara",
            )  # fmt: skip
            assert by_cli.exit_code == 1, by_cli.output
            assert "refused: THIRD_PARTY_AUTHOR_CONSENT" in by_cli.output
            assert (
                f"safeguard consent ask --la {LA} {item_id} --category parent_or_carer "
                f"--purpose 'Child protection conference' --by sw-amara"
            ) in by_cli.output

            asked = await ask_consent(
                ex.rt, LA, item_id, category="PARENT_OR_CARER", purpose=CONFERENCE, by="sw-amara"
            )
            assert asked["state"] == "ASKED"
            assert asked["author"] == SCHOOL
            (request,) = await asked_of(school, SCHOOL)
            assert request.request_id == asked["request_id"]
            assert request.notification_id == sent
            assert (request.local_authority, request.requested_by) == (LA, "sw-amara")
            assert (request.category, request.purpose) == ("PARENT_OR_CARER", CONFERENCE)
            assert request.blocking == ("THIRD_PARTY_AUTHOR_CONSENT",)
            await _forwarded_names_no_more_than_the_item(ex)

        # The school answers from the command line.
        listed = await cli(ex, "producer", "consent", "list", "--agency", SCHOOL, "--open")
        assert listed.exit_code == 0, listed.output
        assert str(request.request_id) in listed.output
        assert f"attendance_update {sent}" in listed.output
        assert f"PARENT_OR_CARER for {CONFERENCE!r}" in listed.output
        granted = await cli(
            ex, "producer", "consent", "grant", str(request.request_id), "--agency", SCHOOL,
            "--by", "Ms Head (designated safeguarding lead)",
        )  # fmt: skip
        assert granted.exit_code == 0, granted.output
        assert "granted: consent request" in granted.output
        outcome = await _outcome(ex, request.request_id, "GRANTED")
        assert outcome["answered_by"] == "Ms Head (designated safeguarding lead)"
        assert outcome["still_blocked"] == []

        # Exactly that share goes through; the restriction stays for everything else.
        allowed = await _share(ex, item_id, "PARENT_OR_CARER", "child  protection CONFERENCE")
        assert allowed["allowed"] is True, allowed
        assert str(request.request_id) in allowed["reason"]
        other_category = await _share(ex, item_id, "OTHER_PROFESSIONAL", CONFERENCE)
        assert other_category["allowed"] is False
        assert other_category["broken"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
        other_purpose = await _share(ex, item_id, "PARENT_OR_CARER", "a letter home")
        assert other_purpose["allowed"] is False
        assert f"for {CONFERENCE!r} only" in other_purpose["reason"]

        # The first answer stands.
        again = await cli(
            ex, "producer", "consent", "refuse", str(request.request_id), "--agency", SCHOOL,
            "--by", "Someone else",
        )  # fmt: skip
        assert again.exit_code != 0
        assert "answered already" in again.output

        decisions = await _decisions(ex, sent)
        assert decisions.count("consent_requested") == 1
        assert decisions.count("consent_granted") == 1
        assert decisions.count("share_allowed") == 1
        assert decisions.count("share_refused") == 4
        async with ex.gateway_store() as store:
            audit = await store.audit_records(notification_id=str(sent))
        (grant,) = [a for a in audit if a.decision == "consent_granted"]
        assert grant.sender == SCHOOL
        assert grant.local_authority == LA
        assert "Ms Head" in grant.detail


async def _forwarded_names_no_more_than_the_item(ex: Exchange) -> None:
    """What the school received names the item by id, and carries nothing of the record."""
    trust = ex.rt.trust()
    opener = Opener(ex.rt.identity(SCHOOL, trust), trust)
    forwarded = []
    for record in await read_topic(ex.rt.kafka, receipts_topic(SCHOOL)):
        opened = opener.open(bytes(record.value or b""))
        if opened.purpose is Purpose.SHARE_REQUEST:
            forwarded.append(opened.plaintext)
    (plaintext,) = forwarded
    for secret in (AMIRA["nhs_number"], AMIRA["upn"], "Amira", "Zephyrine"):
        assert secret.encode() not in plaintext
    name, _ = ex.rt.contract().decode(plaintext)
    assert name == c.CONSENT_REQUEST


async def test_police_material_needs_the_court_order(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        async with running_outbox(ex.rt, POLICE) as police:
            sent = await police.add(c.POLICE_NOTIFICATION, samples.police_notification(LEO))
            await ex.wait_rows(2)
            (item,) = await ex.queue("sw-ben")
            item_id = item.item.item_id
            book = ConsentRequests(police.store.engine)

            first = await ask_consent(
                ex.rt, LA, item_id, category="PARENT_OR_CARER", purpose=CONFERENCE, by="sw-ben"
            )
            (request,) = await asked_of(police, POLICE)
            assert set(request.blocking) == {
                "THIRD_PARTY_AUTHOR_CONSENT",
                "POLICE_CONFIDENTIAL_TO_PROCEEDINGS",
            }
            with pytest.raises(ContractError) as no_order:
                await book.answer(police, request.request_id, granted=True, answered_by="DS Smith")
            assert no_order.value.path == "court_order"

            # A grant sent without the court order (not through the desk) is recorded, and
            # the share is still refused: the gateway enforces it, not only the desk.
            await police.add(c.CONSENT_ANSWER, _answer(request, granted=True))
            granted = await _outcome(ex, first["request_id"], "GRANTED")
            assert granted["still_blocked"] == ["POLICE_CONFIDENTIAL_TO_PROCEEDINGS"]
            still = await _share(ex, item_id, "PARENT_OR_CARER", CONFERENCE)
            assert still["allowed"] is False
            assert still["broken"] == ["POLICE_CONFIDENTIAL_TO_PROCEEDINGS"]
            assert "court order" in still["reason"]

            # Asked again, and granted with the court order recorded: the share goes.
            second = await ask_consent(
                ex.rt, LA, item_id, category="PARENT_OR_CARER", purpose=CONFERENCE, by="sw-ben"
            )
            assert second["state"] == "ASKED"
            _, again = await asked_of(police, POLICE, 2)
            order = "Family Court at East London, ZE26C00123, order of 30 November 2026"
            await book.answer(
                police, again.request_id, granted=True, answered_by="DS Smith", court_order=order
            )
            await _outcome(ex, second["request_id"], "GRANTED")
            allowed = await _share(ex, item_id, "PARENT_OR_CARER", CONFERENCE)
            assert allowed["allowed"] is True, allowed
            assert order in allowed["reason"]
            with pytest.raises(AlreadyAnswered):
                await book.answer(police, again.request_id, granted=False, answered_by="DS Smith")
            other = await _share(ex, item_id, "OTHER_PROFESSIONAL", CONFERENCE)
            assert set(other["broken"]) == set(request.blocking)

            async def receipted() -> bool:
                entries = await police.store.entries(POLICE)
                answers = [e for e in entries if e.schema_name == c.CONSENT_ANSWER]
                return len(answers) == 2 and all(e.status == "DELIVERED" for e in answers)

            await eventually(receipted, "the gateway's receipts for both answers")
        assert (await _decisions(ex, sent)).count("consent_granted") == 2


def _answer(request: ConsentRequest, *, granted: bool, **fields: Any) -> dict[str, Any]:
    return {
        "answer_id": uuid.uuid4(),
        "request_id": request.request_id,
        "notification_id": request.notification_id,
        "granted": granted,
        "answered_by": "DS Smith",
        "reason": None,
        "court_order": None,
        "answered_at": datetime.now(UTC),
        **fields,
    }


async def test_answers_from_another_agency_or_to_no_request_are_quarantined(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        async with running_outbox(ex.rt, SCHOOL) as school:
            await school.add(c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
            await ex.wait_rows(2)
            (item,) = await ex.queue("sw-amara")
            await ask_consent(
                ex.rt, LA, item.item.item_id, category="CARE_PROCEEDINGS", purpose="s.31",
                by="sw-amara",
            )  # fmt: skip
            (request,) = await asked_of(school, SCHOOL)
        # A health trust answering the school's request, and a school answering nothing.
        await ex.publish(HEALTH, c.CONSENT_ANSWER, _answer(request, granted=True))
        unknown = _answer(request, granted=True, request_id=uuid.uuid4())
        await ex.publish(SCHOOL, c.CONSENT_ANSWER, unknown)
        await eventually(lambda: ex.quarantined("not_the_author") == 1, "not_the_author")
        await eventually(
            lambda: ex.quarantined("unknown_consent_request") == 1, "unknown_consent_request"
        )
        court = await _share(ex, item.item.item_id, "CARE_PROCEEDINGS", "s.31")
        assert court["allowed"] is False


async def test_the_author_answers_through_the_push_endpoint(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        token = mint_token(tokens_file(tmp_path), POLICE, ("notifications", "consent"))
        auth = {"Authorization": f"Bearer {token}"}
        contract = ex.rt.contract()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with serving(ex.rt, [POLICE], port), httpx.AsyncClient(base_url=base) as http:
            record = to_json(contract, c.POLICE_NOTIFICATION, samples.police_notification(LEO))
            pushed = await http.post(
                "/v1/notifications/police_notification", json=record, headers=auth
            )
            assert pushed.status_code == 202, pushed.text
            await ex.wait_rows(2)
            (item,) = await ex.queue("sw-ben")
            asked = await ask_consent(
                ex.rt, LA, item.item.item_id, category="CARE_PROCEEDINGS",
                purpose="Care proceedings: s.31 application", by="sw-ben",
            )  # fmt: skip
            request_id = str(asked["request_id"])

            async def listed() -> list[dict[str, Any]]:
                answer = await http.get("/v1/consent-requests?open=true", headers=auth)
                assert answer.status_code == 200, answer.text
                found: list[dict[str, Any]] = answer.json()["consent_requests"]
                return found

            await eventually(lambda: _nonempty(listed()), "the request to reach the police")
            (shown,) = await listed()
            assert shown["request_id"] == request_id
            assert shown["notification_id"] == pushed.json()["notification_id"]
            assert shown["blocking"] == ["THIRD_PARTY_AUTHOR_CONSENT"]
            assert LEO["nhs_number"] not in json.dumps(shown)

            answer_url = f"/v1/consent-requests/{request_id}/answer"
            anonymous = await http.post(answer_url, json={"granted": True, "answered_by": "x"})
            assert anonymous.status_code == 401
            incomplete = await http.post(answer_url, json={"granted": True}, headers=auth)
            assert incomplete.status_code == 422
            assert incomplete.json()["errors"][0]["path"] == "answered_by"
            unknown = await http.post(
                f"/v1/consent-requests/{uuid.uuid4()}/answer",
                json={"granted": True, "answered_by": "DS Smith"},
                headers=auth,
            )
            assert unknown.status_code == 404
            body = {"granted": True, "answered_by": "DS Smith (disclosure unit)"}
            granted = await http.post(answer_url, json=body, headers=auth)
            assert granted.status_code == 202, granted.text
            assert granted.json()["answer"] == "GRANTED"
            again = await http.post(answer_url, json=body, headers=auth)
            assert again.status_code == 409
            assert await listed() == []

            await _outcome(ex, asked["request_id"], "GRANTED")
            court = await _share(ex, item.item.item_id, "CARE_PROCEEDINGS", shown["purpose"])
            assert court["allowed"] is True, court
            parents = await _share(ex, item.item.item_id, "PARENT_OR_CARER", shown["purpose"])
            assert parents["allowed"] is False


async def _nonempty(found: Awaitable[list[dict[str, Any]]]) -> bool:
    return bool(await found)
