"""The demo partnership: one local authority and the agencies that serve it."""

from __future__ import annotations

from sgx.trust import PartySpec

LA = "la-camden"
SCHOOL = "school-hillside"
HEALTH = "nhs-royal-free"
POLICE = "met-police"

DEMO_PARTIES = (
    PartySpec("gateway", "gateway", "Safeguarding Exchange gateway", None),
    PartySpec(LA, "local_authority", "London Borough of Camden Children's Social Care", LA),
    PartySpec(SCHOOL, "school", "Hillside Primary School", LA),
    PartySpec(HEALTH, "health", "Royal Free London NHS Foundation Trust", LA),
    PartySpec(POLICE, "police", "Metropolitan Police Service", LA),
)
