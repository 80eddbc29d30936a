"""Who may do what, route by route: the inbox's route table by every kind of caller, with
the status each must get (an attacker's view of the access rules). The table is read from
the app itself, so a route added without a row here fails this test.

Callers: no one; the worker the item is allocated to; a colleague in the same team; the
team's supervisor (who sees the worker's row by its routing facts only); another team's
supervisor; the MASH duty worker; an account of the other LA (it cannot sign in here);
API clients scoped to the worker's queue (read only), to all of it (every action), to
another worker's queue, the other LA's, a revoked one and an expired one; and tokens of
Camden's identity provider for an admitted client, one for another API (wrong audience)
and an ID token (wrong type). On SQLite and on PostgreSQL with a schema per LA. Every
allowed read is also checked to show exactly the caller's view. An allowed write that would
change what other tests see (acknowledging, sharing, signing out) is marked ``None``: it
is proven by the tests of that action.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from consumers.inbox.api_models import Delivery, DeliverySummary, SharingRecord
from consumers.inbox.app import inbox_app
from consumers.inbox.family_models import FamilySummaryOut
from consumers.inbox.settings import InboxSettings
from consumers.inbox.store import InboxStore
from safeguard.inbox_wiring import inbox_store, serving_inbox
from safeguard.parties import LA, OTHER_LA
from tests.conftest_db import BACKENDS, PG_DSN, drop_schema
from tests.integration.inbox_world import PASSWORD, TEAM2, World, inbox_world
from tests.integration.oidc_provider import OpenIDProvider
from tests.integration.test_inbox_api import Person, items_of, mentions

pytestmark = pytest.mark.broker

PERSONS = {
    "worker": "amara",
    "colleague": "ben",
    "supervisor": "jones",
    "other_supervisor": "lee",
    "mash": "mash",
    "other_la": "ines",
}
CLIENTS = (
    *("client_read", "client_all", "client_other", "other_la_client", "revoked", "expired"),
    *("wrong_audience", "wrong_type"),  # tokens of the LA's identity provider, refused
)
CALLERS = ("anonymous", *PERSONS, *CLIENTS)
EVERY_SCOPE = ["deliveries:read", "deliveries:ack", "shares:write", "sharing-record:read"]
EVERY_SCOPE += ["referrals:respond", "queue:all"]
MISSING = 999_999  # no share, no consent request has this id


def same(status: int | None) -> dict[str, int | None]:
    return dict.fromkeys(CALLERS, status)


def page(**persons: int | None) -> dict[str, int | None]:
    """A page for people: without a session (no one, a client, the other LA's account,
    which cannot sign in here) it sends you to sign in."""
    return same(303) | persons


def api(**clients: int | None) -> dict[str, int | None]:
    """An API route: without a bearer token (people included) 401, as for a revoked or
    expired one."""
    return same(401) | clients


NOT_THEIRS = {"colleague": 404, "other_supervisor": 404, "mash": 404}
MATRIX: dict[tuple[str, str], dict[str, int | None]] = {
    ("GET", "/"): same(303),
    ("GET", "/login"): same(200),
    ("POST", "/login"): same(403),  # no CSRF token: refused before anything is read
    ("GET", "/login/oidc"): same(302),  # to Camden's identity provider, whoever asks
    ("GET", "/auth/callback"): same(401),  # no sign-in under way (no state, no code)
    ("POST", "/logout"): same(403) | dict.fromkeys(PERSONS, None),
    ("GET", "/queue"): page(
        worker=200, colleague=200, supervisor=200, other_supervisor=200, mash=200
    ),
    ("GET", "/items/{item_id}"): page(worker=200, supervisor=200, **NOT_THEIRS),
    ("GET", "/items/{item_id}/child"): page(worker=200, supervisor=200, **NOT_THEIRS),
    ("POST", "/items/{item_id}/ack"): page(worker=None, supervisor=None, **NOT_THEIRS),
    ("POST", "/items/{item_id}/share"): page(worker=None, supervisor=403, **NOT_THEIRS),
    # the item is not a referral: its worker is told so (422); its supervisor's copy is not it
    ("POST", "/items/{item_id}/referral"): page(worker=422, supervisor=403, **NOT_THEIRS),
    ("POST", "/shares/{share_id}/consent"): page(
        worker=404, colleague=404, supervisor=404, other_supervisor=404, mash=404
    ),
    ("GET", "/static/inbox.css"): same(200),
    ("GET", "/healthz"): same(200),
    ("GET", "/readyz"): same(200),
    ("GET", "/api/v1/openapi.json"): same(200),
    ("GET", "/api/v1/deliveries"): api(client_read=200, client_all=200, client_other=200),
    ("GET", "/api/v1/deliveries/{item_id}"): api(client_read=200, client_all=200, client_other=404),
    ("POST", "/api/v1/deliveries/{item_id}/ack"): api(
        client_read=403, client_all=None, client_other=403
    ),
    ("POST", "/api/v1/deliveries/{item_id}/shares"): api(
        client_read=403, client_all=None, client_other=403
    ),
    ("GET", "/api/v1/deliveries/{item_id}/sharing-record"): api(
        client_read=403, client_all=200, client_other=403
    ),
    ("GET", "/api/v1/deliveries/{item_id}/referral"): api(
        client_read=404,
        client_all=404,
        client_other=404,  # not a referral; not theirs
    ),
    # the body is a share's: refused (422) once the scope lets the client through
    ("POST", "/api/v1/deliveries/{item_id}/referral/responses"): api(
        client_read=403, client_all=422, client_other=403
    ),
    ("GET", "/api/v1/shares/{share_id}"): api(client_read=404, client_all=404, client_other=404),
    ("POST", "/api/v1/shares/{share_id}/consent"): api(
        client_read=403, client_all=404, client_other=403
    ),
    ("GET", "/api/v1/consents/{consent_id}"): api(
        client_read=404, client_all=404, client_other=404
    ),
    # families informed: the outstanding list is each caller's own (empty here: no share
    # was made); a share no one may see is 404, as one that does not exist
    ("GET", "/family"): page(
        worker=200, colleague=200, supervisor=200, other_supervisor=200, mash=200
    ),
    ("POST", "/shares/{share_id}/family"): page(
        worker=404, colleague=404, supervisor=404, other_supervisor=404, mash=404
    ),
    ("GET", "/items/{item_id}/family-summary"): page(worker=200, supervisor=200, **NOT_THEIRS),
    ("POST", "/api/v1/shares/{share_id}/family"): api(
        client_read=403, client_all=404, client_other=403
    ),
    ("GET", "/api/v1/shares/{share_id}/family"): api(
        client_read=404, client_all=404, client_other=404
    ),
    ("GET", "/api/v1/family/outstanding"): api(client_read=200, client_all=200, client_other=200),
    ("GET", "/api/v1/deliveries/{item_id}/family-summary"): api(
        client_read=403, client_all=200, client_other=403
    ),
    # network checks are asked from MASH items only (the item here is a worker's: 403 for a
    # caller who may share and sees it); any caller who sees the item lists its checks
    ("GET", "/items/{item_id}/network-checks"): page(worker=403, supervisor=403, **NOT_THEIRS),
    ("POST", "/items/{item_id}/network-checks"): page(worker=403, supervisor=403, **NOT_THEIRS),
    ("POST", "/api/v1/deliveries/{item_id}/network-checks"): api(
        client_read=403, client_all=403, client_other=403
    ),
    ("GET", "/api/v1/deliveries/{item_id}/network-checks"): api(
        client_read=200, client_all=200, client_other=404
    ),
}


def served_routes() -> set[tuple[str, str]]:
    app = inbox_app(
        None,  # type: ignore[arg-type]
        InboxSettings(),
        session_secret="x" * 32,
        la_name="Camden",
    )
    return {
        (method, route.path.replace(":id", ""))
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_every_route_has_a_row_and_every_row_a_route() -> None:
    assert set(MATRIX) == served_routes()
    for route, row in MATRIX.items():
        assert set(row) == set(CALLERS), route


@dataclasses.dataclass
class Caller:
    name: str
    person: Person | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[OpenIDProvider]:
    """Camden's identity provider: people sign in through it too, and systems get tokens."""
    async with OpenIDProvider("sgx-inbox", "inbox-secret", {}) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
async def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    provider: OpenIDProvider,
) -> AsyncIterator[World]:
    """Camden's inbox over Camden's store, Islington's store beside it: SQLite files, or
    PostgreSQL with a schema per LA (as deploy/ ships it)."""
    dsn = PG_DSN if request.param == "postgres" else None
    schema = f"sgx_matrix_{uuid.uuid4().hex[:10]}_{{party}}" if dsn else None
    try:
        async with inbox_world(
            tmp_path_factory.mktemp("inbox-matrix"),
            dsn=dsn,
            schema=schema,
            oidc_issuer=provider.issuer,
            oidc_client_id="sgx-inbox",
            oidc_client_secret="inbox-secret",
            api_audience=provider.audience,
            api_clients={"mosaic": EVERY_SCOPE},
        ) as w:
            await _callers_stores(w)
            w.extra["tokens"] |= provider_tokens(provider)
            yield w
    finally:
        if dsn and schema:
            await drop_schema(dsn, schema)


def provider_tokens(provider: OpenIDProvider) -> dict[str, str]:
    """Tokens of the LA's own provider for an admitted client that the inbox must refuse:
    one for another API, and an ID token (not an access token) for this one."""
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": provider.audience, "client_id": "mosaic",
              "scope": " ".join(EVERY_SCOPE), "iat": now, "exp": now + 3600}  # fmt: skip
    return {
        "wrong_audience": provider.machine_token(
            "mosaic", " ".join(EVERY_SCOPE), aud="another-api", exp=now + 3600
        ),
        "wrong_type": provider._sign(claims),  # no typ at+jwt: what a sign-in gets
    }


async def _callers_stores(w: World) -> None:
    """The callers' accounts and API clients: Camden's, and Islington's in its own store."""
    rt = w.exchange.rt
    async with await inbox_store(rt, LA) as store:
        await store.add_account(
            "lee", PASSWORD, worker_id="tm-lee", name="Lee", role="supervisor", team=TEAM2
        )
        tokens = await api_clients(store)
    async with await inbox_store(rt, OTHER_LA) as other:
        await other.add_account(
            "ines", PASSWORD, worker_id="sw-ines", name="Ines", role="social_worker",
            team="North",
        )  # fmt: skip
        tokens["other_la_client"] = await other.add_client("islington-cms", EVERY_SCOPE)
    w.extra["tokens"] = tokens


async def api_clients(store: InboxStore) -> dict[str, str]:
    """A bearer token for each kind of this LA's API client in :data:`CLIENTS`: scoped to
    the worker's queue (read only), to everything, to another worker's queue, revoked,
    expired (the other LA's client is made in the other LA's store)."""
    tokens = {
        "client_read": await store.add_client(
            "reader", ["deliveries:read", "queue:worker:sw-amara"]
        ),
        "client_all": await store.add_client("everything", EVERY_SCOPE),
        "client_other": await store.add_client(
            "bens-system", ["deliveries:read", "queue:worker:sw-ben"]
        ),
        "revoked": await store.add_client("revoked", ["deliveries:read", "queue:all"]),
        "expired": await store.add_client("expired", ["deliveries:read", "queue:all"]),
    }
    await store.revoke_client("revoked")
    async with store.engine.begin() as conn:
        clients = store._clients
        await conn.execute(
            clients.update()
            .where(clients.c.client_id == "expired")
            .values(expires_at=clients.c.created_at)
        )
    return tokens


async def callers(world: World) -> dict[str, Caller]:
    made = {"anonymous": Caller("anonymous")}
    for caller, username in PERSONS.items():
        p = Person(world.url)
        token = await p.csrf()
        data = {"csrf_token": token, "username": username, "password": PASSWORD}
        signed = await p.request("POST", "/login", data=data)
        expected = 401 if caller == "other_la" else 303
        assert signed.status_code == expected, (caller, signed.text)
        made[caller] = Caller(caller, person=p)
    for caller in CLIENTS:
        made[caller] = Caller(
            caller, headers={"authorization": f"Bearer {world.extra['tokens'][caller]}"}
        )
    return made


async def ask(world: World, caller: Caller, method: str, url: str, item: int) -> httpx.Response:
    form: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    if method == "POST" and not url.startswith("/api/"):
        where = "/login" if caller.name == "other_la" else "/queue"  # not signed in here
        token = await caller.person.csrf(where) if caller.person else None
        form = {"category": "PARENT_OR_CARER", "to_name": "the parents", "purpose": "p"}
        form |= {"csrf_token": token} if token and url not in ("/login", "/logout") else {}
    elif method == "POST":
        json = {"category": "PARENT_OR_CARER", "to_name": "the parents", "purpose": "p"}
    if caller.person is not None:
        return await caller.person.request(method, url, data=form, json=json)
    async with httpx.AsyncClient(base_url=world.url) as http:
        return await http.request(method, url, data=form, json=json, headers=caller.headers)


async def test_each_caller_gets_exactly_its_answer_on_every_route(world: World) -> None:
    item = (await items_of(world, "sw-amara"))[0]
    ids = {"item_id": item, "share_id": MISSING, "consent_id": MISSING}
    everyone = await callers(world)
    wrong: list[str] = []
    try:
        for (method, template), row in MATRIX.items():
            url = template.format(**ids)
            for name, expected in row.items():
                if expected is None:
                    continue
                answer = await ask(world, everyone[name], method, url, item)
                if answer.status_code != expected:
                    wrong.append(f"{method} {template} as {name}: {answer.status_code}")
                elif expected == 200:
                    wrong += shown_beyond_the_view(name, method, template, answer)
    finally:
        for caller in everyone.values():
            if caller.person is not None:
                await caller.person.close()
    assert not wrong, "\n".join(wrong)


SUMMARY = set(DeliverySummary.model_fields)


def shown_beyond_the_view(
    caller: str, method: str, template: str, answer: httpx.Response
) -> list[str]:
    """What an allowed read shows that is not exactly the caller's view of the item
    (amara's, sealed for her as the allocated social worker): a system reads the
    documented fields and no more, the opened delivery says whose view it is; a person
    reads the item in full only as its recipient, the supervisor its routing facts."""
    where = f"{method} {template} as {caller}"
    if template == "/api/v1/deliveries":
        rows = answer.json()["items"]
        return [f"{where}: {sorted(set(r) ^ SUMMARY)}" for r in rows if set(r) != SUMMARY]
    if template == "/api/v1/deliveries/{item_id}":
        body = answer.json()
        problems = [] if set(body) == set(Delivery.model_fields) else [f"{where}: fields"]
        if (body["recipient_id"], body["recipient_role"]) != ("sw-amara", "SOCIAL_WORKER"):
            problems.append(
                f"{where}: the view of {body['recipient_id']} as {body['recipient_role']}"
            )
        return problems
    if template == "/api/v1/deliveries/{item_id}/sharing-record":
        shown = set(answer.json())
        return [] if shown <= set(SharingRecord.model_fields) else [f"{where}: {shown}"]
    if template == "/api/v1/deliveries/{item_id}/family-summary":
        shown = set(answer.json())
        return [] if shown == set(FamilySummaryOut.model_fields) else [f"{where}: {shown}"]
    if template == "/api/v1/family/outstanding":
        rows = answer.json()["items"]
        return [
            f"{where}: a row of another's queue" for r in rows if r["recipient_id"] != "sw-amara"
        ]
    if template.startswith("/items/"):
        child = mentions(answer.text, world_child())
        if caller == "worker" and "/child" not in template and not child:
            return [f"{where}: the recipient does not see her own item"]
        if caller == "supervisor" and ("sealed for sw-amara" not in answer.text or child):
            return [f"{where}: the supervisor sees beyond the routing facts: {child}"]
    return []


def world_child() -> Any:
    from tests.integration.inbox_world import CHILDREN

    return CHILDREN["amira"]


async def test_camdens_people_and_systems_are_strangers_at_islingtons_inbox(world: World) -> None:
    """The other direction: Islington's inbox, over Islington's store, knows none of
    Camden's accounts or API clients (and does know its own)."""
    tokens = world.extra["tokens"]
    async with serving_inbox(world.exchange.rt, OTHER_LA, InboxSettings(port=0)) as islington:
        for username, expected in (("amara", 401), ("jones", 401), ("mash", 401), ("ines", 303)):
            p = Person(islington.url)
            data = {"csrf_token": await p.csrf(), "username": username, "password": PASSWORD}
            try:
                signed = await p.request("POST", "/login", data=data)
            finally:
                await p.close()
            assert signed.status_code == expected, (username, signed.text)
        async with httpx.AsyncClient(base_url=islington.url) as http:
            for client, expected in (("client_all", 401), ("client_read", 401)):
                bearer = {"authorization": f"Bearer {tokens[client]}"}
                answer = await http.get("/api/v1/deliveries", headers=bearer)
                assert answer.status_code == expected, client
            own = {"authorization": f"Bearer {tokens['other_la_client']}"}
            assert (await http.get("/api/v1/deliveries", headers=own)).status_code == 200
