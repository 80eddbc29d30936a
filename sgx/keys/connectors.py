"""Connectors: the systems that publish for agencies (design.md, glossary "connector").

A school's management-information system, a trust's patient record or a force's records
system publishes for many agencies: 20,000 schools are served by a handful of suppliers.
A connector is such a system as the exchange knows it: its id (which names its inbound
topic, ``sgx.inbound.<id>``), a name for people, its Kafka principal (the SCRAM user the
cluster's ACLs let write that topic and nothing else inbound) and the agencies it may
carry. It holds no keys: every envelope it carries stays signed by its agency, and the
signature covers the connector it was sealed for (wire format version 2), so the gateway
can refuse an envelope on a topic whose connector may not carry its signer, or one copied
from another connector's topic.

An agency that no connector carries is its own connector: its topic is its own
``sgx.inbound.<agency>``, as before connectors. Local authorities publish themselves
(their allocation updates and onward-share requests are their own): a connector carries
any other kind (:data:`sgx.keys.kinds.PARTNER_KINDS`: schools, health bodies, police
forces, GP practices, whose clinical systems are as concentrated as schools' MIS, and the
rest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sgx.keys.kinds import PARTNER_KINDS

CARRIED_KINDS = PARTNER_KINDS
_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
_MODEL = ConfigDict(extra="forbid", frozen=True)


class Connector(BaseModel):
    """A system that publishes for the agencies it ``carries``, on its own topic."""

    model_config = _MODEL

    id: Annotated[str, Field(pattern=_ID)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    principal: Annotated[str, Field(pattern=_ID)] | None = None
    carries: Annotated[list[str], Field(min_length=1)]

    @property
    def kafka_principal(self) -> str:
        """The SCRAM user it connects as: ``principal`` if given, else its id."""
        return self.principal or self.id


def connector_problem(
    connector: Connector, kinds: Mapping[str, str], taken: Mapping[str, str]
) -> tuple[str, str] | None:
    """(field, problem) if ``connector`` does not fit the directory: ``kinds`` is every
    party's kind by id, ``taken`` what already names a topic or principal (party ids and
    earlier connectors), by name."""
    if connector.id in kinds:
        return "id", f"{connector.id!r} is a party: a connector's id names its own topic"
    if connector.id in taken:
        return "id", f"{connector.id!r} is already {taken[connector.id]}"
    principal = connector.kafka_principal
    if principal != connector.id and (principal in kinds or principal in taken):
        return "principal", f"{principal!r} is already another party's or connector's"
    seen: set[str] = set()
    for j, agency in enumerate(connector.carries):
        kind = kinds.get(agency)
        if kind is None:
            return f"carries[{j}]", f"{agency!r} is not a party in this directory"
        if kind not in CARRIED_KINDS:
            allowed = ", ".join(sorted(CARRIED_KINDS))
            return f"carries[{j}]", f"{agency!r} is a {kind}: a connector carries {allowed}"
        if agency in seen:
            return f"carries[{j}]", f"{agency!r} is listed twice"
        seen.add(agency)
    return None


def carriers(connectors: Sequence[Connector]) -> dict[str, tuple[str, ...]]:
    """The ids of the connectors that carry each agency (agencies carried by none absent)."""
    found: dict[str, list[str]] = {}
    for connector in connectors:
        for agency in connector.carries:
            found.setdefault(agency, []).append(connector.id)
    return {agency: tuple(ids) for agency, ids in found.items()}
