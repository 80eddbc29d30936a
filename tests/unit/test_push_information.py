"""The push endpoint's network-check routes, in process: an agency's system lists the MASH
information requests put to it and answers them; another agency's token sees none of
them and answers none; bad answers are refused by field."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.information_requests import InformationRequests
from producers.outbox import Outbox, OutboxStore
from producers.push import push_app
from producers.push_information import InformationBoard
from producers.push_tokens import PushTokens, mint_token, tokens_file
from safeguard.parties import HEALTH, LA, SCHOOL
from sgx.domain.restrictions import TEXT
from sgx.wire import contract as c
from tests.conftest_db import BACKENDS, backend
from tests.unit.information_requests import information_request, keep
from tests.unit.test_consent import offline_outbox
from tests.unit.test_push import Recorder

URL = "/v1/information-requests"
HELD = {
    "outcome": "HELD",
    "facts": "Two fixed-term exclusions this year; attendance 71%",
    "professional_opinion": "The DSL is worried about the child's weight",
    "restrictions": ["NOT_TO_PARENTS"],
    "answered_by": "Ms Patel, DSL",
}


@dataclasses.dataclass
class Endpoint:
    http: httpx.AsyncClient
    tokens: dict[str, str]
    asked: dict[str, list[uuid.UUID]]  # by agency: an open request, then an answered one
    books: dict[str, InformationRequests]
    added: dict[str, list[tuple[str, Mapping[str, Any]]]]  # what went in each outbox

    def as_(self, caller: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[caller]}"}


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each store the outbox supports: the access rules hold on every one."""
    return str(request.param)


@contextlib.asynccontextmanager
async def endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> AsyncIterator[Endpoint]:
    """One endpoint serving the school and the health trust, each with two requests from
    Camden's MASH (one open, one answered) in its own outbox database (SQLite file or
    PostgreSQL schema, as ``kind``)."""
    path = tokens_file(tmp_path)
    tokens = {
        "school": mint_token(path, SCHOOL, ("information",)),
        "health": mint_token(path, HEALTH, ("information",)),
        "school_sender": mint_token(path, SCHOOL, ("notifications",)),
        "school_consent": mint_token(path, SCHOOL, ("consent",)),
    }
    async with contextlib.AsyncExitStack() as stack:
        boards, asked, books, added = {}, {}, {}, {}
        for agency in (SCHOOL, HEALTH):
            home = tmp_path / agency
            home.mkdir()
            db = await stack.enter_async_context(backend(kind, home))
            store = await stack.enter_async_context(
                await OutboxStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner=agency)
            )
            outbox = await stack.enter_async_context(offline_outbox(home, store, agency))
            book = InformationRequests(store.engine, schema=store.schema)
            open_one, answered = information_request(agency), information_request(agency)
            await keep(store.engine, book, open_one, answered)
            await book.answer(outbox, answered.request_id, outcome="NOTHING_HELD",
                              answered_by="Mr Earlier")  # fmt: skip
            added[agency] = _spy(outbox, monkeypatch)
            boards[agency] = InformationBoard(book, outbox)
            asked[agency] = [open_one.request_id, answered.request_id]
            books[agency] = book
        app = push_app(
            {SCHOOL: Recorder(), HEALTH: Recorder()}, PushTokens.load(path), information=boards
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as http:
            yield Endpoint(http, tokens, asked, books, added)


def _spy(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Mapping[str, Any]]]:
    added: list[tuple[str, Mapping[str, Any]]] = []
    add = outbox.add

    async def spying(name: str, record: Mapping[str, Any], **kw: Any) -> uuid.UUID:
        kept = await add(name, record, **kw)  # a record the contract refuses is not kept
        added.append((name, record))
        return kept

    monkeypatch.setattr(outbox, "add", spying)
    return added


async def test_an_agency_lists_its_requests_with_rating_deadline_and_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    async with endpoint(tmp_path, monkeypatch, kind) as ep:
        listed = await ep.http.get(URL, headers=ep.as_("school"))
        assert listed.status_code == 200, listed.text
        rows = listed.json()["information_requests"]
        assert [r["request_id"] for r in rows] == [str(r) for r in ep.asked[SCHOOL]]
        first = rows[0]
        assert (first["rating"], first["local_authority"]) == ("AMBER", LA)
        assert first["deadline"] == "2025-11-04T09:00:00Z"
        assert first["overdue"] is True  # the deadline has passed, unanswered
        assert (first["family_told"], first["family_exception"]) == (False, "RISK_TO_CHILD")
        assert first["child"]["given_name"] == "Amira"
        assert first["child"]["date_of_birth"] == "2016-04-01"
        assert first["outcome"] is None
        assert (rows[1]["outcome"], rows[1]["overdue"]) == ("NOTHING_HELD", False)
        opened = await ep.http.get(URL + "?open=true", headers=ep.as_("school"))
        assert [r["request_id"] for r in opened.json()["information_requests"]] == [
            str(ep.asked[SCHOOL][0])
        ]
        bad = await ep.http.get(URL + "?open=maybe", headers=ep.as_("school"))
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["path"] == "query.open"


async def test_an_answer_held_goes_in_the_outbox_with_its_restrictions_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    async with endpoint(tmp_path, monkeypatch, kind) as ep:
        request_id = ep.asked[SCHOOL][0]
        answered = await ep.http.post(
            f"{URL}/{request_id}/answer", json=HELD, headers=ep.as_("school")
        )
        assert answered.status_code == 202, answered.text
        assert answered.json()["outcome"] == "HELD"
        assert answered.json()["answered_by"] == "Ms Patel, DSL"
        ((name, record),) = ep.added[SCHOOL]
        assert name == c.INFORMATION_ANSWER
        assert record["request_id"] == request_id
        assert record["local_authority"] == LA
        assert (record["facts"], record["professional_opinion"]) == (
            HELD["facts"], HELD["professional_opinion"]
        )  # fmt: skip
        assert record["restrictions"] == [
            {"code": "NOT_TO_PARENTS", "source": "AUTHOR", "text": TEXT["NOT_TO_PARENTS"]}
        ]
        assert record["automatic"] is False
        (kept,) = [e for e in await ep.books[SCHOOL].list(SCHOOL) if e.request_id == request_id]
        assert kept.answer_id == record["answer_id"]

        again = await ep.http.post(
            f"{URL}/{request_id}/answer",
            json={"outcome": "NOTHING_HELD", "answered_by": "Someone else"},
            headers=ep.as_("school"),
        )
        assert again.status_code == 409, again.text
        assert "answered already" in again.json()["errors"][0]["message"]
        assert len(ep.added[SCHOOL]) == 1


async def test_another_agencys_token_neither_lists_nor_answers_this_agencys_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The health trust's valid token, on the same endpoint: it sees its own requests only,
    and an answer to the school's request is 404 (as for an id never sent), and changes
    nothing of the school's."""
    async with endpoint(tmp_path, monkeypatch, kind) as ep:
        listed = await ep.http.get(URL, headers=ep.as_("health"))
        ids = {r["request_id"] for r in listed.json()["information_requests"]}
        assert ids == {str(r) for r in ep.asked[HEALTH]}
        for school_request in ep.asked[SCHOOL]:
            assert str(school_request) not in listed.text
            answer = await ep.http.post(
                f"{URL}/{school_request}/answer", json=HELD, headers=ep.as_("health")
            )
            assert answer.status_code == 404, answer.text
        never = await ep.http.post(f"{URL}/{uuid.uuid4()}/answer", json=HELD,
                                   headers=ep.as_("health"))  # fmt: skip
        assert never.status_code == 404
        assert answer.json()["errors"][0]["message"].split(" ")[:3] == [
            "no",
            "information",
            "request",
        ]
        assert ep.added == {SCHOOL: [], HEALTH: []}
        still = await ep.books[SCHOOL].get(SCHOOL, ep.asked[SCHOOL][0])
        assert still.answer_id is None
        # a token of the school's without the information scope: forbidden, told why
        for caller in ("school_sender", "school_consent"):
            refused = await ep.http.get(URL, headers=ep.as_(caller))
            assert refused.status_code == 403, caller
            assert "scopes do not include information" in refused.text
            refused = await ep.http.post(
                f"{URL}/{ep.asked[SCHOOL][0]}/answer", json=HELD, headers=ep.as_(caller)
            )
            assert refused.status_code == 403, caller
        assert (await ep.http.get(URL)).status_code == 401
        assert ep.added == {SCHOOL: [], HEALTH: []}


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"outcome": None}, "outcome"),
        ({"outcome": "MAYBE"}, "outcome"),
        ({"answered_by": None}, "answered_by"),
        ({"answered_by": ""}, "answered_by"),
        ({"answered_by": "   "}, "answered_by"),
        ({"answered_by": "x" * 201}, "answered_by"),
        ({"facts": None}, "facts"),  # held: facts required
        ({"facts": ""}, "facts"),
        ({"facts": 71}, "facts"),
        ({"professional_opinion": ""}, "professional_opinion"),
        ({"outcome": "NOTHING_HELD"}, "facts"),  # nothing held carries no information
        ({"outcome": "CANNOT_MATCH", "facts": None}, "facts"),  # the opinion is left
        ({"restrictions": ["THIRD_PARTY_AUTHOR_CONSENT"]}, "restrictions[0]"),
        ({"restrictions": ["NOT_TO_PARENTS", "NOT_TO_PARENTS"]}, "restrictions[1]"),
        ({"restrictions": "NOT_TO_PARENTS"}, "restrictions"),
        ({"restrictions": {}}, "restrictions"),
        ({"Amira Zephyrine": "x"}, "$"),
    ],
)
async def test_a_bad_answer_is_422_naming_its_field_and_changes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    changes: dict[str, Any],
    path: str,
) -> None:
    async with endpoint(tmp_path, monkeypatch, kind) as ep:
        request_id = ep.asked[SCHOOL][0]
        body = HELD | changes
        answer = await ep.http.post(
            f"{URL}/{request_id}/answer", json=body, headers=ep.as_("school")
        )
        assert answer.status_code == 422, answer.text
        (error,) = answer.json()["errors"]
        assert error["path"] == path, error
        assert "Amira" not in answer.text
        assert "Patel" not in answer.text
        assert ep.added[SCHOOL] == []
        assert (await ep.books[SCHOOL].get(SCHOOL, request_id)).answer_id is None
