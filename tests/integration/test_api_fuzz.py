"""The inbox's case-management API and the agency push endpoint fuzzed from the OpenAPI
documents they serve (issue 21): schemathesis draws requests from each operation's
parameters, bodies and security, valid and broken alike, sends them to the app in process,
and checks every answer: never a 5xx, and a status, content type, headers and body that
the document describes for that operation (and broken input refused with a 4xx).

Callers: one allowed everything ("allowed"), and every other kind ("others"): no token or
one that schemathesis makes up, tokens scoped to less (one queue, reading only; sending or
consenting only), another agency's, a revoked and an expired one. Ids are those of real
items, shares and consent requests, and whatever else schemathesis draws. The push
endpoint's records claim the school as author, as its token does, so they get past the
403 to the record's own checks; valid samples are sent too, so 202 is checked as well.

Hypothesis runs derandomized with a fixed number of examples and no example database, so
every run (CI's too) sends the same requests. It runs in a worker thread: the app stays on
the test's event loop, where its database engines and broker client live, and each
request is handed to that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consumers.inbox.openapi import OPERATIONS
from producers.openapi import openapi_document
from producers.push import to_json
from producers.push_information import INFORMATION_PATH
from safeguard.inbox_wiring import inbox_store
from safeguard.parties import LA, SCHOOL
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from tests.integration.inbox_world import World, inbox_world
from tests.integration.test_inbox_matrix import api_clients
from tests.unit.test_push import SAMPLES, school_endpoint
from tests.unit.test_push_information import HELD

# schemathesis's strategies draw from the global `random` (seeded by hypothesis for each
# example, so runs stay reproducible); hypothesis deprecates that, and says so each draw
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
EXAMPLES = 40  # requests per operation and caller; fixed, so a run's length is too
SEND_LIMIT_S = 60.0
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
)
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much),
)

Operation = APIOperation[Any, Any, Any, Any]
ApiCase = Case[Any]
Headers = Mapping[str, str] | None  # None: schemathesis makes the Authorization up (or not)
Ids = Mapping[str, Any] | None  # fixed path parameters; None: generated


def _httpx_request(case: ApiCase, base_url: str) -> dict[str, Any]:
    """The case as ``httpx.AsyncClient.request`` arguments (schemathesis serializes for
    requests: a raw body is its ``data``, httpx's ``content``)."""
    sent = case.as_transport_kwargs(base_url=base_url)
    request: dict[str, Any] = {
        "method": sent.pop("method"),
        "url": sent.pop("url"),
        "headers": dict(sent.pop("headers")),
        "params": sent.pop("params"),
    }
    if cookies := sent.pop("cookies", None):
        request["headers"]["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if "json" in sent:
        request["json"] = sent.pop("json")
    elif isinstance(sent.get("data"), bytes | str):
        request["content"] = sent.pop("data")
    assert not sent, f"a request part this test cannot send: {sorted(sent)}"
    return request


def requests_for(
    operation: Operation,
    callers: Sequence[Headers],
    ids: Sequence[Ids] = (None,),
    bodies: Sequence[Any] = (),
) -> st.SearchStrategy[ApiCase]:
    """Requests to ``operation``, valid and broken, by each caller, for each set of ids
    (those the path has), and with each of ``bodies`` (valid ones, as a start)."""
    names = {p.name for p in operation.path_parameters}
    paths = {tuple(sorted((k, v) for k, v in (i or {}).items() if k in names)) for i in ids}
    strategies = [
        operation.as_strategy(
            mode, headers=dict(headers) if headers else None, path_parameters=dict(path) or None
        )
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for headers in callers
        for path in sorted(paths)
    ]
    strategies += [
        operation.as_strategy(headers=dict(headers), path_parameters=dict(path) or None, body=body)
        for body in bodies
        for headers in callers
        if headers
        for path in sorted(paths)
    ]
    return st.one_of(strategies)


async def fuzz(http: httpx.AsyncClient, requests: st.SearchStrategy[ApiCase]) -> None:
    """Send :data:`EXAMPLES` of ``requests`` (and, on a failure, hypothesis's smaller
    ones) and check every answer; raises on the first request that fails a check."""
    loop = asyncio.get_running_loop()
    base_url = str(http.base_url).rstrip("/")

    @FUZZ
    @given(case=requests)
    def each(case: ApiCase) -> None:
        request = _httpx_request(case, base_url)
        sending = asyncio.run_coroutine_threadsafe(http.request(**request), loop)
        response = sending.result(timeout=SEND_LIMIT_S)
        case.validate_response(response, checks=list(CHECKS), headers=request["headers"])

    await asyncio.to_thread(each)


async def served(http: httpx.AsyncClient, url: str) -> schemathesis.BaseSchema:
    """The OpenAPI document as the app serves it, loaded by schemathesis."""
    answer = await http.get(url)
    assert answer.status_code == 200, answer.text
    return schemathesis.openapi.from_dict(answer.json())


def operation_of(schema: schemathesis.BaseSchema, path: str, method: str) -> Operation:
    found: Operation = schema[path][method.upper()]
    return found


# --------------------------------------------------------------------------------------
# The inbox's case-management API


@pytest.fixture(scope="module")
async def inbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """The inbox world with API clients of every kind, and a refused share (of Cara's
    school update, to another professional) whose author's consent was asked."""
    async with inbox_world(tmp_path_factory.mktemp("inbox-fuzz"), share_timeout_s=5) as w:
        async with await inbox_store(w.exchange.rt, LA) as store:
            tokens = await api_clients(store)
        everything = {"authorization": f"Bearer {tokens['client_all']}"}
        transport = httpx.ASGITransport(app=w.inbox.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inbox.test") as http:
            listed = await http.get("/api/v1/deliveries?limit=500", headers=everything)
            items = [i["item_id"] for i in listed.json()["items"]]
            (cara,) = [
                i["item_id"] for i in listed.json()["items"] if i["recipient_id"] == "sw-carla"
            ]
            nurse = {"category": "OTHER_PROFESSIONAL", "to_name": "the school nurse",
                     "purpose": "health assessment"}  # fmt: skip
            share = await http.post(
                f"/api/v1/deliveries/{cara}/shares", headers=everything, json=nurse
            )
            assert share.status_code == 201, share.text
            share_id = share.json()["share_id"]
            consent = await http.post(f"/api/v1/shares/{share_id}/consent", headers=everything)
            assert consent.status_code == 201, consent.text
        w.extra |= {
            "tokens": tokens,
            "items": items,
            "share_id": share_id,
            "consent_id": consent.json()["consent_id"],
        }
        yield w


def bearer(token: str) -> Headers:
    return {"authorization": f"Bearer {token}"}


def callers_of(tokens: Mapping[str, str], allowed: str, caller: str) -> list[Headers]:
    """The ``allowed`` token, or every other caller (none, made up, or another token)."""
    if caller == "allowed":
        return [bearer(tokens[allowed])]
    return [None, *(bearer(tokens[name]) for name in sorted(tokens) if name != allowed)]


@pytest.mark.broker
@pytest.mark.parametrize("caller", ["allowed", "others"])
@pytest.mark.parametrize(("path", "method"), sorted(OPERATIONS))
async def test_the_inbox_api_answers_as_its_document_says(
    inbox: World, path: str, method: str, caller: str
) -> None:
    callers = callers_of(inbox.extra["tokens"], "client_all", caller)
    ids: list[Ids] = [None]
    ids += [
        {"item_id": item, "share_id": inbox.extra["share_id"],
         "consent_id": inbox.extra["consent_id"]}
        for item in inbox.extra["items"]
    ]  # fmt: skip
    transport = httpx.ASGITransport(app=inbox.inbox.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inbox.test") as http:
        schema = await served(http, "/api/v1/openapi.json")
        await fuzz(http, requests_for(operation_of(schema, path, method), callers, ids))


# --------------------------------------------------------------------------------------
# The push endpoint


PUSH_OPERATIONS = sorted(
    (path, method)
    for path, operations in openapi_document(default_contract())["paths"].items()
    for method in operations
)


def _samples(path: str) -> list[Any]:
    """A valid body of the path's notification type, by the school, if it is one (or a
    valid answer to an information request)."""
    if path.endswith("/answer") and path.startswith(INFORMATION_PATH):
        return [HELD, {"outcome": "NOTHING_HELD", "answered_by": "Ms Patel, DSL"}]
    for name, sample in SAMPLES.items():
        if path.endswith("/" + c.SHORT_NAMES[name]):
            body = to_json(default_contract(), name, sample())
            body["author"]["agency_id"] = SCHOOL
            return [body]
    return []


def _by_the_school(case: ApiCase) -> ApiCase:
    """The case, its record claiming the school as author if it names one: the endpoint
    refuses another author with 403 before it reads the rest."""
    author = case.body.get("author") if isinstance(case.body, dict) else None
    if isinstance(author, dict) and isinstance(author.get("agency_id"), str):
        author["agency_id"] = SCHOOL
    return case


@pytest.mark.parametrize("caller", ["allowed", "others"])
@pytest.mark.parametrize(("path", "method"), PUSH_OPERATIONS)
async def test_the_push_endpoint_answers_as_its_document_says(
    tmp_path: Path, path: str, method: str, caller: str
) -> None:
    async with school_endpoint(tmp_path) as push:
        callers = callers_of(push.tokens, "both", caller)
        ids: list[Ids] = [None, *({"request_id": r} for r in push.requests + push.checks)]
        schema = await served(push.http, "/openapi.json")
        operation = operation_of(schema, path, method)
        requests = requests_for(operation, callers, ids, _samples(path)).map(_by_the_school)
        await fuzz(push.http, requests)
