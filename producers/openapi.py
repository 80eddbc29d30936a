"""The push endpoint's OpenAPI 3.1 document, derived from the Avro schemas in ``schemas/``.

Each notification type's request body is a JSON Schema (2020-12, the dialect of OpenAPI
3.1) generated from its Avro schema at start-up, so the document cannot drift from the
contract; ``docs/push-openapi.json`` is the same document written out (``safeguard push
openapi``), and a test fails when the checked-in copy differs.

The JSON mapping of Avro (shared with :mod:`producers.push`, which converts requests):

=====================  ===============================================================
Avro                   JSON
=====================  ===============================================================
record                 object; fields with an Avro default may be left out; no other keys
enum                   string: one of the symbols
``["null", T]``        T's JSON value, or ``null`` (never Avro's tagged ``{"T": ...}`` form)
array, map             array, object
string, boolean        string, boolean
int, long              integer (int within 32 bits)
float, double          number
string/uuid            string, ``format: uuid`` (8-4-4-4-12 hexadecimal)
long/timestamp-millis  string, ``format: date-time``: ISO-8601/RFC 3339 with a timezone
int/date               string, ``format: date``: ``YYYY-MM-DD``
bytes, fixed           not mapped: no notification carries them (generation fails)
=====================  ===============================================================

Named types (records, enums) become shared components under their short name, so
``Author`` or ``Child`` is described once for all three notification types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from producers.openapi_information import INFORMATION_COMPONENTS, OPEN_ONLY, information_paths
from producers.openapi_referrals import REFERRAL_COMPONENTS, referral_paths
from sgx.errors import ConfigError, ContractError
from sgx.wire import contract as c
from sgx.wire.contract import Contract

__all__ = [
    "COMPONENTS",
    "JSON_SCHEMA_DIALECT",
    "NOTIFICATIONS_PATH",
    "json_schema",
    "openapi_document",
    "render",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMPONENTS = "#/components/schemas/"
NOTIFICATIONS_PATH = "/v1/notifications"
CONSENT_PATH = "/v1/consent-requests"
API_VERSION = "1.0.0"

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": _INT32,
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "string": {"type": "string"},
}
_LOGICAL: dict[tuple[str, str], dict[str, Any]] = {
    ("string", "uuid"): {"type": "string", "format": "uuid"},
    ("long", "timestamp-millis"): {
        "type": "string",
        "format": "date-time",
        "description": "ISO-8601 with a timezone, e.g. 2025-03-10T09:30:00Z",
    },
    ("int", "date"): {"type": "string", "format": "date"},
}


def short_name(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


class _Generator:
    """Turns fastavro-parsed schemas into JSON Schemas; named types go to ``defs`` once."""

    def __init__(self, ref_prefix: str) -> None:
        self.ref_prefix = ref_prefix
        self.defs: dict[str, dict[str, Any]] = {}
        self._full: dict[str, str] = {}  # short name -> full name, to refuse a clash
        self._schema = ""
        self._named: Mapping[str, Any] = {}

    def notification(self, contract: Contract, name: str) -> dict[str, Any]:
        """A ``$ref`` to the JSON Schema of notification type ``name`` (added to ``defs``)."""
        parsed = contract.parsed(name)
        self._schema, self._named = name, parsed.get("__named_schemas", {})
        return self._node(parsed, "$")

    def _node(self, schema: Any, path: str) -> dict[str, Any]:
        if isinstance(schema, list):
            return self._union(schema, path)
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return dict(_PRIMITIVES[schema])
            if schema == "bytes":
                raise self._unmapped(path, "bytes")
            return self._named_type(self._named[schema], path)
        kind = schema["type"]
        if "logicalType" in schema:
            return self._logical(schema, path)
        if kind in ("record", "error", "enum", "fixed"):
            return self._named_type(schema, path)
        if kind == "array":
            return {"type": "array", "items": self._node(schema["items"], path + "[]")}
        if kind == "map":
            return {"type": "object", "additionalProperties": self._node(schema["values"], path)}
        return self._node(kind, path)

    def _logical(self, schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        mapped = _LOGICAL.get((schema["type"], schema["logicalType"]))
        if mapped is None:
            raise self._unmapped(path, f"logical type {schema['logicalType']}")
        return dict(mapped)

    def _union(self, branches: list[Any], path: str) -> dict[str, Any]:
        typed = [branch for branch in branches if branch != "null"]
        if len(typed) != 1:
            raise self._unmapped(path, "a union of several non-null types")
        node = self._node(typed[0], path)
        if len(branches) == 1:
            return node
        return {"anyOf": [node, {"type": "null"}]}

    def _named_type(self, schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        full, short = schema["name"], short_name(schema["name"])
        known = self._full.setdefault(short, full)
        if known != full:
            raise ConfigError(f"schemas {known} and {full} share the short name {short}")
        if short not in self.defs:
            self.defs[short] = {}  # placeholder first: a recursive reference resolves to it
            self.defs[short] = self._define(schema, path)
        return {"$ref": self.ref_prefix + short}

    def _define(self, schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        kind = schema["type"]
        described = {"title": short_name(schema["name"])}
        if schema.get("doc"):
            described["description"] = schema["doc"]
        if kind == "enum":
            return {**described, "type": "string", "enum": list(schema["symbols"])}
        if kind == "fixed":
            raise self._unmapped(path, "fixed")
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in schema["fields"]:
            field_path = field["name"] if path == "$" else f"{path}.{field['name']}"
            node = self._node(field["type"], field_path)
            if field.get("doc"):
                node["description"] = field["doc"]
            if "default" in field:
                node["default"] = field["default"]
            else:
                required.append(field["name"])
            properties[field["name"]] = node
        return {
            **described,
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def _unmapped(self, path: str, what: str) -> ContractError:
        return ContractError(path, f"{what} has no JSON mapping", schema=self._schema)


def json_schema(contract: Contract, name: str) -> dict[str, Any]:
    """A standalone JSON Schema (2020-12) for notification type ``name`` (its full name)."""
    generator = _Generator("#/$defs/")
    root = generator.notification(contract, name)
    return {"$schema": JSON_SCHEMA_DIALECT, **root, "$defs": generator.defs}


def _error_response(description: str, **extra: Any) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": COMPONENTS + "Errors"}}}
    return {"description": description, "content": content, **extra}


_UNAUTHORISED = _error_response(
    "no bearer token, or not a valid one",
    headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
)
_ERRORS = {
    "400": _error_response("the body is not valid JSON"),
    "401": _UNAUTHORISED,
    "403": _error_response("author.agency_id is not the authenticated agency"),
    "413": _error_response("the body is larger than the endpoint accepts"),
    "415": _error_response("the body is not application/json"),
    "422": _error_response(
        "the record breaks the contract: each error names the field path "
        "(dotted, [i] for array items; $ for the whole record)"
    ),
    "503": _error_response(
        "the exchange cannot take the notification now; retry after Retry-After seconds",
        headers={"Retry-After": {"schema": {"type": "integer"}}},
    ),
}

_SHARED_COMPONENTS: dict[str, Any] = {
    "NotificationAccepted": {
        "type": "object",
        "properties": {"notification_id": {"type": "string", "format": "uuid"}},
        "required": ["notification_id"],
        "additionalProperties": False,
    },
    "Errors": {
        "type": "object",
        "properties": {
            "errors": {"type": "array", "minItems": 1, "items": {"$ref": COMPONENTS + "Error"}}
        },
        "required": ["errors"],
    },
    "Error": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "the field: dotted, [i] for array items"},
            "message": {"type": "string", "description": "what is wrong; never the value sent"},
        },
        "required": ["message"],
    },
}


def _push_operation(full_name: str, request: dict[str, Any]) -> dict[str, Any]:
    short = c.SHORT_NAMES[full_name]
    accepted = {"application/json": {"schema": {"$ref": COMPONENTS + "NotificationAccepted"}}}
    return {
        "post": {
            "operationId": "push_" + short,
            "summary": f"Push one {short_name(full_name)} notification",
            "description": (
                "Validates the record and hands it to the exchange. notification_id is the "
                "sender's: a retry with the same id names the same notification."
            ),
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "202": {"description": "accepted for delivery", "content": accepted},
                **_ERRORS,
            },
        }
    }


_TEXT = {"type": "string", "minLength": 1}
_MAYBE_TEXT = {"type": ["string", "null"], "minLength": 1}
_CATEGORY = {
    "type": "string",
    "enum": ["LA_SOCIAL_CARE", "PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS"],
}
_WHEN = {"type": "string", "format": "date-time"}
_CONSENT_COMPONENTS: dict[str, Any] = {
    "ConsentRequest": {
        "type": "object",
        "description": "A local authority asks this agency, as the item's author, for "
        "consent to one onward share: that recipient category, that purpose.",
        "properties": {
            "request_id": {"type": "string", "format": "uuid"},
            "notification_id": {
                "type": "string",
                "format": "uuid",
                "description": "the item: this agency's own notification id",
            },
            "local_authority": _TEXT,
            "requested_by": _TEXT,
            "category": _CATEGORY,
            "purpose": _TEXT,
            "blocking": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the restrictions the share would break without consent",
            },
            "requested_at": _WHEN,
            "answer": {"type": ["string", "null"], "enum": ["GRANTED", "REFUSED", None]},
            "answered_by": {"type": ["string", "null"]},
            "court_order": {"type": ["string", "null"]},
            "answered_at": {"type": ["string", "null"], "format": "date-time"},
        },
        "required": ["request_id", "notification_id", "local_authority", "category", "purpose"],
    },
    "ConsentRequests": {
        "type": "object",
        "properties": {
            "consent_requests": {"type": "array", "items": {"$ref": COMPONENTS + "ConsentRequest"}}
        },
        "required": ["consent_requests"],
    },
    "ConsentAnswer": {
        "type": "object",
        "properties": {
            "granted": {"type": "boolean"},
            "answered_by": {**_TEXT, "description": "who decides (name and role)"},
            "reason": {**_MAYBE_TEXT, "description": "why, or the grant's conditions"},
            "court_order": {
                **_MAYBE_TEXT,
                "description": "the court order directing disclosure (court, case number, "
                "date): required to grant police material confidential to the proceedings "
                "to parents or other agencies",
            },
        },
        "required": ["granted", "answered_by"],
        "additionalProperties": False,
    },
}


def _consent_paths() -> dict[str, Any]:
    def body(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": COMPONENTS + name}}}

    missing = {"description": "no such consent request put to this agency",
               "content": body("Errors")}  # fmt: skip
    return {
        CONSENT_PATH: {
            "get": {
                "operationId": "list_consent_requests",
                "summary": "The consent requests put to the token's agency as author",
                "parameters": [OPEN_ONLY],
                "responses": {
                    "200": {
                        "description": "the requests, oldest first",
                        "content": body("ConsentRequests"),
                    },
                    "404": {
                        "description": "this endpoint keeps no consent requests for the "
                        "token's agency",
                        "content": body("Errors"),
                    },
                    "422": _error_response("open is neither true nor false"),
                    **{k: v for k, v in _ERRORS.items() if k in ("401", "403", "503")},
                },
            }
        },
        CONSENT_PATH + "/{request_id}/answer": {
            "post": {
                "operationId": "answer_consent_request",
                "summary": "Grant or refuse one consent request (the first answer stands)",
                "description": (
                    "The answer is kept in the agency's outbox, signed by the agency and "
                    "sent to the gateway, which passes it to the asking local authority. "
                    "A grant covers exactly the request's recipient category and purpose."
                ),
                "parameters": [
                    {
                        "name": "request_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "requestBody": {"required": True, "content": body("ConsentAnswer")},
                "responses": {
                    "202": {"description": "answered", "content": body("ConsentRequest")},
                    "404": missing,
                    "409": {
                        "description": "answered already: the first answer stands",
                        "content": body("Errors"),
                    },
                    **_ERRORS,
                },
            }
        },
    }


def _plain_get(operation_id: str, description: str, media_type: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "security": [],
            "responses": {"200": {"description": description, "content": {media_type: {}}}},
        }
    }


def openapi_document(contract: Contract) -> dict[str, Any]:
    """The push endpoint's OpenAPI 3.1 document, its request schemas derived from ``contract``."""
    generator = _Generator(COMPONENTS)
    paths: dict[str, Any] = {}
    for full_name in sorted(c.NOTIFICATION_TYPES, key=c.SHORT_NAMES.__getitem__):
        request = generator.notification(contract, full_name)
        paths[f"{NOTIFICATIONS_PATH}/{c.SHORT_NAMES[full_name]}"] = _push_operation(
            full_name, request
        )
    paths.update(_consent_paths())
    paths.update(referral_paths(_ERRORS))
    paths.update(information_paths(_ERRORS))
    paths["/healthz"] = _plain_get("healthz", "the endpoint is up", "text/plain")
    paths["/openapi.json"] = _plain_get("openapi", "this document", "application/json")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Safeguarding Exchange push endpoint",
            "version": API_VERSION,
            "description": (
                "Agency systems POST notifications as JSON, authenticated by a per-agency "
                "bearer token. Request schemas are generated from the exchange's Avro "
                "contract: uuid and dates as strings, timestamps as ISO-8601 with a "
                "timezone, enums as their symbol, optional values as the plain value or null."
            ),
        },
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "security": [{"agencyToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "agencyToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token minted for one agency with `safeguard push token`",
                }
            },
            "schemas": {
                **dict(sorted(generator.defs.items())),
                **_SHARED_COMPONENTS,
                **_CONSENT_COMPONENTS,
                **REFERRAL_COMPONENTS,
                **INFORMATION_COMPONENTS,
            },
        },
    }


def render(document: Mapping[str, Any]) -> str:
    """The document as it is written to ``docs/push-openapi.json``."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
