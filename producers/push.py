"""The push endpoint: agency systems POST notifications as JSON over HTTP.

The author's side of consent (``/v1/consent-requests``) is :mod:`producers.push_consent`;
what LAs said of the agency's referrals (``/v1/referrals``) :mod:`producers.push_referrals`;
the MASH information requests put to the agency, and its answers
(``/v1/information-requests``), :mod:`producers.push_information`.

``POST /v1/notifications/{type}`` (``attendance_update``, ``health_update``,
``police_notification``) with a per-agency bearer token and a JSON body in the mapping of
:mod:`producers.openapi` (whose document is served at ``GET /openapi.json``). The endpoint
converts the JSON to the record shape of :mod:`sgx.wire.contract`, checks that the author is
the authenticated agency, and hands the record to that agency's ``accept`` callable,
which validates it (a :class:`sgx.errors.ContractError` names the field) and stores it
durably (the outbox; until it is wired, :meth:`producers.publisher.Publisher.publish`).

==========  =========================================================================
status      when
==========  =========================================================================
202         accepted: ``{"notification_id": ...}``
400         the body is not JSON (or repeats a key, or holds NaN)
401         no ``Authorization: Bearer`` token, or one that is not valid
403         ``author.agency_id`` is not the authenticated agency (or it is not served)
404         unknown notification type
413         the body is over ``max_body_bytes`` (256 KiB by default)
415         the body is not ``application/json``
422         the record breaks the contract: ``{"errors": [{"path", "message"}]}``
503         ``accept`` failed with a retriable error (broker or store down): retry
500         ``accept`` failed with another exchange error (logged by type only)
==========  =========================================================================

Every error body is ``{"errors": [{"path"?, "message"}]}``. No error repeats a value
that was sent: messages describe strings by length, quoted values are replaced and a
key that is not a field name is not echoed, so a response or the sender's log of it
never carries a child's name or identifier.

Design choices:

* **starlette, not FastAPI.** The request model is the Avro contract, not pydantic
  classes, so FastAPI's model-driven validation and OpenAPI would duplicate (and could
  drift from) the schemas; a starlette app (already used for ``/metrics``) with an OpenAPI
  document generated from the Avro schemas keeps one source of truth.
* **Tokens** (:mod:`producers.push_tokens`): per agency, only their SHA-256 stored; read
  when the service starts.
* **Identity of the record.** ``notification_id`` is the sender's (required by the
  contract), so a retried POST names the same notification and the queue keeps one row.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from producers.consent_requests import ConsentDesk
from producers.feeds import Submit
from producers.openapi import NOTIFICATIONS_PATH, openapi_document
from producers.push_consent import CONSENT_PATH, ConsentRoutes
from producers.push_information import INFORMATION_PATH, InformationBoard, InformationRoutes
from producers.push_referrals import REFERRALS_PATH, RESPONSES_PATH, ReferralBoard, ReferralRoutes
from producers.push_tokens import PushTokens, Scope
from sgx.errors import AlreadyAnswered, ContractError, ExchangeError, NotFound
from sgx.wire import contract as c
from sgx.wire.contract import Contract, default_contract

__all__ = [
    "MAX_BODY_BYTES",
    "Accept",
    "from_json",
    "push_app",
    "to_json",
]

log = logging.getLogger(__name__)

Accept = Submit  # the agency's outbox add: validates, keeps durably, returns the id
MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_S = 5

# --------------------------------------------------------------------------------------
# JSON mapping of the Avro contract (the table in producers.openapi)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TIMESTAMP_FORM = "an ISO-8601 timestamp with a timezone, e.g. 2025-03-10T09:30:00Z"

Convert = Callable[[Any, str], Any]


def _got(value: Any) -> str:
    """What was sent, without repeating it."""
    if value is None:
        return "got null"
    if isinstance(value, str):
        return f"got a string of {len(value)} characters"
    if isinstance(value, bool):
        return "got a boolean"
    if isinstance(value, int | float):
        return "got a number"
    return "got an object" if isinstance(value, Mapping) else "got an array"


def _uuid_from(value: Any, path: str) -> uuid.UUID:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ContractError(path, f"is not a UUID (8-4-4-4-12 hexadecimal), {_got(value)}")
    return uuid.UUID(value)


def _timestamp_from(value: Any, path: str) -> dt.datetime:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ContractError(path, f"is not {_TIMESTAMP_FORM}; {_got(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value.upper())
    except ValueError:
        raise ContractError(path, f"is not a valid date and time ({_TIMESTAMP_FORM})") from None
    try:
        utc = parsed.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise ContractError(
            path, "is out of range: in UTC it falls before year 1 or after 9999"
        ) from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)  # Avro keeps milliseconds


def _date_from(value: Any, path: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ContractError(path, f"is not an ISO-8601 date (YYYY-MM-DD), {_got(value)}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ContractError(path, "is not a valid date (YYYY-MM-DD)") from None


def _uuid_to(value: Any, path: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(_uuid_from(value, path))


def _timestamp_to(value: Any, path: str) -> str:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ContractError(path, f"expected a timezone-aware datetime, {_got(value)}")
    text = value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _date_to(value: Any, path: str) -> str:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ContractError(path, f"expected a date, {_got(value)}")
    return value.isoformat()


_FROM_JSON: dict[str, Convert] = {
    "uuid": _uuid_from,
    "timestamp-millis": _timestamp_from,
    "date": _date_from,
}
_TO_JSON: dict[str, Convert] = {
    "uuid": _uuid_to,
    "timestamp-millis": _timestamp_to,
    "date": _date_to,
}


def _field(path: str, name: str) -> str:
    return name if path == "$" else f"{path}.{name}"


class _Walk:
    """Walks a value along a fastavro-parsed schema, converting its logical-type values.

    Structure (types, required fields, enum symbols) is left to the contract's checker;
    this only maps representations, fills Avro defaults and refuses unknown keys (without
    echoing a key that is not a field name).
    """

    def __init__(self, named: Mapping[str, Any], logical: Mapping[str, Convert]) -> None:
        self._named = named
        self._logical = logical

    def value(self, schema: Any, value: Any, path: str) -> Any:
        if isinstance(schema, str):
            named = self._named.get(schema)
            return value if named is None else self.value(named, value, path)
        if isinstance(schema, list):
            typed = [branch for branch in schema if branch != "null"]
            if value is None or len(typed) != 1:
                return value
            return self.value(typed[0], value, path)
        convert = self._logical.get(schema.get("logicalType", ""))
        if convert is not None:
            return convert(value, path)
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema, value, path)
        if kind == "array" and isinstance(value, list):
            items = schema["items"]
            return [self.value(items, item, f"{path}[{i}]") for i, item in enumerate(value)]
        if kind == "map" and isinstance(value, Mapping):
            return {key: self.value(schema["values"], item, path) for key, item in value.items()}
        return value

    def _record(self, schema: Mapping[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return value  # the checker says what was expected
        out: dict[str, Any] = {}
        for field in schema["fields"]:
            name = field["name"]
            if name in value:
                out[name] = self.value(field["type"], value[name], _field(path, name))
            elif "default" in field:
                out[name] = copy.deepcopy(field["default"])
        for key in value:
            if key not in out:
                shown = key if isinstance(key, str) and _FIELD_NAME.fullmatch(key) else "(key)"
                what = c.SHORT_NAMES.get(schema["name"], schema["name"].rsplit(".", 1)[-1])
                raise ContractError(_field(path, shown), f"is not a field of {what}")
        return out


def from_json(contract: Contract, name: str, data: Any) -> dict[str, Any]:
    """The record of notification type ``name`` that the JSON value ``data`` stands for.

    Timestamps become UTC datetimes (milliseconds), dates ``datetime.date``, UUIDs
    ``uuid.UUID``; missing fields with an Avro default get it. Raises ContractError
    (schema ``name``) for a value of the wrong form or an unknown key. The result still
    needs the contract's check.
    """
    if not isinstance(data, Mapping):
        raise ContractError("$", f"expected a JSON object, {_got(data)}", schema=name)
    parsed = contract.parsed(name)
    try:
        record: dict[str, Any] = _Walk(parsed.get("__named_schemas", {}), _FROM_JSON).value(
            parsed, data, "$"
        )
    except ContractError as exc:
        raise ContractError(exc.path, exc.problem, schema=name) from None
    return record


def to_json(contract: Contract, name: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON value of a record of type ``name`` (the inverse of :func:`from_json`)."""
    parsed = contract.parsed(name)
    walked: dict[str, Any] = _Walk(parsed.get("__named_schemas", {}), _TO_JSON).value(
        parsed, record, "$"
    )
    return walked


# --------------------------------------------------------------------------------------
# The HTTP service

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_CHALLENGE = 'Bearer realm="safeguarding-exchange"'


def _public(text: str) -> str:
    """A problem or path with any quoted value replaced, so no sent value is repeated."""
    return _QUOTED.sub("the value", text)


def _errors(status: int, errors: list[dict[str, str]], **headers: str) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers or None)


def _refuse(status: int, message: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    return HTTPException(status, message, dict(headers) if headers else None)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object repeats a key")
    return out


def _no_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


class _PushService:
    def __init__(
        self, accepts: Mapping[str, Accept], tokens: PushTokens, contract: Contract, limit: int
    ) -> None:
        self._accepts = dict(accepts)
        self._tokens = tokens
        self._contract = contract
        self._limit = limit
        self._document = openapi_document(contract)

    async def push(self, request: Request) -> Response:
        agency = self.authenticate(request)
        name = c.FULL_NAMES.get(request.path_params["type"])
        if name is None:
            raise _refuse(404, "unknown notification type; see /openapi.json")
        data = await self.read_json(request)
        if not isinstance(data, dict):
            raise ContractError("$", f"expected a JSON object, {_got(data)}", schema=name)
        author = data.get("author")
        claimed = author.get("agency_id") if isinstance(author, dict) else None
        if isinstance(claimed, str) and claimed != agency:
            raise _refuse(403, "author.agency_id is not the agency this token belongs to")
        notification_id = await self._accepts[agency](name, from_json(self._contract, name, data))
        log.info("accepted %s %s from %s", c.SHORT_NAMES[name], notification_id, agency)
        return JSONResponse({"notification_id": str(notification_id)}, status_code=202)

    async def read_json(self, request: Request) -> Any:
        """The request's JSON body: 415 if it is not JSON, 413 if too large, 400 if broken."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise _refuse(415, "the body must be application/json")
        return self._parse(await self._body(request))

    def authenticate(self, request: Request, scope: Scope = "notifications") -> str:
        """The agency the bearer token belongs to (401 without a valid, unexpired one; 403
        if it lacks ``scope`` or this endpoint does not serve its agency)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refuse(401, "a bearer token is required", {"WWW-Authenticate": _CHALLENGE})
        agency = self._tokens.agency_for(token.strip(), scope)
        if agency is None and self._tokens.holder(token.strip()) is not None:
            raise _refuse(403, f"this token's scopes do not include {scope}")
        if agency is None:
            challenge = _CHALLENGE + ', error="invalid_token"'
            raise _refuse(
                401, "the bearer token is not valid (unknown, revoked or expired)",
                {"WWW-Authenticate": challenge},
            )  # fmt: skip
        if agency not in self._accepts:
            raise _refuse(403, "this endpoint does not serve the token's agency")
        return agency

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        too_large = _refuse(413, f"the body must be at most {self._limit} bytes")
        if declared.isdigit() and int(declared) > self._limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._limit:
                raise too_large
        return bytes(body)

    @staticmethod
    def _parse(body: bytes) -> Any:
        try:
            return json.loads(
                body, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
            )
        except json.JSONDecodeError as exc:
            problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        except UnicodeDecodeError:
            problem = "it is not UTF-8"
        except RecursionError:
            problem = "it is nested too deeply"
        except ValueError as exc:  # ours: a repeated key, NaN or Infinity
            problem = str(exc)
        raise _refuse(400, f"the body is not valid JSON: {problem}")

    async def openapi(self, _: Request) -> Response:
        return JSONResponse(self._document)


async def _healthz(_: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _errors(exc.status_code, [{"message": exc.detail}], **(exc.headers or {}))


async def _contract_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ContractError)
    path = _public(exc.path)
    log.info("refused %s: field %s", request.url.path, path)
    return _errors(422, [{"path": path, "message": _public(exc.problem)}])


async def _exchange_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ExchangeError)
    log.warning("could not accept %s: %s", request.url.path, type(exc).__name__)
    if exc.retriable:
        message = "the exchange cannot take notifications now; retry later"
        return _errors(503, [{"message": message}], **{"Retry-After": str(RETRY_AFTER_S)})
    return _errors(500, [{"message": "the notification could not be accepted"}])


async def _not_found(_: Request, exc: Exception) -> Response:
    return _errors(404, [{"message": str(exc)}])


async def _already_answered(_: Request, exc: Exception) -> Response:
    return _errors(409, [{"message": str(exc)}])


def push_app(
    accepts: Mapping[str, Accept],
    tokens: PushTokens,
    *,
    contract: Contract | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    consents: Mapping[str, ConsentDesk] | None = None,
    referrals: Mapping[str, ReferralBoard] | None = None,
    information: Mapping[str, InformationBoard] | None = None,
) -> Starlette:
    """The push endpoint's ASGI app.

    ``accepts`` maps each served agency id to its ``accept(full type name, record)``,
    which validates the record (ContractError → 422), stores it durably and returns the
    notification id. ``consents`` maps agencies to their consent desks, served under
    ``/v1/consent-requests`` (:mod:`producers.push_consent`); ``referrals`` maps them to
    what the LAs said of their referrals, under ``/v1/referrals`` and
    ``/v1/referral-responses`` (:mod:`producers.push_referrals`); ``information`` to
    the information requests put to them, under ``/v1/information-requests``
    (:mod:`producers.push_information`).
    """
    service = _PushService(accepts, tokens, contract or default_contract(), max_body_bytes)
    desks = ConsentRoutes(
        consents or {},
        functools.partial(service.authenticate, scope="consent"),
        service.read_json,
    )
    boards = ReferralRoutes(referrals or {}, service.authenticate)
    checks = InformationRoutes(
        information or {},
        functools.partial(service.authenticate, scope="information"),
        service.read_json,
    )
    return Starlette(
        routes=[
            Route(NOTIFICATIONS_PATH + "/{type}", service.push, methods=["POST"]),
            Route(CONSENT_PATH, desks.list, methods=["GET"]),
            Route(CONSENT_PATH + "/{request_id}/answer", desks.answer, methods=["POST"]),
            Route(REFERRALS_PATH + "/{referral_id}", boards.referral, methods=["GET"]),
            Route(RESPONSES_PATH, boards.responses, methods=["GET"]),
            Route(INFORMATION_PATH, checks.list, methods=["GET"]),
            Route(INFORMATION_PATH + "/{request_id}/answer", checks.answer, methods=["POST"]),
            Route("/openapi.json", service.openapi, methods=["GET"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ],
        exception_handlers={
            HTTPException: _http_error,
            ContractError: _contract_error,
            NotFound: _not_found,
            AlreadyAnswered: _already_answered,
            ExchangeError: _exchange_error,
        },
    )
