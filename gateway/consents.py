"""Judging consent requests and the authors' answers.

**A request.** A local authority whose onward share was refused for want of the author's
consent asks for it (a ``ConsentRequest`` in a SHARE_REQUEST envelope on its inbound
topic). The gateway checks that it delivered the item to that LA (the share ledger) and
that the share would break a restriction; then it forwards the request to the author's
agency, sealed for it on ``sgx.receipts.<author>`` with the restrictions in question, and
tells the LA it asked (a ``ConsentOutcome``, state ASKED). The forwarded request names the
item by the author's own notification id, the recipient category and the purpose: nothing
of the record the author does not already hold. An item the gateway never delivered to
the LA is answered UNKNOWN_NOTIFICATION, a share nothing forbids NOT_NEEDED; neither goes
to the author.

**An answer.** The author's agency answers (a ``ConsentAnswer`` in a NOTIFICATION
envelope on its own inbound topic or its connector's, signed with its key like everything
it sends). Only the agency the request was put to may answer it; an answer to a request
the gateway never forwarded, or from another agency, is quarantined with its reason
(kept, and replayable once the cause is fixed). The first answer stands: a later,
different one is refused and the author told so. The answer is written on the request's
row (:mod:`gateway.consent_book`), audited (``consent_granted`` or ``consent_refused``),
acknowledged to the author with a receipt and passed to the LA as a ``ConsentOutcome``.

A grant lifts the restrictions for exactly that item, LA, category and purpose
(:mod:`gateway.shares` asks for it when the share comes); police material confidential
to the proceedings stays barred unless the grant records the court order
(:data:`sgx.domain.consent.COURT_ORDER_ONLY`), and the outcome says so (``still_blocked``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from gateway.consent_book import ConsentAnswered, ConsentAsk, ConsentBook
from gateway.decision import Decision, Message, Quarantine, onward_entry, receipt
from gateway.records import LedgerEntry
from gateway.store import GatewayStore
from sgx.domain.consent import Grant, blocking, purpose_key, still_blocked
from sgx.keys.trust import utc_now
from sgx.wire import contract as c
from sgx.wire.envelope import Opened, Purpose

_REMEMBERED = 10_000  # answers this instance decided, against two in one batch


class ConsentJudge:
    def __init__(self, *, store: GatewayStore, book: ConsentBook) -> None:
        self._store = store
        self._book = book
        # The answers decided here and maybe not yet written (same batch): request → answer.
        # An author's answers to one request share a partition (keyed by request id), so
        # one instance sees them in order; the book covers everything written before.
        self._decided: OrderedDict[str, str] = OrderedDict()

    async def ask(self, opened: Opened, record: dict[str, Any]) -> Decision:
        """An LA's consent request: forwarded to the author, or answered at once."""
        la = opened.sender.id
        if record["local_authority"] != la:
            raise Quarantine(
                "invalid_record", f"a consent request from {la} names {record['local_authority']}"
            )
        notification_id, category = str(record["notification_id"]), record["category"]
        ledger = await self._store.ledger_entry(notification_id, la)
        if ledger is None:
            why = "the gateway delivered no such notification to this LA"
            return _asked(opened, record, None, [], "UNKNOWN_NOTIFICATION", why)
        blocked = blocking(ledger.restrictions, ledger.onward_consent, category)
        if not blocked:
            why = f"no restriction forbids sharing it with {category}: no consent is needed"
            return _asked(opened, record, ledger, [], "NOT_NEEDED", why)
        wanted = purpose_key(record["purpose"])
        for grant in await self._book.grants(notification_id, la, category):
            if purpose_key(grant.purpose) == wanted and not still_blocked(blocked, grant):
                why = f"the author consented already (consent request {grant.request_id})"
                return _asked(opened, record, ledger, [], "NOT_NEEDED", why)
        why = f"asked {ledger.sender} (the author) about {', '.join(blocked)}"
        decision = _asked(opened, record, ledger, blocked, "ASKED", why)
        forwarded = {**record, "local_authority": la, "blocking": blocked}
        decision.messages.append(
            Message(ledger.sender, Purpose.SHARE_REQUEST, c.CONSENT_REQUEST, forwarded)
        )
        decision.consents.append(
            ConsentAsk(
                request_id=str(record["request_id"]),
                notification_id=notification_id,
                local_authority=la,
                requested_by=record["requested_by"],
                author=ledger.sender,
                author_kind=ledger.sender_kind,
                category=category,
                purpose=record["purpose"],
                blocking=tuple(blocked),
                requested_at=record["requested_at"],
            )
        )
        return decision

    async def answer(self, opened: Opened, record: dict[str, Any]) -> Decision:
        """The author's answer to a request the gateway forwarded to it."""
        request_id = str(record["request_id"])
        ask = await self._book.request(request_id)
        author = opened.sender.id
        if ask is None:
            raise Quarantine(
                "unknown_consent_request",
                f"{author} answered consent request {request_id}, which the gateway never "
                "forwarded",
            )
        if author != ask.author:
            raise Quarantine(
                "not_the_author", f"{author} answered a consent request put to {ask.author}"
            )
        if str(record["notification_id"]) != ask.notification_id:
            raise Quarantine("invalid_record", "the answer names another item than the request")
        if record["answer_id"] != opened.message_id:
            raise Quarantine("invalid_record", "the answer's id is not its envelope's message id")
        ledger = await self._store.ledger_entry(ask.notification_id, ask.local_authority)
        answer_id = str(opened.message_id)
        prior = ask.answer_id or self._decided.get(request_id)
        if prior is not None and prior != answer_id:
            return _already(opened, ask, ledger, prior)
        self._remember(request_id, answer_id)
        return _answered(opened, record, ask, ledger)

    def _remember(self, request_id: str, answer_id: str) -> None:
        self._decided[request_id] = answer_id
        self._decided.move_to_end(request_id)
        while len(self._decided) > _REMEMBERED:
            self._decided.popitem(last=False)


def _facts(ask: ConsentAsk) -> dict[str, Any]:
    """What a stored request says about itself, as the fields of its record."""
    return {
        "request_id": ask.request_id,
        "notification_id": ask.notification_id,
        "local_authority": ask.local_authority,
        "category": ask.category,
        "purpose": ask.purpose,
    }


def _outcome(
    about: dict[str, Any],
    author: str,
    state: str,
    reason: str,
    *,
    answered_by: str | None = None,
    court_order: str | None = None,
    blocked: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "request_id": UUID(str(about["request_id"])),
        "notification_id": UUID(str(about["notification_id"])),
        "category": about["category"],
        "purpose": about["purpose"],
        "state": state,
        "author": author,
        "answered_by": answered_by,
        "court_order": court_order,
        "still_blocked": blocked or [],
        "reason": reason,
        "decided_at": utc_now(),
    }


def _asked(
    opened: Opened,
    record: dict[str, Any],
    ledger: LedgerEntry | None,
    blocked: list[str],
    state: str,
    why: str,
) -> Decision:
    """The decision on a request, and the LA's word of it."""
    la = opened.sender.id
    author = ledger.sender if ledger else ""
    decision = Decision(outcome="consent_" + state.lower(), type_label="consent_request")
    decision.audit.append(
        onward_entry(
            "consent_requested", opened, record, ledger, sender=la,
            recipient=author if state == "ASKED" else None, reason=state.lower(),
            restrictions=blocked,
            detail=f"by {record['requested_by']} for {record['purpose']!r}: {why}",
        )
    )  # fmt: skip
    decision.messages.append(
        Message(la, Purpose.SHARE_DECISION, c.CONSENT_OUTCOME, _outcome(record, author, state, why))
    )
    return decision


def _answered(
    opened: Opened, record: dict[str, Any], ask: ConsentAsk, ledger: LedgerEntry | None
) -> Decision:
    granted = bool(record["granted"])
    by, court_order = record["answered_by"], record["court_order"]
    grant = Grant(ask.request_id, ask.purpose, by, court_order) if granted else None
    blocked = still_blocked(ask.blocking, grant) if granted else []
    state = "GRANTED" if granted else "REFUSED"
    said = f"{state.lower()} by {by} (key {opened.sender_key_id})"
    if court_order:
        said += f" under court order {court_order!r}"
    if record["reason"]:
        said += f": {record['reason']}"
    if blocked:
        said += f"; the share stays barred by {', '.join(blocked)} until a court order is recorded"
    decision = Decision(outcome="consent_" + state.lower(), type_label="consent_answer")
    decision.audit.append(
        onward_entry(
            "consent_" + state.lower(), opened, _facts(ask), ledger, sender=ask.author,
            recipient=ask.local_authority, reason="author_answered", restrictions=ask.blocking,
            detail=f"request {ask.request_id} for {ask.purpose!r}: {said}",
        )
    )  # fmt: skip
    decision.consents.append(
        ConsentAnswered(
            ask.request_id, state, str(opened.message_id), by, court_order, record["reason"],
            record["answered_at"],
        )
    )  # fmt: skip
    decision.messages.append(
        Message(
            ask.local_authority,
            Purpose.SHARE_DECISION,
            c.CONSENT_OUTCOME,
            _outcome(_facts(ask), ask.author, state, said, answered_by=by, court_order=court_order,
                     blocked=blocked),
        )
    )  # fmt: skip
    decision.receipt = (
        ask.author,
        receipt(opened.message_id, "DELIVERED", "consent_recorded", f"{said}; passed to "
                f"{ask.local_authority}"),
    )  # fmt: skip
    return decision


def _already(opened: Opened, ask: ConsentAsk, ledger: LedgerEntry | None, prior: str) -> Decision:
    stood = f" ({ask.answer.lower()} by {ask.answered_by})" if ask.answer else ""
    why = f"consent request {ask.request_id} was answered already by {prior}{stood}: it stands"
    decision = Decision(outcome="refused", type_label="consent_answer")
    decision.audit.append(
        onward_entry(
            "refused", opened, _facts(ask), ledger, sender=ask.author,
            recipient=ask.local_authority, reason="already_answered",
            restrictions=ask.blocking, detail=why,
        )
    )  # fmt: skip
    decision.receipt = (ask.author, receipt(opened.message_id, "REFUSED", "already_answered", why))
    return decision
