"""The case-management API's OpenAPI 3.1 document, generated from the API's pydantic models
(:mod:`consumers.inbox.api_models`) and the route table below, so it cannot drift from the
code: ``docs/inbox-openapi.json`` is this document written out (``safeguard inbox
openapi``), a test fails when the checked-in copy differs, and another when the app serves
an API route this table does not describe."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from consumers.inbox.api_models import MODELS
from consumers.inbox.views import LARGEST_ID

REF = "#/components/schemas/{model}"
API_VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_ERRORS = {
    "401": _json("Errors", "no valid token"),
    "403": _json("Errors", "the token's scope does not allow this"),
}
_ID = {"type": "integer", "minimum": 1, "maximum": LARGEST_ID}
_ITEM = {
    "name": "item_id",
    "in": "path",
    "required": True,
    "schema": _ID,
    "description": "a queue item id",
}

_SHARE = {
    "name": "share_id",
    "in": "path",
    "required": True,
    "schema": _ID,
}


def _op(summary: str, scope: str, ok: dict[str, Any], **extra: Any) -> dict[str, Any]:
    responses = {**ok, **_ERRORS}
    if "parameters" in extra and extra["parameters"][0]["in"] == "path":
        responses["404"] = _json("Errors", "no such item in a queue the caller may see")
    return {
        "summary": summary,
        "security": [{"apiToken": []}, {"clientCredentials": [scope]}],
        "responses": responses,
        **extra,
    }


# (path, method): operation — the app's API routes are checked against these keys.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/deliveries", "get"): _op(
        "Deliveries the caller may see, after a cursor, in commit order",
        "deliveries:read",
        {
            "200": _json("DeliveryPage", "a page; pass next_cursor as after next time"),
            "422": _json("Errors", "after or limit is out of range (path names which)"),
        },
        parameters=[
            {
                "name": "after",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0, "maximum": LARGEST_ID},
                "description": "the cursor: list the items after this one (0: from the first)",
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
            },
        ],
    ),
    ("/api/v1/deliveries/{item_id}", "get"): _op(
        "One delivery, opened (the read is audited)",
        "deliveries:read",
        {"200": _json("Delivery", "the delivery")},
        parameters=[_ITEM],
    ),
    ("/api/v1/deliveries/{item_id}/ack", "post"): _op(
        "Acknowledge a delivery (acknowledging twice keeps the first)",
        "deliveries:ack",
        {"200": _json("AckOut", "acknowledged")},
        parameters=[_ITEM],
    ),
    ("/api/v1/deliveries/{item_id}/shares", "post"): _op(
        "Ask the exchange for an onward share; the answer names any restriction it breaks",
        "shares:write",
        {
            "201": _json("ShareOut", "recorded, with the exchange's answer (or pending)"),
            "400": _json("Errors", "the body is not JSON"),
            "413": _json("Errors", "the body is larger than the inbox reads"),
            "422": _json("Errors", "the body breaks its schema (path names the field)"),
        },
        parameters=[_ITEM],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": _ref("ShareIn")}},
        },
    ),
    ("/api/v1/shares/{share_id}", "get"): _op(
        "An onward share and the exchange's decision",
        "shares:write",
        {"200": _json("ShareOut", "the share"), "404": _json("Errors", "no such share")},
        parameters=[_SHARE],
    ),
    ("/api/v1/shares/{share_id}/consent", "post"): _op(
        "Ask the author of a share the exchange refused for a restriction for consent to "
        "it (that recipient category and purpose); the author answers later",
        "shares:write",
        {
            "201": _json("ConsentOut", "recorded, with the exchange's first word (or sending)"),
            "404": _json("Errors", "no such share of an item the caller may see"),
            "409": _json("Errors", "asked already: the answer is awaited, or it was granted"),
            "422": _json("Errors", "the share was not refused for a restriction"),
        },
        parameters=[_SHARE],
    ),
    ("/api/v1/consents/{consent_id}", "get"): _op(
        "A consent asked of an author, and where it stands (the answer, once given)",
        "shares:write",
        {"200": _json("ConsentOut", "the consent request")},
        parameters=[
            {
                "name": "consent_id",
                "in": "path",
                "required": True,
                "schema": _ID,
            }
        ],
    ),
    ("/api/v1/deliveries/{item_id}/referral", "get"): _op(
        "A referral's deadlines for this LA (acknowledge, decide: working days under the "
        "agreement) and what the LA has told the referrer (the read is audited)",
        "deliveries:read",
        {"200": _json("ReferralOut", "the referral's state")},
        parameters=[_ITEM],
    ),
    ("/api/v1/deliveries/{item_id}/referral/responses", "post"): _op(
        "Acknowledge a referral, or record the decision on it (no further action, advice, "
        "early help, s.17, s.47, immediate protection): signed by the LA and told to the "
        "referring agency only",
        "referrals:respond",
        {
            "201": _json("ResponseOut", "recorded and sent (or kept, to be sent again)"),
            "400": _json("Errors", "the body is not JSON"),
            "409": _json("Errors", "the referral was acknowledged already"),
            "413": _json("Errors", "the body is larger than the inbox reads"),
            "422": _json(
                "Errors",
                "the body breaks its schema, or the item is not a referral (path names it)",
            ),
        },
        parameters=[_ITEM],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": _ref("ResponseIn")}},
        },
    ),
    ("/api/v1/deliveries/{item_id}/sharing-record", "get"): _op(
        "What the LA received about this item's child, and what it shared onward",
        "sharing-record:read",
        {"200": _json("SharingRecord", "the child's sharing record")},
        parameters=[_ITEM],
    ),
    # -- families informed (consumers/inbox/family_api.py)
    ("/api/v1/shares/{share_id}/family", "post"): _op(
        "Record whether the family was told of a share (when, by whom, how), or which "
        "exception applies and why, and who decided; a later decision supersedes, the "
        "earlier stays on the record",
        "shares:write",
        {
            "201": _json("FamilyRecordOut", "recorded: the decision in force and its history"),
            "400": _json("Errors", "the body is not JSON"),
            "404": _json("Errors", "no such share of an item the caller may see"),
            "422": _json("Errors", "the decision breaks a rule (path names the field)"),
        },
        parameters=[_SHARE],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": _ref("FamilyDecisionIn")}},
        },
    ),
    ("/api/v1/shares/{share_id}/family", "get"): _op(
        "Whether the family was told of a share: the decision in force and every one recorded",
        "deliveries:read",
        {
            "200": _json("FamilyRecordOut", "the share's family-informed record"),
            "404": _json("Errors", "no such share of an item the caller may see"),
        },
        parameters=[_SHARE],
    ),
    ("/api/v1/family/outstanding", "get"): _op(
        "Shares the exchange allowed (and network checks sent), from the queues the caller "
        "sees, with no family-informed decision recorded, oldest first, with when each is due",
        "deliveries:read",
        {"200": _json("OutstandingPage", "the outstanding decisions")},
    ),
    ("/api/v1/deliveries/{item_id}/family-summary", "get"): _op(
        "The family-facing summary of this item's child: what was shared and the family told "
        "of, with whom, why, on what basis, in plain words; nothing the author barred from "
        "parents, nothing not told because of an exception",
        "sharing-record:read",
        {"200": _json("FamilySummaryOut", "the summary")},
        parameters=[_ITEM],
    ),
    # -- network checks (consumers/inbox/network_checks_api.py)
    ("/api/v1/deliveries/{item_id}/network-checks", "post"): _op(
        "From a MASH item: rate it (BRAG), ask the chosen partner agencies (or all serving "
        "the LA) what they hold, with the family-informed decision, which is recorded before "
        "anything is sent; the gateway sets each deadline from the rating and the agreement",
        "shares:write",
        {
            "201": _json("NetworkChecksOut", "asked: every check of the item, as it stands"),
            "400": _json("Errors", "the body is not JSON"),
            "403": _json("Errors", "not a MASH item, or the scope does not allow sharing"),
            "422": _json("Errors", "the request breaks a rule (path names the field)"),
            "503": _json("Errors", "the exchange could not be reached; try again"),
        },
        parameters=[_ITEM],
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": _ref("NetworkCheckIn")}},
        },
    ),
    ("/api/v1/deliveries/{item_id}/network-checks", "get"): _op(
        "The network checks asked from this item: each agency, its rating and deadline, "
        "what the gateway said, the answer once given (facts apart from opinion, with the "
        "agency's restrictions), and whether it is overdue",
        "deliveries:read",
        {"200": _json("NetworkChecksOut", "the item's network checks")},
        parameters=[_ITEM],
    ),
}


SCOPES = {
    "deliveries:read": "list and open deliveries",
    "deliveries:ack": "acknowledge deliveries",
    "shares:write": "ask for onward shares and the authors' consent, and read the answers",
    "sharing-record:read": "read a child's sharing record",
    "referrals:respond": "acknowledge referrals and record decisions, told to the referrer",
    "queue:all": "every queue of the LA",
    "queue:mash": "the LA's MASH queue",
    "queue:worker:<id>": "one worker's queue (a scope per worker)",
    "queue:team:<team>": "one team's queues (a scope per team)",
}


def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema([(model, "serialization") for model in MODELS], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Safeguarding Exchange: a local authority's inbox",
            "version": API_VERSION,
            "description": "Deliveries to an LA's workers, supervisors and MASH, for its "
            "case-management system. Every read is audited.",
        },
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `safeguard inbox client add`",
                },
                "clientCredentials": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "https://idp.example.invalid/token",
                            "scopes": SCOPES,
                        }
                    },
                },
            },
        },
    }


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
