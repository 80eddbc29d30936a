"""Who may see what in an LA's inbox: people by role, systems by scope.

A person signed in (local account or the LA's OpenID provider) has a worker id, a role and
perhaps a team:

============  ==============================================================
role          sees the queue rows addressed to
============  ==============================================================
social_worker themselves
supervisor    themselves, and every row whose addressee is in their team
mash_duty     themselves, and the LA's MASH queue (``mash:<la>``)
(none)        nothing
============  ==============================================================

A system (a case-management client) has scopes: actions (``deliveries:read``,
``deliveries:ack``, ``shares:write``, ``sharing-record:read``, ``referrals:respond``) and
the queues it covers
(``queue:worker:<id>``, ``queue:team:<team>``, ``queue:mash``, ``queue:all``). OAuth2 scopes
are separated by spaces, so a team or worker id in a scope is percent-encoded
(``queue:team:Assessment%20Team%201``). A person may
do every action on what they see. The inbox serves one LA over that LA's own store (a
file, or a PostgreSQL schema and role of its own, which records its owner and refuses any
other LA's service: ``sgx.store.owner``), so nobody reaches another LA's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from consumers.queue import QueueItem, QueueSelection
from sgx.errors import Forbidden, NotFound

Role = Literal["social_worker", "supervisor", "mash_duty"]
ROLES: tuple[Role, ...] = ("social_worker", "supervisor", "mash_duty")
ROLE_LABELS = {
    "social_worker": "Social worker",
    "supervisor": "Supervisor",
    "mash_duty": "MASH duty",
}

READ = "deliveries:read"
ACK = "deliveries:ack"
SHARE = "shares:write"
RECORD = "sharing-record:read"
RESPOND = "referrals:respond"  # acknowledge and decide a referral, told to the referrer
ACTIONS = frozenset({READ, ACK, SHARE, RECORD, RESPOND})
QUEUE_PREFIX = "queue:"


def role_from(value: object) -> Role | None:
    """A role claim or column as a Role; anything else is no role (sees nothing)."""
    return next((role for role in ROLES if role == value), None)


def check_scopes(scopes: frozenset[str]) -> None:
    """Refuse a scope the inbox does not know (ValueError naming it)."""
    for scope in scopes:
        if scope in ACTIONS or scope in ("queue:mash", "queue:all"):
            continue
        kind, _, value = scope.removeprefix(QUEUE_PREFIX).partition(":")
        if scope.startswith(QUEUE_PREFIX) and kind in ("worker", "team") and value:
            continue
        raise ValueError(
            f"unknown scope {scope!r}: use {', '.join(sorted(ACTIONS))}, "
            "queue:worker:<id>, queue:team:<team>, queue:mash or queue:all"
        )


def not_yours(item_id: int) -> str:
    """What a caller is told of an item that does not exist or is not theirs: the same."""
    return f"no item {item_id} in a queue you may see"


@dataclass(frozen=True, slots=True)
class Principal:
    """Whoever makes a request: a person (``kind="person"``) or a system."""

    la: str
    subject: str  # a worker id, or a client's name
    kind: Literal["person", "system"]
    name: str
    role: Role | None = None
    team: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def mash_queue(self) -> str:
        return f"mash:{self.la}"

    def selection(self) -> QueueSelection:
        """The queue rows this caller may see."""
        if self.kind == "person":
            if self.role is None:
                return QueueSelection()
            team = {self.team} if self.role == "supervisor" and self.team else set()
            mash = {self.mash_queue} if self.role == "mash_duty" else set()
            return QueueSelection(
                recipients=frozenset({self.subject, *mash}), teams=frozenset(team)
            )
        if "queue:all" in self.scopes:
            return QueueSelection(everything=True)
        recipients = set(self._scoped("queue:worker:"))
        if "queue:mash" in self.scopes:
            recipients.add(self.mash_queue)
        teams = set(self._scoped("queue:team:"))
        return QueueSelection(recipients=frozenset(recipients), teams=frozenset(teams))

    def _scoped(self, prefix: str) -> list[str]:
        return [unquote(s.removeprefix(prefix)) for s in self.scopes if s.startswith(prefix)]

    def sees(self, item: QueueItem) -> bool:
        selection = self.selection()
        return (
            selection.everything
            or item.recipient_id in selection.recipients
            or (item.team is not None and item.team in selection.teams)
        )

    def may_open(self, item: QueueItem) -> bool:
        """Whether the caller may open ``item``: a person only rows sealed for them (their
        own, or the MASH queue's for a duty worker); a supervisor sees the team's other
        rows listed by their routing facts but opens their own copy, sealed with what the
        agreement gives a supervisor. A system opens what its scope selects."""
        if self.kind != "person":
            return self.sees(item)
        mash = self.role == "mash_duty" and item.recipient_id == self.mash_queue
        return self.role is not None and (item.recipient_id == self.subject or mash)

    def may(self, action: str) -> bool:
        if self.kind == "person":  # with no role, a person's (empty) queue is all there is
            return self.role is not None or action == READ
        return action in self.scopes

    def require(self, action: str) -> None:
        if self.may(action):
            return
        if self.kind == "person":
            raise Forbidden("you have no role in this inbox: ask your administrator for one")
        raise Forbidden(f"this client's scope does not include {action}")

    def require_sees(self, item: QueueItem) -> None:
        """NotFound unless the caller may see ``item``: as if it did not exist, so a guessed
        id tells nothing (the message names no fact of the item)."""
        if not self.sees(item):
            raise NotFound(not_yours(item.item_id))
