"""Referrals on their way to LAs: each receiving LA's deadlines, stamped and started.

A ``Referral`` is judged like every notification (:mod:`gateway.notifications`): routed by
the child (allocated worker and supervisor in every LA holding the child, else the MASH
of residence, else the sender's default LA), minimised by the receiving LA's agreement,
audited, receipted. Then :meth:`ReferralClock.routed` gives each delivery to an LA the
deadlines that LA's agreement sets (``[referrals]``: acknowledge, and decide, within so
many working days of the gateway routing it, :mod:`sgx.domain.working_days`), in the
delivery's ``referral_due``, so the inbox shows the same deadlines the alerts use, and
starts the clocks in the :class:`~gateway.referral_book.ReferralBook`.
"""

from __future__ import annotations

from datetime import datetime

from gateway.decision import Delivery, View
from gateway.partnership import Partnership
from gateway.referral_book import ReferralBook, ReferralReceived
from sgx.domain.calendar import SchoolCalendar
from sgx.domain.working_days import working_days_after
from sgx.keys.trust import utc_now


class ReferralClock:
    """The deadlines of referrals, by each receiving LA's agreement and the calendar."""

    def __init__(
        self, *, partnership: Partnership, calendar: SchoolCalendar, book: ReferralBook
    ) -> None:
        self._partnership = partnership
        self._calendar = calendar
        self.book = book

    def due(self, la: str, received_at: datetime) -> tuple[datetime, datetime]:
        """(acknowledge by, decide by) of a referral ``la`` receives at ``received_at``."""
        times = self._partnership.agreement(la).referral_times
        return (
            working_days_after(self._calendar, received_at, times.acknowledge),
            working_days_after(self._calendar, received_at, times.decide),
        )

    async def routed(self, view: View, deliveries: list[Delivery]) -> None:
        """Stamp each delivery of the referral ``view`` with its LA's deadlines and start
        the clock of every LA it went to."""
        now = utc_now()
        received_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as Avro keeps
        started: dict[str, ReferralReceived] = {}
        for delivery in deliveries:
            la = delivery.party
            acknowledge_by, decide_by = self.due(la, received_at)
            delivery.record["referral_due"] = {
                "acknowledge_by": acknowledge_by,
                "decide_by": decide_by,
            }
            started[la] = ReferralReceived(
                referral_id=str(view.record["notification_id"]),
                la_id=la,
                referrer=view.opened.sender.id,
                referrer_kind=view.opened.sender.kind,
                child_pseudonym=view.said.child_pseudonym,
                received_at=received_at,
                acknowledge_due=acknowledge_by,
                decide_due=decide_by,
            )
        await self.book.received(list(started.values()))
