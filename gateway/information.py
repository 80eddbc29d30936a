"""Judging MASH information requests (network checks) and the agencies' answers.

**A request.** An LA's MASH asks one partner agency what it holds about a child (an
``InformationRequest`` in a SHARE_REQUEST envelope on the LA's inbound topic). The gateway
refuses it, telling the LA why (an ``InformationStatus``, REFUSED), unless: the agency is a
party that serves the LA, its kind is one the LA's agreement lets the MASH ask
(``[information_requests].asked``), and the rating has working hours in the agreement. The
family-informed decision is mandatory in the contract (told, or one of the exceptions), so
a request without it never gets this far. Otherwise the gateway sets the deadline (the
rating's working hours from now, :func:`sgx.domain.network_checks.working_hours_after`),
keeps of the child only the identifiers the agreement gives the agency's kind, records the
request as open (:mod:`gateway.information_book`), forwards it to the agency sealed for it
on ``sgx.receipts.<agency>`` and tells the LA it asked (ASKED, with the deadline and the
identifiers sent). Each decision is audited against the LA (``information_requested``).

**An answer.** The agency answers (an ``InformationAnswer`` in a NOTIFICATION envelope on
its own inbound topic). It is accepted only from the agency asked, naming the LA that
asked, for a request still open, and (when it says it was given by the agency's feed
without a person) only where the LA's agreement lets that kind answer automatically;
anything else is quarantined with its reason (kept, and replayable once the cause is
fixed). An accepted answer closes the request, is audited (``information_answered``, late
or not), acknowledged to the agency with a receipt and delivered to the asking LA's MASH
queue only, minimised for the MASH by the LA's agreement (whose default is all of it: the
MASH asked), with the agency's restrictions on onward use and the defaults, and kept in the
share ledger so an onward share of it is judged like a notification's
(:mod:`gateway.information_delivery`). The gateway's word on a request goes to the LA's
delivery topic too, where its consumer keeps it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from gateway.agreement import Agreement
from gateway.audit_chain import AuditEntry
from gateway.decision import Decision, Message, Quarantine, receipt
from gateway.information_book import InformationAnswered, InformationAsk, InformationBook
from gateway.information_delivery import (
    TYPE_LABEL,
    URGENCY,
    answer_ledger,
    deliver_answer,
    restriction_codes,
    status_message,
)
from gateway.partnership import Partnership
from sgx.domain.calendar import SchoolCalendar
from sgx.domain.network_checks import MATCH_FIELDS, working_hours_after
from sgx.errors import UnknownSender
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Purpose

_REMEMBERED = 10_000  # requests and answers this instance decided, against two in one batch
TYPE = "information_request"  # the audit's notification type of both records


class InformationJudge:
    def __init__(
        self,
        *,
        contract: Contract,
        partnership: Partnership,
        trust: TrustDirectory,
        calendar: SchoolCalendar,
        pseudonyms: Pseudonymiser,
        book: InformationBook,
    ) -> None:
        self._contract = contract
        self._partnership = partnership
        self._trust = trust
        self._calendar = calendar
        self._pseudonyms = pseudonyms
        self.book = book
        # Decided here and maybe not yet written (same batch): request id -> its ask, and
        # request id -> the answer that closed it.
        self._asked: OrderedDict[str, InformationAsk] = OrderedDict()
        self._closed: OrderedDict[str, str] = OrderedDict()

    async def ask(self, opened: Opened, record: dict[str, Any]) -> Decision:
        """An LA's information request: forwarded to the agency, or refused."""
        la = opened.sender.id
        if opened.sender.kind != "local_authority":
            raise Quarantine(
                "not_permitted_by_agreement", f"{opened.sender.kind} sent an information request"
            )
        if record["local_authority"] != la:
            raise Quarantine(
                "invalid_record",
                f"an information request from {la} names {record['local_authority']}",
            )
        if record["request_id"] != opened.message_id:
            raise Quarantine("invalid_record", "the request's id is not its envelope's message id")
        agency, rating = record["agency"], record["rating"]
        terms = self._partnership.agreement(la).information
        try:
            kind = self._trust.party(agency).kind
        except UnknownSender:
            return _refused(opened, record, f"{agency} is not a party of the exchange")
        if la not in self._trust.served(agency):
            return _refused(opened, record, f"{agency} does not serve {la}")
        if kind not in terms.asked:
            return _refused(opened, record, f"{la}'s agreement lets its MASH ask no {kind}")
        hours = terms.hours.get(rating)
        if hours is None:
            agreed = ", ".join(terms.hours) or "none"
            why = f"{la}'s agreement sets no time to answer a {rating} request (agreed: {agreed})"
            return _refused(opened, record, why)
        now = utc_now()
        deadline = working_hours_after(self._calendar, now, hours)
        deadline = deadline.replace(microsecond=deadline.microsecond // 1000 * 1000)
        sent = [f for f in MATCH_FIELDS if f in terms.match[kind] and record["child"].get(f)]
        child = {f: (record["child"][f] if f in sent else None) for f in MATCH_FIELDS}
        if not sent:
            matchable = ", ".join(terms.match[kind])
            why = f"the request names none of what a {kind} can match ({matchable})"
            return _refused(opened, record, why)
        informed = record["family_informed"]
        ask = InformationAsk(
            request_id=str(record["request_id"]),
            local_authority=la,
            agency=agency,
            agency_kind=kind,
            rating=rating,
            deadline=deadline,
            child_pseudonym=self._pseudonym(record["child"]),
            family_told=bool(informed["told"]),
            family_exception=informed.get("exception"),
            requested_by=record["requested_by"],
            requested_at=record["requested_at"],
        )
        self._remember(self._asked, ask.request_id, ask)
        family = "told" if ask.family_told else f"not told ({ask.family_exception})"
        why = (
            f"asked {agency} ({kind}), {rating} by {deadline.isoformat()} "
            f"({hours} working hours); family {family}; sent {', '.join(sent)}"
        )
        decision = Decision(outcome="information_asked", type_label=TYPE)
        decision.audit.append(_entry(opened, ask, "information_requested", "asked", why))
        forwarded = {**record, "deadline": deadline, "child": child}
        decision.messages.append(
            Message(agency, Purpose.SHARE_REQUEST, c.INFORMATION_REQUEST, forwarded)
        )
        decision.messages.append(
            status_message(la, _status(record, "ASKED", why, deadline=deadline, sent=sent))
        )
        decision.information.append(ask)
        return decision

    async def answer(self, opened: Opened, record: dict[str, Any]) -> Decision:
        """An agency's answer to a request the gateway forwarded to it."""
        request_id = str(record["request_id"])
        agency = opened.sender.id
        ask = self._asked.get(request_id) or await self.book.request(request_id)
        if ask is None:
            raise Quarantine(
                "unknown_information_request",
                f"{agency} answered information request {request_id}, which the gateway "
                "never forwarded",
            )
        if agency != ask.agency:
            raise Quarantine(
                "not_the_agency_asked",
                f"{agency} answered information request {request_id}, put to {ask.agency}",
            )
        if record["local_authority"] != ask.local_authority:
            raise Quarantine(
                "not_the_asking_la",
                f"{agency}'s answer names {record['local_authority']}; request {request_id} "
                f"was {ask.local_authority}'s",
            )
        if record["answer_id"] != opened.message_id:
            raise Quarantine("invalid_record", "the answer's id is not its envelope's message id")
        closed = ask.answer_id or self._closed.get(request_id)
        if closed == str(opened.message_id):
            # this very answer, judged again after a crash between the batch's commit and
            # its publish: delivered again (the audit records are found by their keys, the
            # ledger keeps its first entry, the queue ignores rows it holds)
            return self._answered(opened, record, ask)
        if closed is not None:
            raise Quarantine(
                "information_request_closed",
                f"information request {request_id} was answered already ({closed})",
            )
        terms = self._partnership.agreement(ask.local_authority).information
        if record["automatic"] and ask.agency_kind not in terms.auto_answer:
            raise Quarantine(
                "automatic_answer_not_agreed",
                f"{ask.local_authority}'s agreement lets no {ask.agency_kind} answer "
                "without a person",
            )
        self._remember(self._closed, request_id, str(opened.message_id))
        return self._answered(opened, record, ask)

    def _answered(self, opened: Opened, record: dict[str, Any], ask: InformationAsk) -> Decision:
        agreement = self._partnership.agreement(ask.local_authority)
        return _answered(opened, record, ask, agreement, self._contract)

    def _pseudonym(self, child: dict[str, Any]) -> str | None:
        key = self._pseudonyms.child_key(child.get("nhs_number"), child.get("upn"))
        return key.hex() if key else None

    @staticmethod
    def _remember(memory: OrderedDict[str, Any], key: str, value: Any) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > _REMEMBERED:
            memory.popitem(last=False)


def _status(
    record: dict[str, Any],
    state: str,
    reason: str,
    *,
    deadline: Any = None,
    sent: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "request_id": UUID(str(record["request_id"])),
        "agency": record["agency"],
        "rating": record["rating"],
        "state": state,
        "deadline": deadline,
        "identifiers_sent": sent or [],
        "reason": reason,
        "decided_at": utc_now(),
    }


def _entry(
    opened: Opened,
    ask: InformationAsk,
    decision: str,
    reason: str,
    detail: str,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    restrictions: tuple[str, ...] = (),
) -> AuditEntry:
    return AuditEntry(
        decision=decision,
        message_id=str(opened.message_id),
        notification_id=ask.request_id,
        sender=sender or ask.local_authority,
        recipient=recipient or ask.agency,
        recipient_role="mash_duty",
        local_authority=ask.local_authority,
        notification_type=TYPE,
        child_pseudonym=ask.child_pseudonym,
        reason=reason,
        lawful_basis=None,
        consent=None,
        no_consent_reason=ask.family_exception,
        restrictions=restrictions,
        withheld=(),
        detail=detail,
        decided_at=utc_now(),
    )


def _refused(opened: Opened, record: dict[str, Any], why: str) -> Decision:
    la = opened.sender.id
    decision = Decision(outcome="information_refused", type_label=TYPE)
    decision.audit.append(
        AuditEntry(
            decision="refused", message_id=str(opened.message_id),
            notification_id=str(record["request_id"]), sender=la, recipient=None,
            recipient_role="mash_duty", local_authority=la, notification_type=TYPE,
            child_pseudonym=None, reason="information_request_refused", lawful_basis=None,
            consent=None, no_consent_reason=None, restrictions=(), withheld=(),
            detail=f"information request to {record['agency']}: {why}", decided_at=utc_now(),
        )
    )  # fmt: skip
    decision.messages.append(status_message(la, _status(record, "REFUSED", why)))
    return decision


def _answered(
    opened: Opened,
    record: dict[str, Any],
    ask: InformationAsk,
    agreement: Agreement,
    contract: Contract,
) -> Decision:
    outcome, by = record["outcome"], record["answered_by"]
    late = record["answered_at"] > ask.deadline or utc_now() > ask.deadline
    said = f"{outcome.lower()} by {by}" + (" (automatically)" if record["automatic"] else "")
    said += f"; {'late: due' if late else 'due'} {ask.deadline.isoformat()}"
    codes = restriction_codes(record, ask.agency_kind)
    la, now = ask.local_authority, utc_now()
    decision = Decision(outcome="information_answered", type_label=TYPE_LABEL)
    mash = {"id": f"mash:{la}", "role": "MASH_DUTY", "team": "MASH", "name": "MASH duty"}
    entry = _entry(
        opened, ask, "information_answered", "late" if late else "in_time",
        f"request {ask.request_id}: {said}; delivered to {mash['id']}", sender=ask.agency,
        recipient=mash["id"], restrictions=codes,
    )  # fmt: skip
    key = bytes.fromhex(ask.child_pseudonym) if ask.child_pseudonym else opened.message_id.bytes
    deliver_answer(
        decision, la=la, record=record, plaintext=opened.plaintext, recipient=mash,
        reason="REQUESTING_LA_MASH", sender_agency=ask.agency, sender_kind=ask.agency_kind,
        codes=codes, urgency=URGENCY.get(ask.rating, "PRIORITY"), key=key, audit=entry,
        routed_at=now, agreement=agreement, contract=contract,
    )  # fmt: skip
    decision.ledger.append(
        answer_ledger(
            record=record, la=la, sender=ask.agency, sender_kind=ask.agency_kind,
            child_pseudonym=ask.child_pseudonym, codes=codes, at=now,
        )
    )  # fmt: skip
    decision.information.append(
        InformationAnswered(
            ask.request_id, str(opened.message_id), outcome, by, bool(record["automatic"]),
            record["answered_at"],
        )
    )  # fmt: skip
    decision.receipt = (
        ask.agency,
        receipt(opened.message_id, "DELIVERED", "information_answered",
                f"{said}; passed to {la}'s MASH"),
    )  # fmt: skip
    return decision
