"""The push endpoint's referral routes in its OpenAPI document (:mod:`producers.openapi`):
what LAs said of the agency's referrals (:mod:`producers.push_referrals`)."""

from __future__ import annotations

from typing import Any

from producers.push_referrals import PAGE_LIMIT, REFERRALS_PATH, RESPONSES_PATH

COMPONENTS = "#/components/schemas/"
_MAYBE = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}

REFERRAL_COMPONENTS: dict[str, Any] = {
    "ReferralResponse": {
        "type": "object",
        "description": "An LA's acknowledgement of, or decision on, a referral, as the LA "
        "signed it (the signature was verified when it was received)",
        "properties": {
            "cursor": {"type": "integer", "description": "pass as ?after= to poll for newer"},
            "response_id": {"type": "string", "format": "uuid"},
            "referral_id": {"type": "string", "format": "uuid"},
            "local_authority": {"type": "string"},
            "stage": {"type": "string", "enum": ["ACKNOWLEDGED", "DECIDED"]},
            "decision": {
                "type": ["string", "null"],
                "enum": [
                    "NO_FURTHER_ACTION",
                    "INFORMATION_AND_ADVICE",
                    "EARLY_HELP",
                    "SECTION_17_ASSESSMENT",
                    "SECTION_47_ENQUIRIES",
                    "IMMEDIATE_PROTECTION",
                    None,
                ],
            },
            "reasons": _MAYBE,
            "next_steps": _MAYBE,
            "la_contact": {"type": "string"},
            "la_reference": _MAYBE,
            "responded_by": {"type": "string"},
            "responded_at": _TIME,
            "signer_key_id": {"type": "string"},
            "received_at": _TIME,
        },
        "required": ["response_id", "referral_id", "local_authority", "stage", "la_contact"],
    },
    "ReferralStatus": {
        "type": "object",
        "properties": {
            "referral_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "description": "the outbox entry's status"},
            "receipt": _MAYBE,
            "receipt_detail": _MAYBE,
            "responses": {"type": "array", "items": {"$ref": COMPONENTS + "ReferralResponse"}},
        },
        "required": ["referral_id", "status", "responses"],
    },
    "ReferralResponses": {
        "type": "object",
        "properties": {
            "responses": {"type": "array", "items": {"$ref": COMPONENTS + "ReferralResponse"}},
            "next_cursor": {"type": "integer"},
        },
        "required": ["responses", "next_cursor"],
    },
}


def referral_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """The two GET routes; ``errors`` are the document's shared error responses."""

    def body(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": COMPONENTS + name}}}

    common = {k: v for k, v in errors.items() if k in ("401", "403", "503")}
    number = {"type": "integer", "minimum": 0}
    return {
        REFERRALS_PATH + "/{referral_id}": {
            "get": {
                "operationId": "get_referral",
                "summary": "One referral the token's agency sent, and what each LA said",
                "parameters": [
                    {
                        "name": "referral_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": {
                    "200": {"description": "the referral", "content": body("ReferralStatus")},
                    "404": {
                        "description": "no such referral sent by this agency",
                        "content": body("Errors"),
                    },
                    **common,
                },
            }
        },
        RESPONSES_PATH: {
            "get": {
                "operationId": "poll_referral_responses",
                "summary": "The LAs' responses kept after a cursor, oldest first",
                "parameters": [
                    {"name": "after", "in": "query", "required": False, "schema": number},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {**number, "maximum": PAGE_LIMIT},
                    },
                ],
                "responses": {
                    "200": {"description": "a page", "content": body("ReferralResponses")},
                    "404": {
                        "description": "this endpoint keeps no referrals for the agency",
                        "content": body("Errors"),
                    },
                    "422": {
                        "description": "after or limit out of range",
                        "content": body("Errors"),
                    },
                    **common,
                },
            }
        },
    }
