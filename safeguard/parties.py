"""The demo partnership: two London boroughs and the agencies that serve them.

Camden and Islington each run their own front door (MASH) and each have a primary school;
the Royal Free's A&E and the Metropolitan Police serve both boroughs, as they do in life.
A GP practice, a community health service (health visiting and school nursing) and a
voluntary organisation refer children to the front door (their referrals follow the child
like any notification) and hear back the LA's acknowledgement and decision.
A notification follows the child: to the LA (or LAs) holding the child's case, else to the
MASH of the LA the child lives in, else to the sender's default LA under the agreement.

Two more primary schools, one in each borough, publish through their hosted
management-information system, a connector (``mis-north-london``) that carries both: one
inbound topic for the two, each envelope signed by its school. Hillside and Canonbury
are their own connectors, as every agency was before connectors.
"""

from __future__ import annotations

from sgx.keys.connectors import Connector
from sgx.keys.trust import PartySpec

LA = "la-camden"
OTHER_LA = "la-islington"
LA_GSS = "E09000007"  # ONS GSS code of the London Borough of Camden
OTHER_LA_GSS = "E09000019"  # ... and of Islington
SCHOOL = "school-hillside"
OTHER_SCHOOL = "school-canonbury"
HEALTH = "nhs-royal-free"
POLICE = "met-police"
GP = "gp-hillside"
COMMUNITY_HEALTH = "whittington-health"
VOLUNTARY = "family-action-camden"
CONNECTED_SCHOOL = "school-gospel-oak"  # Camden, through the connector
OTHER_CONNECTED_SCHOOL = "school-highbury-fields"  # Islington, through the connector
CONNECTOR = "mis-north-london"
BOTH = (LA, OTHER_LA)

DEMO_PARTIES = (
    PartySpec("gateway", "gateway", "Safeguarding Exchange gateway"),
    PartySpec(
        LA, "local_authority", "London Borough of Camden Children's Social Care", gss_code=LA_GSS
    ),
    PartySpec(OTHER_LA, "local_authority", "Islington Children's Services", gss_code=OTHER_LA_GSS),
    PartySpec(SCHOOL, "school", "Hillside Primary School", (LA,)),
    PartySpec(OTHER_SCHOOL, "school", "Canonbury Primary School", (OTHER_LA,)),
    PartySpec(CONNECTED_SCHOOL, "school", "Gospel Oak Primary School", (LA,)),
    PartySpec(OTHER_CONNECTED_SCHOOL, "school", "Highbury Fields School", (OTHER_LA,)),
    PartySpec(HEALTH, "health", "Royal Free London NHS Foundation Trust", BOTH),
    PartySpec(POLICE, "police", "Metropolitan Police Service", BOTH),
    PartySpec(GP, "gp_practice", "Hillside Medical Practice", (LA,)),
    PartySpec(
        COMMUNITY_HEALTH,
        "community_health",
        "Whittington Health 0-19 Service (health visiting and school nursing)",
        (OTHER_LA,),
    ),
    PartySpec(VOLUNTARY, "voluntary", "Family Action Camden", (LA,)),
)

DEMO_CONNECTORS = (
    Connector(
        id=CONNECTOR,
        name="North London schools' MIS (hosted)",
        carries=[CONNECTED_SCHOOL, OTHER_CONNECTED_SCHOOL],
    ),
)
