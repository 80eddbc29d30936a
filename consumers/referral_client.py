"""An LA's responses to referrals: signed by the LA, sent to the gateway, receipted.

The LA signs its ``ReferralResponse`` (:mod:`sgx.wire.referral_signature`) so the referrer
can check the words are the LA's, seals the ``SignedReferralResponse`` for the gateway
and publishes it on its inbound topic (purpose NOTIFICATION, message id = the response
id), like any record it sends. The gateway forwards it to the referrer only and answers
the LA with a receipt (DELIVERED: passed to the referrer; QUARANTINED: e.g. addressed to
an agency that did not refer) on the LA's receipts topic. The LA's consumer keeps each
receipt as a row (:mod:`consumers.answer_rows`), which :meth:`ReferralResponder.receipts`
reads by the response's id.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from consumers.answer_rows import AnswerRows
from sgx.errors import ConfigError
from sgx.kafka.wiring import inbound_topic, kafka_errors
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Purpose, Sealer
from sgx.wire.referral_signature import sign_response


class ReferralResponder:
    """Sends one LA's signed responses to referrals and finds the gateway's receipts."""

    def __init__(
        self,
        *,
        identity: Identity,
        trust: TrustDirectory,
        contract: Contract,
        producer: AIOKafkaProducer,
        rows: AnswerRows | None = None,
    ) -> None:
        """``rows``: the receipts the LA's consumer keeps (in the LA's queue database);
        None for a responder that only sends."""
        self._identity = identity
        self._contract = contract
        self._producer = producer
        self._rows = rows
        self._sealer = Sealer(identity, trust, "gateway")

    def signed(self, response: dict[str, Any]) -> dict[str, Any]:
        """``response`` (a ReferralResponse of this LA) signed by the LA."""
        return sign_response(self._identity, self._contract, response)

    async def send(self, response: dict[str, Any]) -> None:
        """Sign ``response`` and publish it for the gateway; returns once the broker has it
        (TransportError if it cannot be reached)."""
        plaintext = self._contract.encode(c.SIGNED_REFERRAL_RESPONSE, self.signed(response))
        message_id = uuid.UUID(str(response["response_id"]))
        value = self._sealer.seal(Purpose.NOTIFICATION, message_id, plaintext)
        # keyed by the referral: an LA's responses to one referral reach the gateway in the
        # order sent (one partition). Unkeyed, a decision could be judged before the
        # acknowledgement sent first, which the gateway then refused as a second one.
        key = str(response["referral_id"]).encode()
        async with kafka_errors("publish a referral response"):
            topic = inbound_topic(self._identity.party_id)
            await (await self._producer.send(topic, value, key=key))

    async def receipts(self, response_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """The gateway's receipts for these responses that the LA's consumer has kept (a
        response not judged yet is not in the result): a look-up by message id."""
        if self._rows is None:
            raise ConfigError("this referral responder sends only: it was given no receipt rows")
        return await self._rows.receipts_for(sorted(response_ids))
