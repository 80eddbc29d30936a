"""The gateway's judgement of one inbound record, as data.

``Judge.judge`` turns one Kafka record into a :class:`~gateway.decision.Decision`: what to
audit, what to quarantine, whom to deliver to (minimised, with restrictions), what to tell
the sender. It does no Kafka I/O; the service batches decisions, writes them to the audit
trail in one transaction, then seals and publishes.

It verifies and opens the envelope, checks that the sender wrote to its own topic, and
hands the record to the judge of its kind:

* a NOTIFICATION envelope holding a notification type: :mod:`gateway.notifications`
  (routed by the child, :mod:`gateway.routing`, under each receiving LA's agreement);
* a NOTIFICATION envelope holding a ``DisclosureRequest``: :mod:`gateway.protocol`;
* an ALLOCATIONS envelope, read from the LA's allocation topic:
  :mod:`gateway.allocation_updates` (on an inbound topic it is quarantined: allocation
  updates must reach every gateway instance, :mod:`gateway.allocation_feed`);
* a NOTIFICATION envelope holding a ``ConsentAnswer`` (an author answering a consent
  request): :mod:`gateway.consents`;
* a NOTIFICATION envelope holding a ``SignedReferralResponse`` (an LA acknowledging or
  deciding a referral): :mod:`gateway.referral_responses`, to the referrer only;
* a NOTIFICATION envelope holding an ``InformationAnswer`` (an agency answering a MASH's
  information request): :mod:`gateway.information`;
* a SHARE_REQUEST envelope (a share, or a consent request): :mod:`gateway.shares`; one
  holding an ``InformationRequest`` (a network check): :mod:`gateway.information`.

Anything that fails verification, decoding or a check is quarantined with its reason.
"""

from __future__ import annotations

from gateway.allocation_feed import AllocationFeed
from gateway.allocation_updates import AllocationJudge
from gateway.connectors import CONNECTOR_MISMATCH, check_connector
from gateway.consent_book import ConsentBook
from gateway.decision import (
    Decision,
    Quarantine,
    duplicate,
    identifier_quality,
    quarantine,
    replayed,
)
from gateway.information import InformationJudge
from gateway.notifications import NotificationJudge
from gateway.partnership import Partnership
from gateway.protocol import DisclosureRequestJudge
from gateway.records import Judged
from gateway.referral_responses import ReferralResponseJudge
from gateway.referrals import ReferralClock
from gateway.requests import DisclosureRequests
from gateway.routing import Router
from gateway.shares import ShareJudge
from gateway.store import GatewayStore
from sgx.errors import ContractError, EnvelopeError, UnknownSender
from sgx.kafka.quarantine import Source, reason_of
from sgx.kafka.wiring import ALLOCATIONS_PREFIX, INBOUND_PREFIX, agency_of, allocations_topic
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import TrustDirectory, utc_now
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Opener, Purpose

INBOUND_PURPOSES = frozenset({Purpose.NOTIFICATION, Purpose.ALLOCATIONS, Purpose.SHARE_REQUEST})


class Judge:
    """Verifies, opens and validates inbound records, and routes each to its judge."""

    def __init__(
        self,
        *,
        opener: Opener,
        contract: Contract,
        partnership: Partnership,
        feed: AllocationFeed,
        store: GatewayStore,
        pseudonyms: Pseudonymiser,
        trust: TrustDirectory,
        requests: DisclosureRequests,
        consents: ConsentBook,
        referrals: ReferralClock | None = None,
        information: InformationJudge | None = None,
    ) -> None:
        self._opener = opener
        self._contract = contract
        self._trust = trust
        self._notifications = NotificationJudge(
            contract=contract,
            partnership=partnership,
            router=Router(feed.directory, trust, partnership),
            pseudonyms=pseudonyms,
            trust=trust,
            requests=requests,
            referrals=referrals,
        )
        self._requests = DisclosureRequestJudge(
            pseudonyms=pseudonyms, trust=trust, requests=requests
        )
        self._responses = (
            ReferralResponseJudge(contract=contract, trust=trust, book=referrals.book)
            if referrals is not None
            else None
        )
        self._allocations = AllocationJudge(contract=contract, feed=feed, trust=trust)
        self._shares = ShareJudge(
            contract=contract, partnership=partnership, store=store, book=consents
        )
        self._information = information

    def open(self, source: Source) -> Opened:
        """Verify and open one envelope (EnvelopeError if it does not open): what a batch
        is looked up by (its verified senders and message ids) before it is judged."""
        return self._opener.open(source.envelope(), purposes=INBOUND_PURPOSES)

    async def judge(
        self,
        source: Source,
        judged: dict[tuple[str, str], Judged] | None = None,
        opened: Opened | EnvelopeError | None = None,
    ) -> Decision:
        """The decision on one envelope read from an agency's inbound topic or an LA's
        allocation topic.

        ``judged`` holds the messages of the batch already judged (from the store, by
        sender and message id); a copy of one read elsewhere is a duplicate. Each message
        judged here is added to it, so a second copy in the same batch is one too.
        ``opened`` is what :meth:`open` made of it already (the envelope, or why it did
        not open), so its header is read once; None: it is opened here.
        """
        try:
            if opened is None:
                opened = self.open(source)
            elif isinstance(opened, EnvelopeError):
                raise opened
            self._check_topic(source, opened)
            key = (opened.sender.id, str(opened.message_id))
            prior = judged.get(key) if judged is not None else None
            if prior is not None and prior.where != source.where:
                return duplicate(source, opened, prior, self._la_of(source))
            decision = await self._judged(source, opened)
        except (EnvelopeError, ContractError) as exc:
            reason, detail = reason_of(exc), str(exc)
            answer = self._answer_to(source, _opened(opened), reason)
            return quarantine(source, reason, detail, self._la_of(source), answer=answer)
        except Quarantine as exc:
            answer = self._answer_to(source, _opened(opened), exc.reason)
            return quarantine(source, exc.reason, exc.detail, self._la_of(source), answer=answer)
        if source.origin is not None:
            decision.audit = [replayed(entry, source.origin) for entry in decision.audit]
        decision.judged = Judged(
            *key, source.topic, source.partition, source.offset, source.item,
            decision.outcome, decision.type_label, utc_now(),
        )  # fmt: skip
        if judged is not None:
            judged.setdefault(key, decision.judged)
        return decision

    def _check_topic(self, source: Source, opened: Opened) -> None:
        """Quarantine an envelope its sender may not write to the topic it was read from."""
        if source.topic.startswith(ALLOCATIONS_PREFIX):
            if opened.purpose is not Purpose.ALLOCATIONS:
                what = f"a {opened.purpose.value} envelope on an allocation topic"
                raise Quarantine("wrong_topic", what)
            return  # the sender's own allocation topic: checked by the allocation judge
        if source.origin is not None and not source.origin.startswith(INBOUND_PREFIX):
            raise Quarantine("wrong_topic", f"a replay names {source.origin}, not an inbound topic")
        check_connector(self._trust, opened, source.written_to)
        if opened.purpose is Purpose.ALLOCATIONS:
            where = allocations_topic(opened.sender.id)
            raise Quarantine(
                "wrong_topic",
                f"an allocation update on {source.topic}: an LA publishes them to {where}, "
                "which every gateway instance reads",
            )

    async def _judged(self, source: Source, opened: Opened) -> Decision:
        """One opened envelope, checked against its topic, to the judge of its kind."""
        if opened.purpose is Purpose.ALLOCATIONS:
            return await self._allocations.judge(source, opened)
        if opened.purpose is Purpose.NOTIFICATION:
            return await self._routed(opened)
        name, record = self._contract.decode(opened.plaintext)
        if name == c.INFORMATION_REQUEST:
            return await self._info().ask(opened, record)
        return await self._shares.judge(opened, name, record)

    def _info(self) -> InformationJudge:
        if self._information is None:
            raise Quarantine("not_permitted_by_agreement", "this gateway takes no network checks")
        return self._information

    async def _routed(self, opened: Opened) -> Decision:
        """A NOTIFICATION envelope: dispatch on the schema of the record it carries."""
        name, record = self._contract.decode(opened.plaintext)
        if name == c.DISCLOSURE_REQUEST:
            return await self._requests.judge(opened, record)
        if name == c.CONSENT_ANSWER:
            return await self._shares.answer(opened, record)
        if name == c.SIGNED_REFERRAL_RESPONSE and self._responses is not None:
            return await self._responses.judge(opened, record)
        if name == c.INFORMATION_ANSWER:
            return await self._info().answer(opened, record)
        if name not in c.NOTIFICATION_TYPES:
            raise Quarantine("invalid_record", f"a NOTIFICATION envelope holds a {name}")
        decision = await self._notifications.judge(opened, name, record)
        decision.identifier = (opened.sender.id, identifier_quality(record["child"]))
        return decision

    def _answer_to(self, source: Source, opened: Opened | None, reason: str) -> str | None:
        """Whom to tell of a quarantined record: the agency whose own topic it was read
        from (as ever); on a connector's topic, the agency that signed it, if it opened
        and was not copied there from another connector's topic (its own connector then
        has it, and a QUARANTINED receipt would contradict the answer to that copy)."""
        writer = agency_of(source.written_to)
        if self._trust.connector(writer) is None:
            return writer
        if opened is None or reason == CONNECTOR_MISMATCH:
            return None
        return opened.sender.id

    def _la_of(self, source: Source) -> str | None:
        """The LA whose topic a quarantined record came from, if it is an LA's."""
        try:
            party = self._trust.party(agency_of(source.written_to))
        except (UnknownSender, ValueError):
            return None
        return party.id if party.kind == "local_authority" else None


def _opened(opened: Opened | EnvelopeError | None) -> Opened | None:
    """The envelope, if it opened (a refusal's receipt goes to its signer)."""
    return opened if isinstance(opened, Opened) else None
