"""Network checks in the inbox: from a MASH item, rate it, ask partner agencies, see answers.

A MASH duty worker (or a system with ``shares:write``) who may open the item rates it
(BRAG), chooses the agencies to ask (or every agency serving the LA) and says what is
asked. The family-informed decision (told, or the exception) is part of the same call and
is checked before anything is recorded or sent: without it nothing goes out. Each agency
asked is one disclosure of kind ``network_check`` (:mod:`consumers.inbox.family_store`,
its ref the request id), registered with the decision before the request is sent, so the
family-facing summary and the outstanding list know it; the gateway's word (ASKED with the
deadline, or REFUSED and why) marks it made or not.

What the gateway said, and each agency's answer, are the rows the LA's consumer kept
(:mod:`consumers.information_rows`; each a primary-key look-up, whatever the history):
when the item's checks are listed (:meth:`NetworkChecks.of_item`) each answer, an item
of the MASH queue of its own, is opened and shows on the MASH item it was asked from,
and a request past its deadline with no answer shows as overdue. Every read is audited
against the item it opens, as the inbox audits everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumers.inbox.access import SHARE, Principal
from consumers.inbox.family import Families
from consumers.inbox.family_store import Disclosure
from consumers.inbox.service import Inbox
from consumers.information_rows import InformationStatusRow
from consumers.network_checks import request_record
from consumers.queue import QueueItem
from consumers.reader import QueueView
from sgx.domain.family import DisclosureKind
from sgx.domain.network_checks import ASKED_MAX, MATCH_FIELDS, RATINGS
from sgx.errors import ContractError, Forbidden, NotFound, TransportError
from sgx.keys.trust import Clock, TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.ids import new_id

KIND = DisclosureKind.NETWORK_CHECK
MASH_ROLE = "MASH_DUTY"  # the recipient role of the MASH queue's rows
ALL = "all"
# an InformationRequest -> the gateway's InformationStatus on it, once the consumer kept it
AskAgency = Callable[[dict[str, Any]], Awaitable[InformationStatusRow]]


@dataclass(frozen=True, slots=True)
class NetworkCheck:
    """One agency asked about one MASH item, and what has come back."""

    disclosure: Disclosure
    agency: str
    rating: str  # as the gateway repeated it ("" before its word arrives)
    asked: str
    state: str  # SENT (no word from the gateway yet), ASKED, REFUSED or ANSWERED
    deadline: datetime | None
    reason: str | None
    answer: dict[str, Any] | None
    overdue: bool
    answer_item: int | None = None  # the MASH queue's item holding the answer
    # the answer's restrictions on onward use as delivered: the agency's and the defaults
    restrictions: tuple[str, ...] = ()

    @property
    def request_id(self) -> str:
        return self.disclosure.ref


class NetworkChecks:
    def __init__(
        self,
        inbox: Inbox,
        families: Families,
        *,
        trust: TrustDirectory | None,
        ask: AskAgency | None,
        clock: Clock = utc_now,
    ) -> None:
        self._inbox = inbox
        self._families = families
        self._trust = trust
        self._ask = ask
        self._clock = clock

    def partners(self) -> list[str]:
        """Every agency serving this LA (the gateway refuses those its agreement bars)."""
        la = self._inbox.la
        if self._trust is None:
            return []
        return sorted(
            p.id for p in self._trust.parties()
            if p.kind not in ("gateway", "local_authority") and la in self._trust.served(p.id)
        )  # fmt: skip

    async def mash_item(self, who: Principal, item_id: int) -> QueueItem:
        """The MASH item a network check is asked from: the caller may share from it
        (Forbidden), sees it (NotFound), and it is the MASH queue's (Forbidden)."""
        who.require(SHARE)
        item = await self._inbox.item(who, item_id)
        if item.notification_type == c.INFORMATION_ANSWER:
            raise Forbidden(
                f"item {item_id} is an agency's answer to a network check: ask from the MASH "
                "item it answers"
            )
        if item.recipient_role != MASH_ROLE:
            raise Forbidden(
                f"item {item_id} is in {item.recipient_id}'s queue: network checks are asked "
                "from the MASH's items, for a contact open to no one"
            )
        return item

    async def ask(
        self,
        who: Principal,
        item_id: int,
        *,
        rating: str,
        agencies: Sequence[str] | str,
        asked: str,
        family: Mapping[str, Any],
        where: str = "",
    ) -> list[NetworkCheck]:
        """Rate the item, record the family-informed decision and ask each agency."""
        await self.mash_item(who, item_id)
        decision = self._families.check(who, family, where + "family.")
        rating = rating.upper()
        if rating not in RATINGS:
            raise ContractError(where + "rating", f"must be one of {', '.join(RATINGS)}")
        asked = asked.strip()
        if not asked or len(asked) > ASKED_MAX:
            raise ContractError(where + "asked", f"say what is asked (at most {ASKED_MAX})")
        partners = self.partners()
        ask = self._ask
        chosen = partners if agencies == ALL else sorted(set(agencies))
        unknown = [a for a in chosen if a not in partners]
        if unknown or not chosen:
            raise ContractError(
                where + "agencies",
                f"{unknown or 'none'}: choose agencies serving {self._inbox.la} "
                f"({', '.join(partners)}), or {ALL!r}",
            )
        if ask is None:
            raise TransportError("this inbox has no connection to the exchange to ask with")
        view = await self._inbox.open(who, item_id, "opened")
        child = view.notification["child"]
        match = {f: child.get(f) for f in MATCH_FIELDS}
        families = self._inbox.store.families
        for agency in chosen:
            request_id = new_id()
            ref = str(request_id)
            await families.register(
                None, kind=KIND, ref=ref, item_id=item_id,
                notification_id=view.item.notification_id, to_name=agency,
                to_category="OTHER_PROFESSIONAL", purpose=asked,
                asked_by=who.subject,
            )  # fmt: skip
            found = await families.get(KIND, ref)
            await self._families.recorded(who, found, decision)  # before anything is sent
            record = request_record(
                request_id=request_id, la=self._inbox.la, agency=agency, rating=rating,
                child=match, asked=asked, requested_by=who.subject, told=decision.informed,
                exception=decision.exception, decided_by=decision.decided_by,
            )  # fmt: skip
            try:
                status = await ask(record)
            except (TimeoutError, TransportError):
                continue  # SENT: of_item looks for the gateway's word again
            await families.made(None, KIND, ref, status.state == "ASKED", status.decided_at)
        return await self.of_item(who, item_id)

    async def of_item(self, who: Principal, item_id: int) -> list[NetworkCheck]:
        """Every network check asked from the item, with the latest word on each."""
        item = await self._inbox.item(who, item_id)
        found = [
            d for d in await self._inbox.store.families.of([item.notification_id])
            if d.kind == KIND and d.item_id == item_id
        ]  # fmt: skip
        if not found:
            return []
        queue = self._inbox.queue
        refs = [d.ref for d in found]
        statuses = await queue.information.status_of(refs)
        answers: dict[str, QueueView] = {}
        for ref, answer_item in (await queue.answering(refs)).items():
            try:
                answers[ref] = await self._inbox.open(who, answer_item, "opened")  # audited
            except NotFound:
                continue  # not in what the caller may see
        await self._inbox.store.record_reads(who, "opened", [(item_id, item.notification_id)])
        now = self._clock()
        return [self._check(d, statuses.get(d.ref), answers.get(d.ref), now) for d in found]

    @staticmethod
    def _check(
        found: Disclosure,
        status: InformationStatusRow | None,
        answered: QueueView | None,
        now: datetime,
    ) -> NetworkCheck:
        deadline = status.deadline if status else None
        state = "SENT" if status is None else status.state
        if answered is not None:
            state = "ANSWERED"
        overdue = state == "ASKED" and deadline is not None and deadline <= now.astimezone(UTC)
        return NetworkCheck(
            disclosure=found, agency=found.to_name, rating=status.rating if status else "",
            asked=found.purpose, state=state, deadline=deadline,
            reason=status.reason if status else None,
            answer=answered.notification if answered else None, overdue=overdue,
            answer_item=answered.item.item_id if answered else None,
            restrictions=answered.item.restrictions if answered else (),
        )  # fmt: skip
