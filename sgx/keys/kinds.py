"""The kinds of agency a partnership's trust directory may hold, in one place.

Section 11 of the Children Act 2004 puts the duty to safeguard on many more bodies than
schools, NHS trusts and police forces, and referrals to children's social care come from
all of them (``../shared/brief/domain.md``, "The front door"). Each kind is what the
agreement (``gateway/agreement.toml``, ``[senders]``) grants record types to, what the
exchange's default restrictions on onward use depend on (third-party information belongs
to its author; police material is confidential to the proceedings), and what the cluster
plan (``deploy/acl_plan.py``) accepts in ``deploy/parties.toml``.

=====================  =====================================================================
kind                   who
=====================  =====================================================================
``local_authority``    children's social care of a local authority (has a GSS code)
``school``             a school or college (its Designated Safeguarding Lead)
``health``             an NHS trust: acute hospitals, A&E and urgent care
``police``             a territorial police force, or British Transport Police
``gp_practice``        a GP practice
``community_health``   community health services: health visiting, school nursing,
                       community paediatrics (an NHS community trust, or a provider of them)
``youth_justice``      a youth justice service (youth offending team)
``probation``          the Probation Service (a probation delivery unit)
``early_years``        an early-years setting: nursery, pre-school, children's centre,
                       childminder agency
``voluntary``          a voluntary or community organisation (a charity's family service)
``housing``            a housing provider or an LA's housing options service
=====================  =====================================================================

This module is data only, so every layer may read it (the trust directory, the agreement,
the plan, the CLI).
"""

from __future__ import annotations

from typing import Literal, get_args

AgencyKind = Literal[
    "school",
    "health",
    "police",
    "local_authority",
    "gp_practice",
    "community_health",
    "youth_justice",
    "probation",
    "early_years",
    "voluntary",
    "housing",
]
PartyKind = AgencyKind | Literal["gateway"]

AGENCY_KINDS: tuple[AgencyKind, ...] = get_args(AgencyKind)
"""Every agency kind, the local authority included (the gateway is no agency)."""

KIND_LABELS: dict[str, str] = {
    "local_authority": "local authority children's social care",
    "school": "school",
    "health": "NHS trust",
    "police": "police force",
    "gp_practice": "GP practice",
    "community_health": "community health service (health visiting, school nursing)",
    "youth_justice": "youth justice service",
    "probation": "probation service",
    "early_years": "early-years setting",
    "voluntary": "voluntary or community organisation",
    "housing": "housing provider",
}
"""Each kind in words, for messages and pages."""

PARTNER_KINDS: frozenset[str] = frozenset(AGENCY_KINDS) - {"local_authority"}
"""The agencies that share with local authorities: what they write is third-party
information to an LA, which belongs to its author."""
