"""The push endpoint over HTTP (in process), its JSON mapping, tokens and OpenAPI document."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import json
import stat
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from click.testing import CliRunner
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from producers.consent_requests import ConsentDesk, ConsentRequest, ConsentRequests
from producers.information_requests import InformationRequests
from producers.openapi import json_schema, openapi_document, render
from producers.outbox import OutboxStore
from producers.push import MAX_BODY_BYTES, from_json, push_app, to_json
from producers.push_information import InformationBoard
from producers.push_tokens import SCOPES, PushTokens, mint_token, revoke_tokens, tokens_file
from safeguard import samples
from safeguard.cli_push import push
from safeguard.parties import DEMO_PARTIES, HEALTH, POLICE, SCHOOL
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ConfigError, ContractError, TransportError
from sgx.keys.key_admin import init_trust
from sgx.settings import REPO_ROOT
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from tests.unit.information_requests import information_request, keep
from tests.unit.test_consent import NOW, keep_requests, offline_outbox, request_record

CONTRACT = default_contract()
CHILD = samples.child(make_nhs_number(7), make_upn(7), given="Zephyrine", family="Quillfeather")
SAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    c.ATTENDANCE_UPDATE: lambda: samples.attendance_update(copy.deepcopy(CHILD)),
    c.HEALTH_UPDATE: lambda: samples.health_update(copy.deepcopy(CHILD)),
    c.POLICE_NOTIFICATION: lambda: samples.police_notification(copy.deepcopy(CHILD)),
    c.REFERRAL: lambda: samples.referral(copy.deepcopy(CHILD)),
}
ATTENDANCE_URL = "/v1/notifications/attendance_update"
PERSONAL = (CHILD["given_name"], CHILD["family_name"], CHILD["nhs_number"], CHILD["upn"])


class Recorder:
    """An accept callable that validates like the outbox and records what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, Mapping[str, Any]]] = []
        self.fail_with: Exception | None = None

    async def __call__(self, name: str, record: Mapping[str, Any]) -> uuid.UUID:
        if self.fail_with is not None:
            raise self.fail_with
        CONTRACT.check(name, record)
        self.accepted.append((name, record))
        return uuid.UUID(str(record["notification_id"]))


@pytest.fixture
def tokens_path(tmp_path: Path) -> Path:
    return tokens_file(tmp_path)


@pytest.fixture
def school_token(tokens_path: Path) -> str:
    return mint_token(tokens_path, SCHOOL)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(
    tokens_path: Path, school_token: str, recorder: Recorder
) -> AsyncIterator[httpx.AsyncClient]:
    mint_token(tokens_path, HEALTH)  # a token of an agency this endpoint does not serve
    app = push_app({SCHOOL: recorder}, PushTokens.load(tokens_path), max_body_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as http:
        http.headers["Authorization"] = f"Bearer {school_token}"
        yield http


def attendance_json(**changes: Any) -> dict[str, Any]:
    return to_json(CONTRACT, c.ATTENDANCE_UPDATE, SAMPLES[c.ATTENDANCE_UPDATE]() | changes)


def assert_refused(response: httpx.Response, status: int, recorder: Recorder) -> list[Any]:
    """The status, the error body's shape, nothing accepted and nothing personal echoed."""
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert errors
    assert all(isinstance(error["message"], str) for error in errors)
    assert recorder.accepted == []
    for value in PERSONAL:
        assert value not in response.text
    return list(errors)


# --------------------------------------------------------------------------------------
# HTTP behaviour


async def test_good_record_is_accepted_with_its_id(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    record = SAMPLES[c.ATTENDANCE_UPDATE]()
    response = await client.post(
        ATTENDANCE_URL, json=to_json(CONTRACT, c.ATTENDANCE_UPDATE, record)
    )
    assert response.status_code == 202
    assert response.json() == {"notification_id": str(record["notification_id"])}
    (name, accepted), *_ = recorder.accepted
    assert name == c.ATTENDANCE_UPDATE
    _, expected = CONTRACT.decode(CONTRACT.encode(name, record))  # the shape decode gives
    assert accepted == expected


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic c2Nob29sOnB3", "Bearer ", "Bearer sgxp_not-a-token-anyone-minted"],
)
async def test_without_a_valid_bearer_token_is_401(
    client: httpx.AsyncClient, recorder: Recorder, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    if authorization is None:
        del client.headers["Authorization"]
    response = await client.post(ATTENDANCE_URL, json=attendance_json(), headers=headers)
    assert_refused(response, 401, recorder)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_type_is_404_but_only_after_authentication(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    url = "/v1/notifications/school_report"
    assert_refused(await client.post(url, json={}), 404, recorder)
    del client.headers["Authorization"]
    assert_refused(await client.post(url, json={}), 401, recorder)


async def test_record_by_another_agency_is_403(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    record = attendance_json()
    record["author"]["agency_id"] = HEALTH
    (error,) = assert_refused(await client.post(ATTENDANCE_URL, json=record), 403, recorder)
    assert "author.agency_id" in error["message"]


async def test_token_of_an_agency_not_served_here_is_403(
    client: httpx.AsyncClient, tokens_path: Path, recorder: Recorder
) -> None:
    health_token = mint_token(tokens_path, HEALTH)
    app = push_app({SCHOOL: recorder}, PushTokens.load(tokens_path))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://push.test"
    ) as http:
        record = to_json(CONTRACT, c.HEALTH_UPDATE, SAMPLES[c.HEALTH_UPDATE]())
        response = await http.post(
            "/v1/notifications/health_update",
            json=record,
            headers={"Authorization": f"Bearer {health_token}"},
        )
    assert_refused(response, 403, recorder)


def _set(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    target = record
    for part in parents:
        target = target[part]
    target[leaf] = value
    return record


def _delete(record: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    target = record
    for part in parents:
        target = target[part]
    del target[leaf]
    return record


def _bad_check_digit(nhs_number: str) -> str:
    return nhs_number[:9] + str((int(nhs_number[9]) + 1) % 10)


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("child.nhs_number", _bad_check_digit(CHILD["nhs_number"]), "check digit"),
        ("attendance.sessions_possible", DELETE, "is required"),
        ("urgency", "WHENEVER", "is not one of ROUTINE, PRIORITY, IMMEDIATE"),
        ("authored_at", "2025-03-10T09:30:00", "is not an ISO-8601 timestamp with a timezone"),
        ("authored_at", "yesterday", "is not an ISO-8601 timestamp"),
        ("authored_at", 1741599000000, "is not an ISO-8601 timestamp"),
        ("authored_at", "2025-02-30T09:30:00Z", "is not a valid date and time"),
        # valid RFC 3339, but in UTC before year 1 or after 9999 (was a 500, found by fuzzing)
        ("authored_at", "0001-01-01T00:00:00+00:01", "is out of range"),
        ("authored_at", "9999-12-31T23:59:59-00:01", "is out of range"),
        ("attendance.period_start", "02/11/2026", "is not an ISO-8601 date (YYYY-MM-DD)"),
        ("notification_id", "not-a-uuid", "is not a UUID"),
        ("child.shoe_size", 3, "is not a field of Child"),
        ("child", "Zephyrine Quillfeather", "expected record Child, got a string"),
        ("attendance.sessions_missed", 99, "more than sessions_possible"),
        ("sharing.restrictions", ["NOT_A_CODE"], "is not one of"),
    ],
)
async def test_wrong_field_is_422_naming_its_path(
    client: httpx.AsyncClient, recorder: Recorder, path: str, value: Any, message: str
) -> None:
    record = attendance_json()
    if value is DELETE:
        _delete(record, path)
    else:
        _set(record, path, value)
    response = await client.post(ATTENDANCE_URL, json=record)
    (error,) = assert_refused(response, 422, recorder)
    expected_path = path + "[0]" if isinstance(value, list) else path
    assert error["path"] == expected_path
    assert message in error["message"]


async def test_422_never_echoes_a_value_sent(client: httpx.AsyncClient, recorder: Recorder) -> None:
    record = attendance_json(urgency="Zephyrine Quillfeather")
    record["child"]["Zephyrine Quillfeather"] = True  # a key that is not a field name
    response = await client.post(ATTENDANCE_URL, json=record)
    assert_refused(response, 422, recorder)
    record = attendance_json(urgency="Zephyrine Quillfeather")
    assert_refused(await client.post(ATTENDANCE_URL, json=record), 422, recorder)


async def test_body_that_is_not_a_json_object_is_refused(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    post = client.post
    json_headers = {"Content-Type": "application/json"}
    for body in (b"{not json", b'{"a": 1, "a": 2}', b'{"a": NaN}', b"\xff\xfe\x00"):
        assert_refused(
            await post(ATTENDANCE_URL, content=body, headers=json_headers), 400, recorder
        )
    (error,) = assert_refused(await post(ATTENDANCE_URL, json=[1, 2]), 422, recorder)
    assert error["path"] == "$"
    text = {"Content-Type": "text/plain"}
    assert_refused(await post(ATTENDANCE_URL, content=b"{}", headers=text), 415, recorder)


async def test_body_over_the_limit_is_413_declared_or_streamed(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    big = attendance_json()
    big["assessment"]["facts"] = "x" * (64 * 1024)
    assert_refused(await client.post(ATTENDANCE_URL, json=big), 413, recorder)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(80):
            yield b" " * 1024

    headers = {"Content-Type": "application/json"}
    response = await client.post(ATTENDANCE_URL, content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, recorder)
    assert MAX_BODY_BYTES >= 64 * 1024  # the default leaves room for long free text


async def test_retriable_failure_downstream_is_503_with_retry_after(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    recorder.fail_with = TransportError("broker at 127.0.0.1:1 is unreachable")
    response = await client.post(ATTENDANCE_URL, json=attendance_json())
    assert_refused(response, 503, recorder)
    assert response.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in response.text


async def test_healthz_and_openapi_need_no_token(client: httpx.AsyncClient) -> None:
    del client.headers["Authorization"]
    assert (await client.get("/healthz")).text == "ok\n"
    assert (await client.get("/openapi.json")).json() == openapi_document(CONTRACT)
    assert (await client.get(ATTENDANCE_URL)).status_code == 405


# --------------------------------------------------------------------------------------
# JSON mapping


@pytest.mark.parametrize("name", sorted(c.NOTIFICATION_TYPES))
def test_json_round_trip_gives_the_decoded_record(name: str) -> None:
    record = SAMPLES[name]()
    as_json = to_json(CONTRACT, name, record)
    assert json.loads(json.dumps(as_json)) == as_json  # plain JSON
    _, decoded = CONTRACT.decode(CONTRACT.encode(name, record))
    assert from_json(CONTRACT, name, as_json) == decoded


def test_json_timestamps_are_utc_milliseconds_and_defaults_are_filled() -> None:
    data = attendance_json()
    data["authored_at"] = "2025-03-10T10:30:00.1239+01:00"
    del data["child"]["given_name"], data["sharing"]["restrictions"]
    record = from_json(CONTRACT, c.ATTENDANCE_UPDATE, data)
    assert record["authored_at"] == dt.datetime(2025, 3, 10, 9, 30, 0, 123000, tzinfo=dt.UTC)
    assert record["child"]["given_name"] is None
    assert record["sharing"]["restrictions"] == []
    assert isinstance(record["notification_id"], uuid.UUID)
    assert record["attendance"]["period_start"] == dt.date(2026, 11, 2)


def test_json_conversion_error_names_the_schema_and_path() -> None:
    with pytest.raises(ContractError) as caught:
        from_json(CONTRACT, c.POLICE_NOTIFICATION, _police_json(occurred_at="20 Nov 22:15"))
    assert caught.value.path == "police.incident.occurred_at"
    assert caught.value.schema == c.POLICE_NOTIFICATION


def _police_json(**incident: Any) -> dict[str, Any]:
    data = to_json(CONTRACT, c.POLICE_NOTIFICATION, SAMPLES[c.POLICE_NOTIFICATION]())
    data["police"]["incident"].update(incident)
    return data


# --------------------------------------------------------------------------------------
# OpenAPI and JSON Schema


def test_openapi_document_is_valid_openapi_3_1() -> None:
    document = openapi_document(CONTRACT)
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    paths = {f"/v1/notifications/{short}" for short in c.SHORT_NAMES.values()}
    assert paths <= set(document["paths"])


def test_checked_in_openapi_document_is_the_generated_one() -> None:
    """docs/push-openapi.json is regenerated by `safeguard push openapi --out ...`."""
    checked_in = (REPO_ROOT / "docs" / "push-openapi.json").read_text(encoding="utf-8")
    assert checked_in == render(openapi_document(CONTRACT))


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("name", sorted(c.NOTIFICATION_TYPES))
def test_sample_json_validates_against_the_generated_schemas(name: str) -> None:
    sample = to_json(CONTRACT, name, SAMPLES[name]())
    _validator(json_schema(CONTRACT, name)).validate(sample)
    # and against the request body schema in the served OpenAPI document
    document = openapi_document(CONTRACT)
    body = document["paths"][f"/v1/notifications/{c.SHORT_NAMES[name]}"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:push", resource)
    validator = jsonschema.Draft202012Validator(
        {"$ref": "urn:push" + ref}, registry=registry, format_checker=jsonschema.FormatChecker()
    )
    validator.validate(sample)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("authored_at", "2025-03-10T09:30:00"),  # no timezone
        ("urgency", "WHENEVER"),
        ("notification_id", "not-a-uuid"),
        ("child.shoe_size", 3),
        ("attendance.period_start", "02/11/2026"),
    ],
)
def test_json_schema_refuses_what_the_endpoint_refuses(path: str, value: Any) -> None:
    data = _set(attendance_json(), path, value)
    assert not _validator(json_schema(CONTRACT, c.ATTENDANCE_UPDATE)).is_valid(data)
    with pytest.raises(ContractError):
        CONTRACT.check(c.ATTENDANCE_UPDATE, from_json(CONTRACT, c.ATTENDANCE_UPDATE, data))


def _properties(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The properties of the record a (possibly nullable, referenced) node stands for."""
    for branch in node.get("anyOf", [node]):
        if "$ref" in branch:
            return dict(schema["$defs"][branch["$ref"].rsplit("/", 1)[-1]]["properties"])
    return {}


@pytest.mark.parametrize("name", sorted(c.NOTIFICATION_TYPES))
def test_every_avro_field_appears_in_the_json_schema(name: str) -> None:
    schema = json_schema(CONTRACT, name)
    for path in CONTRACT.field_paths(name):
        node: dict[str, Any] = {"$ref": schema["$ref"]}
        for part in path.split("."):
            properties = _properties(schema, node)
            assert part in properties, f"{path} is missing from the JSON Schema of {name}"
            node = properties[part]
        assert node.get("description"), f"{path} has no description"


# --------------------------------------------------------------------------------------
# Tokens and the CLI


def test_token_file_keeps_only_a_hash_readable_by_its_owner(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    token = mint_token(path, SCHOOL)
    assert token.startswith("sgxp_")
    assert len(token) > 40
    assert token not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = PushTokens.load(path)
    assert tokens.agency_for(token) == SCHOOL
    assert tokens.agency_for(token + "x") is None
    assert PushTokens.load(path, frozenset({POLICE})).agency_for(token) is None


def test_revoke_removes_every_token_of_the_agency(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    first, second, police = (
        mint_token(path, SCHOOL),
        mint_token(path, SCHOOL),
        mint_token(path, POLICE),
    )
    assert revoke_tokens(path, SCHOOL) == 2
    tokens = PushTokens.load(path)
    assert tokens.agency_for(first) is None
    assert tokens.agency_for(second) is None
    assert tokens.agency_for(police) == POLICE


def test_malformed_token_file_is_a_config_error_naming_file_and_field(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "tokens": [{"agency": SCHOOL, "sha256": "abc"}]}))
    with pytest.raises(ConfigError, match=r"tokens\.json: tokens\.0\.sha256"):
        PushTokens.load(path)


def test_cli_mints_a_token_for_a_known_agency_only(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    runner = CliRunner()
    minted = runner.invoke(push, ["token", "--home", str(tmp_path), SCHOOL])
    assert minted.exit_code == 0, minted.output
    token = minted.stdout.strip()
    assert PushTokens.load(tokens_file(tmp_path)).agency_for(token) == SCHOOL

    unknown = runner.invoke(push, ["token", "--home", str(tmp_path), "school-nowhere"])
    assert unknown.exit_code == 2
    assert "no party 'school-nowhere'" in unknown.stderr
    gateway = runner.invoke(push, ["token", "--home", str(tmp_path), "gateway"])
    assert gateway.exit_code == 2
    assert "not an agency that pushes" in gateway.stderr


def test_cli_writes_the_openapi_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(push, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == openapi_document(CONTRACT)


def test_a_running_endpoint_sees_a_revocation_and_a_new_token_within_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producers.push_tokens as push_tokens

    clock = [1_000.0]
    monkeypatch.setattr("producers.push_tokens.time.monotonic", lambda: clock[0])
    path = tokens_file(tmp_path)
    first = mint_token(path, SCHOOL)
    tokens = PushTokens.load(path)  # as the endpoint loads them at start
    assert tokens.agency_for(first) == SCHOOL
    revoke_tokens(path, SCHOOL)
    second = mint_token(path, SCHOOL)
    assert tokens.agency_for(first) == SCHOOL, "read again at most once a second"
    clock[0] += push_tokens.RELOAD_EVERY_S + 0.01
    assert tokens.agency_for(first) is None, "revoked: refused without a restart"
    assert tokens.agency_for(second) == SCHOOL


def test_a_token_holds_its_scopes_and_expires(tmp_path: Path) -> None:
    path = tokens_file(tmp_path)
    sender = mint_token(path, SCHOOL)
    both = mint_token(path, SCHOOL, ("notifications", "consent"), days=1)
    tokens = PushTokens.load(path)
    assert tokens.agency_for(sender, "notifications") == SCHOOL
    assert tokens.agency_for(sender, "consent") is None, "a sender cannot grant consent"
    assert tokens.agency_for(both, "consent") == SCHOOL
    stored = json.loads(path.read_text())
    stored["tokens"][1]["expires_at"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(stored))
    assert PushTokens.load(path).agency_for(both, "notifications") is None, "expired"
    with pytest.raises(ConfigError, match="at least one day"):
        mint_token(path, SCHOOL, days=0)


async def test_answering_consent_needs_a_consent_token(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    """The consent routes refuse a token minted only to send notifications, as forbidden
    (it is a valid token), before anything is looked up."""
    answer = await client.get("/v1/consent-requests")
    assert_refused(answer, 403, recorder)
    assert "scopes do not include consent" in answer.text


@dataclasses.dataclass(frozen=True)
class SchoolEndpoint:
    http: httpx.AsyncClient
    tokens: dict[str, str]  # by caller, as push_callers mints them
    requests: list[str]  # the consent requests put to the school: open, answered
    checks: list[str]  # the information requests put to the school: open, answered


@contextlib.asynccontextmanager
async def school_endpoint(tmp_path: Path) -> AsyncIterator[SchoolEndpoint]:
    """The push endpoint serving the school in process, with its consent desk and its
    information requests (over an outbox whose broker client never starts), each holding
    one open request and one answered."""
    tokens = push_callers(tokens_file(tmp_path))
    async with (
        await OutboxStore.open(None, tmp_path / "outbox.db", owner=SCHOOL) as store,
        offline_outbox(tmp_path, store, SCHOOL) as outbox,
    ):
        book = ConsentRequests(store.engine)
        asked = [ConsentRequest.of(SCHOOL, request_record(), NOW) for _ in range(2)]
        await keep_requests(store.engine, book, *asked)
        await book.answer(outbox, asked[1].request_id, granted=False, answered_by="Ms Head")
        checks = InformationRequests(store.engine)
        checked = [information_request(SCHOOL) for _ in range(2)]
        await keep(store.engine, checks, *checked)
        await checks.answer(
            outbox, checked[1].request_id, outcome="CANNOT_MATCH", answered_by="Ms Head"
        )
        app = push_app(
            {SCHOOL: Recorder()},
            PushTokens.load(tokens_file(tmp_path)),
            consents={SCHOOL: ConsentDesk(book, outbox)},
            information={SCHOOL: InformationBoard(checks, outbox)},
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as http:
            yield SchoolEndpoint(
                http, tokens, [str(a.request_id) for a in asked],
                [str(r.request_id) for r in checked],
            )  # fmt: skip


async def test_listing_consent_requests_reads_open_as_true_or_false_only(
    tmp_path: Path,
) -> None:
    """``open=yes`` listed every request, as if it said false (found by fuzzing): now
    true or false (in any case), else 422 naming the parameter."""
    async with school_endpoint(tmp_path) as endpoint:
        headers = {"Authorization": f"Bearer {endpoint.tokens['consent_only']}"}
        listed = {}
        for sent in ("true", "TRUE", "false", None):
            params = {"open": sent} if sent else {}
            answer = await endpoint.http.get("/v1/consent-requests", params=params, headers=headers)
            assert answer.status_code == 200, answer.text
            listed[sent] = len(answer.json()["consent_requests"])
        assert listed == {"true": 1, "TRUE": 1, "false": 2, None: 2}
        for sent in ("yes", "1", ""):
            answer = await endpoint.http.get(f"/v1/consent-requests?open={sent}", headers=headers)
            assert answer.status_code == 422, (sent, answer.text)
            (error,) = answer.json()["errors"]
            assert error == {"path": "query.open", "message": "must be true or false"}


# --------------------------------------------------------------------------------------
# Who may do what: every route of the push app by every kind of caller

PUSH_CALLERS = ("no_token", "sender", "consent_only", "both", "other_agency", "revoked", "expired")


def _push_row(allowed: int, **others: int) -> dict[str, int]:
    """Callers holding the route's scope get ``allowed``; a token without it 403; none,
    revoked or expired 401; another agency's valid token 403 (not served here)."""
    return (
        {"no_token": 401, "revoked": 401, "expired": 401, "other_agency": 403}
        | others
        | {"both": allowed}
    )


PUSH_MATRIX: dict[tuple[str, str], dict[str, int]] = {
    # an empty record: 422 proves the token let it through, and nothing is accepted
    ("POST", "/v1/notifications/{type}"): _push_row(422, sender=422, consent_only=403),
    # no consent desk in this app: 404 once the token is let through
    ("GET", "/v1/consent-requests"): _push_row(404, sender=403, consent_only=404),
    ("POST", "/v1/consent-requests/{request_id}/answer"): _push_row(
        404, sender=403, consent_only=404
    ),
    # no referral board in this app: 404 once a sender's token is let through
    ("GET", "/v1/referrals/{referral_id}"): _push_row(404, sender=404, consent_only=403),
    ("GET", "/v1/referral-responses"): _push_row(404, sender=404, consent_only=403),
    # no information board in this app: 404 once an information token is let through
    ("GET", "/v1/information-requests"): _push_row(404, sender=403, consent_only=403),
    ("POST", "/v1/information-requests/{request_id}/answer"): _push_row(
        404, sender=403, consent_only=403
    ),
    ("GET", "/openapi.json"): dict.fromkeys(PUSH_CALLERS, 200),
    ("GET", "/healthz"): dict.fromkeys(PUSH_CALLERS, 200),
}


def push_callers(path: Path) -> dict[str, str]:
    """A token in ``path`` for each caller of :data:`PUSH_CALLERS` that has one (the
    school's unless it says otherwise); the police's is revoked, the last one expired."""
    tokens = {
        "sender": mint_token(path, SCHOOL),
        "consent_only": mint_token(path, SCHOOL, ("consent",)),
        "both": mint_token(path, SCHOOL, SCOPES),  # every scope
        "other_agency": mint_token(path, HEALTH, ("notifications", "consent")),
        "revoked": mint_token(path, POLICE, ("notifications", "consent")),
        "expired": mint_token(path, SCHOOL, ("notifications", "consent")),
    }
    revoke_tokens(path, POLICE)
    stored = json.loads(path.read_text())
    stored["tokens"][-1]["expires_at"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(stored))
    return tokens


async def test_every_push_route_answers_every_kind_of_caller_as_the_matrix_says(
    tmp_path: Path, recorder: Recorder
) -> None:
    path = tokens_file(tmp_path)
    tokens = push_callers(path)
    app = push_app({SCHOOL: recorder}, PushTokens.load(path))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert set(PUSH_MATRIX) == served, "a route without a row, or a row without a route"
    ids = {
        "type": "attendance_update",
        "request_id": str(uuid.uuid4()),
        "referral_id": str(uuid.uuid4()),
    }
    paths = openapi_document(CONTRACT)["paths"]
    for (method, template), row in PUSH_MATRIX.items():  # every answer is documented
        documented = paths[template.replace("{type}", ids["type"])][method.lower()]
        assert {str(s) for s in row.values()} <= set(documented["responses"]), template
    wrong = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://push.test") as http:
        for (method, template), row in PUSH_MATRIX.items():
            assert set(row) == set(PUSH_CALLERS), template
            for caller, expected in row.items():
                token = tokens.get(caller)
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                body: dict[str, Any] | None = {} if method == "POST" else None
                answer = await http.request(
                    method, template.format(**ids), headers=headers, json=body
                )
                if answer.status_code != expected:
                    wrong.append(f"{method} {template} as {caller}: {answer.status_code}")
    assert not wrong, "\n".join(wrong)
    assert recorder.accepted == []
