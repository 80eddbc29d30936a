"""Who receives a notification: responsibility follows the child, not the sender.

The rule, for a notification about one child (looked up by the pseudonyms of its NHS
number and of its UPN):

1. **Allocated.** Every LA that holds an open allocation for the child receives it: that
   LA's allocated social worker (``ALLOCATED_WORKER``) and their supervisor
   (``SUPERVISOR``), whichever LA the sender is registered under or serves. A child in
   transfer between two LAs is open to both, so both receive it.
2. **Residence.** A child open to no LA goes to the front door (MASH) of the LA the child
   lives in, which the sender states as its ONS GSS code (``child.residence_la``), if that
   LA is in the trust directory (``RESIDENCE_MASH``).
3. **Sender's default.** Otherwise (residence not stated, or an LA outside the
   partnership) to the MASH of each LA the agreement names as the sender's default
   (:meth:`gateway.partnership.Partnership.defaults`; ``DEFAULT_LA_MASH``). The agreement
   must name one for every sender serving several LAs, so no LA is ever chosen at random.

A sender serving no LA that knows neither gets no route: the judge refuses the
notification, audits it and tells the sender why, so nothing is silently dropped.

A 2013 / 2024 Protocol disclosure that answers a request goes back to the requesting LA
only (:meth:`Router.within`): its allocated worker and supervisor, else its MASH
(``REQUESTING_LA_MASH``).

Every route carries its reason and a sentence for the audit record; nothing here reads a
child identifier (only pseudonyms) or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.allocation_cases import Allocation
from gateway.allocations import AllocationDirectory
from gateway.decision import Recipient
from gateway.partnership import Partnership
from sgx.keys.trust import TrustDirectory


@dataclass(frozen=True, slots=True)
class Route:
    """One receiving LA, who in it receives, and why (a sentence for the audit record)."""

    la: str
    recipients: list[Recipient]
    why: str


def mash(la: str, reason: str) -> Recipient:
    recipient: dict[str, Any] = {
        "id": f"mash:{la}",
        "role": "MASH_DUTY",
        "team": "MASH",
        "name": "MASH duty",
    }
    return recipient, reason


def allocated(found: Allocation) -> list[Recipient]:
    worker = {
        "id": found.worker_id,
        "role": "SOCIAL_WORKER",
        "team": found.team,
        "name": found.worker_name,
    }
    supervisor = {
        "id": found.supervisor_id,
        "role": "SUPERVISOR",
        "team": found.team,
        "name": found.supervisor_name,
    }
    return [(worker, "ALLOCATED_WORKER"), (supervisor, "SUPERVISOR")]


class Router:
    """The routing rule over the allocation directory, the trust directory and the
    partnership's default LAs."""

    def __init__(
        self, allocations: AllocationDirectory, trust: TrustDirectory, partnership: Partnership
    ) -> None:
        self._allocations = allocations
        self._trust = trust
        self._partnership = partnership

    def routes(
        self,
        sender: str,
        nhs_key: bytes | None,
        upn_key: bytes | None,
        residence: str | None,
    ) -> list[Route]:
        """Every LA that receives the notification (sorted by LA id); empty: no route."""
        held = self._allocations.holders(nhs_key, upn_key)
        if held:
            return [
                Route(la, allocated(found), f"open to {la}") for la, found in sorted(held.items())
            ]
        if residence is not None:
            home = self._trust.authority(residence)
            if home is not None:
                why = f"open to no LA; the sender says the child lives in {home.id} ({residence})"
                return [Route(home.id, [mash(home.id, "RESIDENCE_MASH")], why)]
            unknown = f"residence {residence} is not an LA of this exchange"
        else:
            unknown = "residence not stated"
        return [
            Route(
                la,
                [mash(la, "DEFAULT_LA_MASH")],
                f"open to no LA; {unknown}; {la} is {sender}'s default LA under the agreement",
            )
            for la in self._partnership.defaults(sender)
        ]

    def within(self, la: str, nhs_key: bytes | None, upn_key: bytes | None) -> Route:
        """The route to one LA only (a Protocol disclosure back to the requesting LA)."""
        found = self._allocations.lookup(la, nhs_key, upn_key)
        if found is not None:
            return Route(la, allocated(found), f"answers {la}'s request; open to {la}")
        why = f"answers {la}'s request; open to no worker there"
        return Route(la, [mash(la, "REQUESTING_LA_MASH")], why)
