"""What the inbox does, for the web page and the API alike: list, open, acknowledge, ask
for an onward share, ask the author's consent to one the exchange refused, respond to a
referral (:mod:`consumers.inbox.referrals`), and build a child's sharing record, each
checked against the caller
(:class:`~consumers.inbox.access.Principal`) and each read audited."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from consumers.inbox.access import ACK, READ, RECORD, SHARE, Principal, not_yours
from consumers.inbox.consent_store import ConsentRecord
from consumers.inbox.referrals import FindReceipts, ReferralDesk, SendResponse
from consumers.inbox.store import InboxStore, ReadAction, ShareRecord
from consumers.inbox.views import child_key
from consumers.queue import QueueItem, QueueSelection, QueueStore
from consumers.reader import QueueReader, QueueView
from sgx.domain.family import DisclosureKind
from sgx.errors import AlreadyAsked, ContractError, Forbidden, NotFound, TransportError
from sgx.wire.ids import new_id

# (view, to_id, category, to_name, purpose, requested_by, request_id) -> the ShareDecision
AskShare = Callable[[QueueView, str, str, str, str, str, uuid.UUID], Awaitable[dict[str, Any]]]
# (view, category, purpose, requested_by, request_id) -> the gateway's first ConsentOutcome
AskConsent = Callable[[QueueView, str, str, str, uuid.UUID], Awaitable[dict[str, Any]]]
# request ids -> the latest answer (ShareDecision, ConsentOutcome) the gateway has published
# for each so far
FindAnswers = Callable[[set[uuid.UUID]], Awaitable[dict[uuid.UUID, dict[str, Any]]]]
PAGE_LIMIT = 500
ACKED_PAGE = 100  # acknowledged items shown at a time on the queue page


class NotYourCopy(Forbidden):
    """The caller sees this row only by its routing facts: it was sealed for someone else
    (``own``: the caller's own copy of the same notification, if any)."""

    def __init__(self, item: QueueItem, own: QueueItem | None) -> None:
        super().__init__(f"item {item.item_id} was sealed for {item.recipient_id}")
        self.item, self.own = item, own


class InboxMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sgx_inbox_requests",
            "HTTP requests by route template and status",
            ["route", "status"],
            registry=registry,
        )
        self.opened = Counter(
            "sgx_inbox_items_read",
            "Items read (each audited), by how",
            ["action"],
            registry=registry,
        )
        self.sign_ins = Counter(
            "sgx_inbox_sign_ins",
            "Sign-in attempts by method and outcome",
            ["method", "outcome"],
            registry=registry,
        )
        self.sign_in_refusals = Counter(
            "sgx_inbox_sign_in_refusals",
            "Local sign-ins refused, by why: bad_credentials (an unknown name or a wrong"
            " password, alike), throttled (too soon after failures), locked",
            ["reason"],
            registry=registry,
        )
        self.shares = Counter(
            "sgx_inbox_shares",
            "Onward shares asked for, by the gateway's answer",
            ["outcome"],
            registry=registry,
        )
        self.consents = Counter(
            "sgx_inbox_consent_requests",
            "Consents asked of authors, by the exchange's first word, then by the answer",
            ["outcome"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """Everything this caller may see that the LA received about one child, and the shares."""

    views: list[QueueView]
    shares: list[ShareRecord]


class Inbox:
    def __init__(
        self,
        *,
        la: str,
        queue: QueueStore,
        reader: QueueReader,
        store: InboxStore,
        ask_share: AskShare,
        metrics: InboxMetrics,
        find_answers: FindAnswers | None = None,
        ask_consent: AskConsent | None = None,
        find_consents: FindAnswers | None = None,
        send_response: SendResponse | None = None,
        find_response_receipts: FindReceipts | None = None,
        referral_contact: str = "",
    ) -> None:
        """``send_response`` sends the LA's signed response to a referral to the gateway
        and ``find_response_receipts`` reads the gateway's receipts for them
        (:mod:`consumers.inbox.referrals`); ``referral_contact`` is the contact a response
        offers the referrer unless the worker gives another."""
        self.la = la
        self.queue = queue
        self.reader = reader
        self.store = store
        self._ask_share = ask_share
        self._find_answers = find_answers
        self._ask_consent = ask_consent
        self._find_consents = find_consents
        self.metrics = metrics
        self.referral_contact = referral_contact
        self.referrals = ReferralDesk(
            store=store,
            open_item=self._opened,
            send=send_response,
            find_receipts=find_response_receipts,
            la=la,
        )

    async def _opened(self, who: Principal, item_id: int) -> QueueView:
        return await self.open(who, item_id, "opened")

    async def _audit(self, who: Principal, action: ReadAction, views: list[QueueView]) -> None:
        await self.store.record_reads(
            who, action, [(v.item.item_id, v.item.notification_id) for v in views]
        )
        self.metrics.opened.labels(action).inc(len(views))

    async def items(
        self,
        who: Principal,
        *,
        after: int = 0,
        limit: int | None = None,
        include_acked: bool = True,
    ) -> list[QueueItem]:
        """The caller's rows (not opened: routing facts only)."""
        who.require(READ)
        return await self.queue.select(
            who.selection(), after=after, limit=limit, include_acked=include_acked
        )

    async def acknowledged(
        self, who: Principal, *, before: int | None, limit: int = ACKED_PAGE
    ) -> list[QueueItem]:
        """The caller's acknowledged rows, newest first, a page at a time (below ``before``)."""
        who.require(READ)
        return await self.queue.newest(who.selection(), "acked", before=before, limit=limit)

    async def listed(self, who: Principal, items: list[QueueItem]) -> list[QueueView | QueueItem]:
        """Rows to show in a list: opened if the caller may open them (the child's name is a
        disclosure: audited), else as they are, by their routing facts."""
        shown = [await self.reader.open(i) if who.may_open(i) else i for i in items]
        await self._audit(who, "listed", [v for v in shown if isinstance(v, QueueView)])
        return shown

    async def item(self, who: Principal, item_id: int) -> QueueItem:
        """One row the caller may see (NotFound otherwise), not opened."""
        who.require(READ)
        try:
            item = await self.queue.get(item_id)
        except NotFound:  # the same words as for an item in another's queue: ids tell nothing
            raise NotFound(not_yours(item_id)) from None
        who.require_sees(item)
        return item

    async def open(self, who: Principal, item_id: int, action: ReadAction) -> QueueView:
        """The item opened, with the view of the recipient it was sealed for; NotYourCopy
        if the caller sees it only by its routing facts (a team member's, to a supervisor)."""
        item = await self.item(who, item_id)
        if not who.may_open(item):
            raise NotYourCopy(item, await self.own_copy(who, item))
        view = await self.reader.open(item)
        await self._audit(who, action, [view])
        return view

    async def own_copy(self, who: Principal, item: QueueItem) -> QueueItem | None:
        """The caller's own row of the same notification, if the gateway sent them one."""
        rows = await self.queue.select(
            QueueSelection(recipients=frozenset({who.subject})),
            notification_ids=[item.notification_id],
        )
        return rows[0] if rows else None

    async def ack(self, who: Principal, item_id: int) -> QueueItem:
        who.require(ACK)
        await self.item(who, item_id)
        return await self.queue.ack(item_id, who.subject)

    async def share(
        self, who: Principal, item_id: int, *, category: str, to_name: str, purpose: str
    ) -> ShareRecord:
        """Ask the gateway; the request is recorded first, its answer when it comes."""
        who.require(SHARE)
        view = await self.open(who, item_id, "opened")
        to_name, purpose = to_name.strip(), purpose.strip()
        if not purpose:
            raise ContractError("purpose", "say why the share is needed")
        if not to_name:
            raise ContractError("to_name", "say who would receive it")
        request_id = new_id()
        share_id = await self.store.share_asked(
            request_id=str(request_id),
            item_id=item_id,
            notification_id=view.item.notification_id,
            requested_by=who.subject,
            to_id=to_name,
            to_category=category,
            to_name=to_name,
            purpose=purpose,
        )
        try:
            decision = await self._ask_share(
                view, to_name, category, to_name, purpose, who.subject, request_id
            )
        except (TimeoutError, TransportError):
            self.metrics.shares.labels("pending").inc()  # answered() looks again when read
        else:
            await self._decided(request_id, decision)
        return await self.store.share(share_id)

    async def _decided(self, request_id: uuid.UUID, decision: dict[str, Any]) -> None:
        await self.store.share_decided(str(request_id), decision)
        self.metrics.shares.labels("allowed" if decision["allowed"] else "refused").inc()

    async def ask_consent(self, who: Principal, share_id: int) -> ConsentRecord:
        """Ask the author, through the exchange, for consent to a share the exchange refused
        for a restriction: the same recipient category and purpose. The request is recorded
        first, then the gateway's first word (ASKED, NOT_NEEDED or UNKNOWN_NOTIFICATION) when
        it comes; the author's answer later (:meth:`consents`). AlreadyAsked while an earlier
        request about the share waits for its answer, or was granted in full."""
        who.require(SHARE)
        share = await self.share_record(who, share_id)
        if share.allowed is not False or not share.broken or self._ask_consent is None:
            raise ContractError(
                "share", "only a share the exchange refused for a restriction needs consent"
            )
        for earlier in await self.consents([share.notification_id]):
            if earlier.share_id == share_id and (earlier.waiting or earlier.lifts):
                raise AlreadyAsked(_already(earlier))
        view = await self.open(who, share.item_id, "opened")
        request_id = new_id()
        consent_id = await self.store.consents.asked(
            request_id=str(request_id),
            share_id=share_id,
            item_id=share.item_id,
            notification_id=share.notification_id,
            category=share.to_category,
            purpose=share.purpose,
            requested_by=who.subject,
        )
        try:
            outcome = await self._ask_consent(
                view, share.to_category, share.purpose, who.subject, request_id
            )
        except (TimeoutError, TransportError):
            self.metrics.consents.labels("pending").inc()  # consents() looks again when read
        else:
            await self._heard(outcome)
        return await self.store.consents.get(consent_id)

    async def _heard(self, outcome: dict[str, Any]) -> None:
        if await self.store.consents.heard(outcome):
            self.metrics.consents.labels(outcome["state"].lower()).inc()

    async def consents(self, notification_ids: list[str]) -> list[ConsentRecord]:
        """The consent requests about these items, with the latest word on any still waiting
        for the author looked up (on the receipts topic) and recorded."""
        found = await self.store.consents.of(notification_ids)
        waiting = {uuid.UUID(r.request_id) for r in found if r.waiting}
        if not waiting or self._find_consents is None:
            return found
        try:
            latest = await self._find_consents(waiting)
        except TransportError:
            return found  # still waiting; looked up again next time
        recorded = {r.request_id: r.state for r in found}
        news = [o for o in latest.values() if o["state"] != recorded[str(o["request_id"])]]
        for outcome in news:
            await self._heard(outcome)
        return await self.store.consents.of(notification_ids) if news else found

    async def consent_record(self, who: Principal, consent_id: int) -> ConsentRecord:
        """One consent request about an item the caller may see, as it stands now."""
        found = await self.store.consents.get(consent_id)
        await self.item(who, found.item_id)
        if found.waiting:
            found = next(
                r for r in await self.consents([found.notification_id])
                if r.consent_id == consent_id
            )  # fmt: skip
        return found

    async def share_record(self, who: Principal, share_id: int) -> ShareRecord:
        """One share the caller asked for, or of an item the caller may see."""
        found = await self.store.share(share_id)
        await self.item(who, found.item_id)
        if found.allowed is None:
            (found,) = await self.answered([found])
        return found

    async def answered(self, shares: list[ShareRecord]) -> list[ShareRecord]:
        """``shares``, with the gateway's answer to any still pending looked up (an answer
        that came after the request gave up waiting) and recorded."""
        pending = {uuid.UUID(s.request_id) for s in shares if s.allowed is None}
        if not pending or self._find_answers is None:
            return shares
        try:
            answers = await self._find_answers(pending)
        except TransportError:
            return shares  # still pending; asked again next time
        for request_id, decision in answers.items():
            await self._decided(request_id, decision)
        if not answers:
            return shares
        return [await self.store.share(s.share_id) for s in shares]

    async def child(self, who: Principal, item_id: int) -> ChildRecord:
        """The child of ``item_id``: every item about them in the caller's queues (with the
        agencies' answers to the network checks asked from them), and every onward share
        asked of any of those (each item read is audited as ``record``). An answer's child
        is the child of the MASH item it was asked from."""
        who.require(RECORD)
        item = await self.item(who, item_id)
        if not who.may_open(item):  # a team member's copy: not even to find the child by
            raise NotYourCopy(item, await self.own_copy(who, item))
        anchor = await self.reader.open(item)
        if anchor.is_answer:
            anchor = await self._asked_from(who, anchor)
        key = child_key(anchor.notification)
        views: dict[str, QueueView] = {}  # one per notification (a supervisor sees two rows)
        answers: dict[str, QueueView] = {}  # by the request each answers
        for row in await self.queue.select(who.selection()):
            if not who.may_open(row):
                continue  # a team member's copy: the supervisor's own is in the selection
            view = await self.reader.open(row)
            if child_key(view.notification) == key:
                views.setdefault(row.notification_id, view)
            elif view.is_answer:
                answers[str(view.notification["request_id"])] = view
        items = {v.item.item_id for v in views.values()}
        for asked in await self.store.families.of(sorted(views)):
            answer = answers.get(asked.ref)
            if asked.kind == DisclosureKind.NETWORK_CHECK and asked.item_id in items and answer:
                views.setdefault(answer.item.notification_id, answer)
        found = list(views.values())
        await self._audit(who, "record", found)
        return ChildRecord(found, await self.answered(await self.store.shares(sorted(views))))

    async def _asked_from(self, who: Principal, answer: QueueView) -> QueueView:
        """The MASH item an answer's request was asked from, if the caller may open it
        (else the answer itself)."""
        ref = str(answer.notification["request_id"])
        try:
            asked = await self.store.families.get(DisclosureKind.NETWORK_CHECK, ref)
            item = await self.queue.get(asked.item_id)
        except NotFound:
            return answer
        if not who.sees(item) or not who.may_open(item):
            return answer
        return await self.reader.open(item)


def _already(earlier: ConsentRecord) -> str:
    if earlier.lifts:
        return (
            f"the author consented already (consent request {earlier.consent_id}): ask for "
            "the share again"
        )
    return (
        f"the author was asked already (consent request {earlier.consent_id}, "
        f"{(earlier.state or 'sent').lower()}): wait for the answer"
    )
