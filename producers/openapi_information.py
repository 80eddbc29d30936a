"""The push endpoint's network-check routes in its OpenAPI document (:mod:`producers.openapi`):
the MASH information requests put to the agency, and its answers
(:mod:`producers.push_information`)."""

from __future__ import annotations

from typing import Any

from sgx.domain.network_checks import NAME_MAX, TEXT_MAX

INFORMATION_PATH = "/v1/information-requests"
OUTCOMES = ("HELD", "NOTHING_HELD", "CANNOT_MATCH")
# the restriction codes an answering agency may set (the gateway attaches the other two)
AUTHOR_RESTRICTIONS = ("NO_ONWARD_SHARING", "NOT_TO_PARENTS", "NOT_TO_OTHER_AGENCIES")
RATINGS = ("RED", "AMBER", "GREEN", "BLUE")
EXCEPTIONS = ("RISK_TO_CHILD", "PREJUDICE_CRIMINAL_INVESTIGATION", "UNDUE_DELAY", "COURT_ORDER")

COMPONENTS = "#/components/schemas/"
# a list route's ?open= (the consent requests' too, producers.openapi)
OPEN_ONLY = {
    "name": "open",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "only those not answered",
}
_MAYBE = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _text(limit: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit, "description": description}


def _maybe_text(limit: int, description: str) -> dict[str, Any]:
    return {**_text(limit, description), "type": ["string", "null"]}


INFORMATION_COMPONENTS: dict[str, Any] = {
    "InformationRequest": {
        "type": "object",
        "description": "A local authority's MASH asks this agency what it holds about a "
        "child (a network check), to answer by the deadline its BRAG rating sets",
        "properties": {
            "request_id": {"type": "string", "format": "uuid"},
            "local_authority": {"type": "string", "description": "the LA whose MASH asks"},
            "rating": {"type": "string", "enum": list(RATINGS)},
            "deadline": {**_TIME, "description": "answer by then (working hours)"},
            "overdue": {"type": "boolean", "description": "past the deadline, not answered"},
            "asked": {"type": "string", "description": "what the MASH needs to know"},
            "requested_by": {"type": "string"},
            "requested_at": _TIME,
            "family_told": {"type": "boolean"},
            "family_exception": {"type": ["string", "null"], "enum": [*EXCEPTIONS, None]},
            "child": {
                "type": "object",
                "description": "only what an agency of this kind can match the child by",
                "properties": {
                    "nhs_number": _MAYBE,
                    "upn": _MAYBE,
                    "given_name": _MAYBE,
                    "family_name": _MAYBE,
                    "date_of_birth": {"type": ["string", "null"], "format": "date"},
                    "postcode": _MAYBE,
                },
            },
            "received_at": _TIME,
            "outcome": {"type": ["string", "null"], "enum": [*OUTCOMES, None]},
            "answer_id": {"type": ["string", "null"], "format": "uuid"},
            "answered_by": _MAYBE,
            "automatic": {"type": ["boolean", "null"]},
            "answered_at": _MAYBE_TIME,
        },
        "required": ["request_id", "local_authority", "rating", "deadline", "overdue", "child"],
    },
    "InformationRequests": {
        "type": "object",
        "properties": {
            "information_requests": {
                "type": "array",
                "items": {"$ref": COMPONENTS + "InformationRequest"},
            }
        },
        "required": ["information_requests"],
    },
    "InformationAnswer": {
        "type": "object",
        "description": "What the agency holds (facts apart from its professional opinion), "
        "that it holds nothing, or that it cannot match the child; with its restrictions "
        "on onward use. Facts and opinion only when held; facts then required.",
        "properties": {
            "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "facts": _maybe_text(TEXT_MAX, "what the agency holds, as facts"),
            "professional_opinion": _maybe_text(TEXT_MAX, "the agency's opinion, apart"),
            "restrictions": {
                "type": "array",
                "items": {"type": "string", "enum": list(AUTHOR_RESTRICTIONS)},
                "uniqueItems": True,
                "description": "restrictions on onward use the answering agency sets",
            },
            "answered_by": _text(NAME_MAX, "who answers (name and role)"),
        },
        "required": ["outcome", "answered_by"],
        "additionalProperties": False,
    },
}


def information_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """The list and answer routes; ``errors`` are the document's shared error responses."""

    def body(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": COMPONENTS + name}}}

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": body("Errors")}

    none_kept = error("this endpoint keeps no information requests for the token's agency")
    return {
        INFORMATION_PATH: {
            "get": {
                "operationId": "list_information_requests",
                "summary": "The MASH information requests put to the token's agency",
                "parameters": [OPEN_ONLY],
                "responses": {
                    "200": {
                        "description": "the requests, oldest first",
                        "content": body("InformationRequests"),
                    },
                    "404": none_kept,
                    "422": error("open is neither true nor false"),
                    **{k: v for k, v in errors.items() if k in ("401", "403", "503")},
                },
            }
        },
        INFORMATION_PATH + "/{request_id}/answer": {
            "post": {
                "operationId": "answer_information_request",
                "summary": "Answer one information request (the first answer stands)",
                "description": (
                    "The answer is kept in the agency's outbox, signed by the agency and "
                    "sent to the gateway, which delivers it, restricted as the agency says, "
                    "to the asking LA's MASH only."
                ),
                "parameters": [
                    {
                        "name": "request_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "requestBody": {"required": True, "content": body("InformationAnswer")},
                "responses": {
                    "202": {"description": "answered", "content": body("InformationRequest")},
                    "404": error("no such information request put to this agency"),
                    "409": error("answered already: the first answer stands"),
                    **errors,
                },
            }
        },
    }
