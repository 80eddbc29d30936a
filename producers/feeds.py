"""What the agency feeds (school, health, police, the referral form) share.

* :data:`Submit`: the callable a feed hands each record to (the agency's outbox ``add``;
  :meth:`producers.publisher.Publisher.publish` in tests).
* The contract's enum symbols as ``Literal`` types, for the pydantic models that read an
  agency's own configuration or export (a test holds them equal to the schemas' enums).
* :func:`pydantic_path` and :func:`pydantic_problem`: a pydantic error as the field path
  and problem a :class:`sgx.errors.ContractError` carries (never the value).
* :func:`json_objects` and :func:`checked`: a file of JSON objects read, and a record
  checked against the contract with its error's path under the object's place in the file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from sgx.errors import ContractError
from sgx.wire.contract import Contract, default_contract

__all__ = [
    "AuthorRestriction",
    "ConcernCategory",
    "ConsentStatus",
    "IdentifierAbsentReason",
    "LawfulBasis",
    "NoConsentReason",
    "RecipientCategory",
    "RiskLevel",
    "Submit",
    "Urgency",
    "pydantic_path",
    "pydantic_problem",
]

Submit = Callable[[str, Mapping[str, Any]], Awaitable[uuid.UUID]]

Urgency = Literal["ROUTINE", "PRIORITY", "IMMEDIATE"]
RiskLevel = Literal["NO_CONCERN", "LOW", "MEDIUM", "HIGH", "IMMINENT"]
ConsentStatus = Literal["GIVEN", "NOT_SOUGHT", "REFUSED", "WITHDRAWN"]
LawfulBasis = Literal["PUBLIC_TASK", "LEGAL_OBLIGATION", "VITAL_INTERESTS", "CONSENT"]
NoConsentReason = Literal[
    "RISK_TO_CHILD", "PREJUDICE_CRIMINAL_INVESTIGATION", "UNDUE_DELAY", "COURT_ORDER"
]
IdentifierAbsentReason = Literal["NOT_KNOWN", "UNREASONABLE_DELAY", "NOT_ISSUED"]
RecipientCategory = Literal[
    "LA_SOCIAL_CARE", "PARENT_OR_CARER", "OTHER_PROFESSIONAL", "CARE_PROCEEDINGS"
]
ConcernCategory = Literal[
    "PHYSICAL_ABUSE", "EMOTIONAL_ABUSE", "SEXUAL_ABUSE", "NEGLECT", "DOMESTIC_ABUSE",
    "CHILD_CRIMINAL_EXPLOITATION", "CHILD_SEXUAL_EXPLOITATION", "MISSING", "SELF_HARM",
    "MENTAL_HEALTH", "PARENTAL_MENTAL_HEALTH", "PARENTAL_SUBSTANCE_MISUSE", "ONLINE_HARM",
    "RADICALISATION", "FEMALE_GENITAL_MUTILATION", "HOUSING", "YOUNG_CARER", "DISABILITY",
    "OTHER",
]  # fmt: skip
# The RestrictionCode symbols an author may set; the gateway attaches the other two.
AuthorRestriction = Literal["NO_ONWARD_SHARING", "NOT_TO_PARENTS", "NOT_TO_OTHER_AGENCIES"]


def pydantic_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A pydantic error location as a field path (``a.b[2].c``), after ``prefix``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "$"


def pydantic_problem(message: str) -> str:
    """A pydantic message on one line, without its 'Value error, ' prefix."""
    return " ".join(message.split()).removeprefix("Value error, ")


_R = TypeVar("_R", bound=Mapping[str, Any])


def json_objects(text: str | bytes, schema: str) -> list[Any]:
    """The objects of a file (a JSON object or an array of them); a ContractError naming
    ``schema`` (the file's format) and where, if it is not that."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ContractError("$", f"not valid JSON at {where}: {exc.msg}", schema=schema) from None
    except UnicodeDecodeError:
        raise ContractError("$", "not UTF-8 text", schema=schema) from None
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ContractError(f"[{index}]", "expected a JSON object", schema=schema)
    return items


def checked(contract: Contract | None, name: str, record: _R, at: str) -> _R:
    """``record`` once the contract's ``name`` holds it; its error's path is put under
    ``at`` (the object's place in its file, e.g. ``[3]``)."""
    try:
        (contract or default_contract()).check(name, record)
    except ContractError as exc:
        path = exc.path if not at else f"{at}.{exc.path}".replace(".$", "")
        raise ContractError(path, exc.problem, schema=exc.schema) from None
    return record
