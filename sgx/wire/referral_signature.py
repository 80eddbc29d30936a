"""An LA's signature on its response to a referral, which the referrer verifies itself.

Every envelope is signed by its sender, but the gateway re-seals what it forwards, so an
envelope from the gateway proves only that the gateway sent it. A referrer is owed the
local authority's own word on its referral (issue 24): the LA signs the encoded
``ReferralResponse`` with its Ed25519 key, the gateway forwards the
``SignedReferralResponse`` unchanged, and the referrer checks the signature against the
trust directory. The gateway can carry the LA's words, or refuse to, but not change them.

The signed bytes are ``"SGX-REFERRAL-RESPONSE1" 0x00`` followed by the response's
single-object encoding exactly as carried; the key must be the answering LA's
(``local_authority``), valid at ``responded_at`` (the LA-written time, as an envelope's
``sealed_at``). A signature that does not verify is :class:`~sgx.errors.BadSignature`, a
key that is not the LA's or not valid then :class:`~sgx.errors.UnknownKey`: envelope
errors, quarantined with their reason wherever they are met.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature

from sgx.errors import BadSignature, ContractError, UnknownSender
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.wire import contract as c
from sgx.wire.contract import Contract

DOMAIN = b"SGX-REFERRAL-RESPONSE1\x00"


def sign_response(identity: Identity, contract: Contract, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (a ReferralResponse by ``identity``'s LA), checked, encoded and signed."""
    if record["local_authority"] != identity.party_id:
        raise ContractError(
            "local_authority",
            f"is not {identity.party_id}, who signs it",
            schema=c.REFERRAL_RESPONSE,
        )
    encoded = contract.encode(c.REFERRAL_RESPONSE, record)
    kid = identity.signing_kid
    return {
        "response": encoded,
        "signer_key_id": kid,
        "signature": identity.sign(DOMAIN + encoded, kid=kid),
    }


def verify_response(
    trust: TrustDirectory, contract: Contract, signed: dict[str, Any]
) -> dict[str, Any]:
    """The ReferralResponse inside ``signed``, once its LA's signature verifies."""
    record = contract.decode_as(c.REFERRAL_RESPONSE, signed["response"])
    la = record["local_authority"]
    try:
        party = trust.party(la)
    except UnknownSender as exc:
        raise BadSignature(
            f"the response names {la!r}, which is not in the trust directory"
        ) from exc
    if party.kind != "local_authority":
        raise BadSignature(f"the response names {la}, a {party.kind}, as the local authority")
    key = trust.verify_key(la, signed["signer_key_id"], record["responded_at"])
    try:
        key.verify(signed["signature"], DOMAIN + signed["response"])
    except InvalidSignature:
        raise BadSignature(f"{la}'s signature on the referral response does not verify") from None
    return record
