"""An LA's inbox under test: a real broker, gateway and consumer, queue items for four
children, local accounts, and the inbox served on a free port.

Children (Camden): Amira (sw-amara, Assessment Team 1, supervisor tm-jones) has a police
notification (restricted: not to parents) and a school attendance update; Leo (sw-ben,
the same team) a health update; Cara (sw-carla, Assessment Team 2, supervisor tm-lee) a
school update; Maya, open nowhere and living in Camden, goes to Camden's MASH. Each
child's facts are unique text, so a scan can tell whose data a page holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.inbox.settings import InboxSettings
from safeguard.inbox_wiring import RunningInbox, inbox_store, serving_inbox
from safeguard.parties import LA, LA_GSS, POLICE, SCHOOL
from safeguard.samples import allocation_update
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.wire import contract as c_
from tests import samples
from tests.integration.harness import Exchange, running_exchange

PASSWORD = "correct horse battery staple"
TEAM1, TEAM2 = "Assessment Team 1", "Assessment Team 2"
ACCOUNTS = {  # username: (worker id, name, role, team)
    "amara": ("sw-amara", "Amara Osei", "social_worker", TEAM1),
    "ben": ("sw-ben", "Ben Ward", "social_worker", TEAM1),
    "jones": ("tm-jones", "Tess Jones", "supervisor", TEAM1),
    "mash": ("mash-duty-1", "Mo Duty", "mash_duty", None),
}


@dataclass(frozen=True)
class Child:
    given: str
    nhs_number: str
    upn: str | None
    facts: str
    worker: str | None


CHILDREN = {
    "amira": Child(
        "Amira",
        make_nhs_number(7101),
        make_upn(7101),
        "Amira-fact: officers attended flat 3 at 23:15.",
        "sw-amara",
    ),
    "leo": Child(
        "Leo", make_nhs_number(7202), None, "Leo-fact: attended A&E with a wrist injury.", "sw-ben"
    ),
    "cara": Child(
        "Cara",
        make_nhs_number(7303),
        make_upn(7303),
        "Cara-fact: missed 30 sessions this term.",
        "sw-carla",
    ),
    "maya": Child(
        "Maya", make_nhs_number(7404), None, "Maya-fact: seen alone at the station at 02:00.", None
    ),
}


def about(record: dict[str, Any], child: Child, facts: str | None = None) -> dict[str, Any]:
    record["child"].update(
        nhs_number=child.nhs_number,
        upn=child.upn,
        given_name=child.given,
        family_name="Test",
        residence_la=LA_GSS,
    )
    record["assessment"]["facts"] = facts or child.facts
    return record


@dataclass
class World:
    exchange: Exchange
    inbox: RunningInbox
    home: Path
    rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.inbox.url


async def publish_traffic(ex: Exchange) -> int:
    """The notifications above; returns the queue rows they make."""
    c = CHILDREN
    restricted = samples.police_notification()  # the author adds: not to parents
    restricted["sharing"]["restrictions"] = ["NOT_TO_PARENTS"]
    await ex.publish(POLICE, c_.POLICE_NOTIFICATION, about(restricted, c["amira"]))
    await ex.publish(
        SCHOOL,
        c_.ATTENDANCE_UPDATE,
        about(samples.attendance_update(), c["amira"], "Amira-fact: 12 sessions missed."),
    )
    await ex.publish("nhs-royal-free", c_.HEALTH_UPDATE, about(samples.health_update(), c["leo"]))
    await ex.publish(SCHOOL, c_.ATTENDANCE_UPDATE, about(samples.attendance_update(), c["cara"]))
    await ex.publish(
        POLICE, c_.POLICE_NOTIFICATION, about(samples.police_notification(), c["maya"])
    )
    return 2 + 2 + 2 + 2 + 1


@contextlib.asynccontextmanager
async def inbox_world(
    home: Path,
    *,
    dsn: str | None = None,
    schema: str | None = None,
    broker: str | None = None,
    **settings: Any,
) -> AsyncIterator[World]:
    """The exchange with Camden's traffic queued and Camden's inbox serving it; its stores
    on SQLite, or on PostgreSQL at ``dsn`` (``schema`` with ``{party}``: one per party)."""
    async with running_exchange(home, dsn=dsn, schema=schema, broker=broker) as ex:
        amira, leo, cara = CHILDREN["amira"], CHILDREN["leo"], CHILDREN["cara"]
        allocated = [
            (amira.nhs_number, amira.upn, "sw-amara", TEAM1, "tm-jones"),
            (leo.nhs_number, None, "sw-ben", TEAM1, "tm-jones"),
            (cara.nhs_number, cara.upn, "sw-carla", TEAM2, "tm-lee"),
        ]
        await ex.allocate(allocation_update(allocated))
        rows = await publish_traffic(ex)
        await ex.wait_rows(rows)
        async with await inbox_store(ex.rt, LA) as store:
            for username, (worker, name, role, team) in ACCOUNTS.items():
                await store.add_account(
                    username, PASSWORD, worker_id=worker, name=name, role=role, team=team
                )
        inbox_settings = InboxSettings(**({"port": 0, "share_timeout_s": 20} | settings))
        async with serving_inbox(ex.rt, LA, inbox_settings) as running:
            yield World(ex, running, home, rows)
