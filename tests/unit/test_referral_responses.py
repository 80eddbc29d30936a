"""An LA's response to a referral: the contract's rules, the LA's signature (which the
gateway cannot forge or alter), the referrer's receipt listener keeping only what
verifies, and the inbox's view of a referral's deadlines."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.inbox.referral_store import ResponseRecord
from consumers.inbox.referrals import ReferralState
from producers.outbox import OutboxStore
from producers.receipts import ReceiptRecorder
from producers.referral_outcomes import ReferralOutcomes
from safeguard.parties import DEMO_PARTIES, GP, LA, OTHER_LA, SCHOOL
from sgx.errors import BadSignature, ContractError, UnknownKey
from sgx.keys.identity import Identity
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import TrustDirectory
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from sgx.wire.envelope import Opener, Purpose, Sealer
from sgx.wire.referral_signature import DOMAIN, sign_response, verify_response
from tests.unit.test_outbox import Record

NOW = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)


def response(**changes: Any) -> dict[str, Any]:
    return {
        "response_id": uuid.uuid4(),
        "referral_id": uuid.uuid4(),
        "local_authority": LA,
        "referrer": GP,
        "stage": "DECIDED",
        "decision": "EARLY_HELP",
        "reasons": "Needs are best met by early help.",
        "next_steps": None,
        "la_contact": "Camden MASH, 020 7974 3317",
        "la_reference": "MASH-1",
        "responded_by": "Mo Duty, MASH duty",
        "responded_at": NOW,
    } | changes


@pytest.fixture(scope="module")
def trust_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust")
    init_trust(path, DEMO_PARTIES)
    return path


@pytest.fixture(scope="module")
def trust(trust_dir: Path) -> TrustDirectory:
    return TrustDirectory.load(trust_dir)


def identity(trust_dir: Path, party: str) -> Identity:
    return Identity.load(trust_dir, party)


@pytest.mark.parametrize(
    ("changes", "path", "problem"),
    [
        ({"decision": None}, "decision", "is required when stage is DECIDED"),
        ({"stage": "ACKNOWLEDGED"}, "decision", "an acknowledgement decides nothing yet"),
        ({"la_contact": " "}, "la_contact", "must not be empty"),
        ({"responded_by": ""}, "responded_by", "must not be empty"),
        ({"referrer": ""}, "referrer", "must not be empty"),
    ],
)
def test_the_contract_names_what_a_response_lacks(
    changes: dict[str, Any], path: str, problem: str
) -> None:
    with pytest.raises(ContractError, match=problem) as refused:
        default_contract().check(c.REFERRAL_RESPONSE, response(**changes))
    assert refused.value.path == path


def test_an_acknowledgement_decides_nothing_and_round_trips() -> None:
    contract = default_contract()
    ack = response(stage="ACKNOWLEDGED", decision=None, reasons=None)
    assert contract.decode(contract.encode(c.REFERRAL_RESPONSE, ack)) == (c.REFERRAL_RESPONSE, ack)


def test_the_la_s_signature_verifies_and_any_change_does_not(
    trust_dir: Path, trust: TrustDirectory
) -> None:
    contract = default_contract()
    said = response()
    signed = sign_response(identity(trust_dir, LA), contract, said)
    assert verify_response(trust, contract, signed) == said
    changed = contract.encode(c.REFERRAL_RESPONSE, said | {"decision": "NO_FURTHER_ACTION"})
    with pytest.raises(BadSignature, match="does not verify"):
        verify_response(trust, contract, signed | {"response": changed})
    flipped = bytes([signed["signature"][0] ^ 1]) + signed["signature"][1:]
    with pytest.raises(BadSignature):
        verify_response(trust, contract, signed | {"signature": flipped})


def test_another_la_cannot_sign_for_camden(trust_dir: Path, trust: TrustDirectory) -> None:
    contract = default_contract()
    islington = identity(trust_dir, OTHER_LA)
    with pytest.raises(ContractError, match="is not la-islington, who signs it"):
        sign_response(islington, contract, response())  # names Camden
    encoded = contract.encode(c.REFERRAL_RESPONSE, response())
    forged = {
        "response": encoded,
        "signer_key_id": islington.signing_kid,
        "signature": islington.sign(DOMAIN + encoded),
    }
    with pytest.raises(UnknownKey, match="la-camden has no key"):
        verify_response(trust, contract, forged)
    school = identity(trust_dir, SCHOOL)
    by_school = {
        "response": contract.encode(c.REFERRAL_RESPONSE, response(local_authority=SCHOOL)),
        "signer_key_id": school.signing_kid,
        "signature": b"\0" * 64,
    }
    with pytest.raises(BadSignature, match="a school, as the local authority"):
        verify_response(trust, contract, by_school)


async def test_the_referrer_keeps_what_verifies_and_quarantines_the_rest(
    trust_dir: Path, trust: TrustDirectory, tmp_path: Path
) -> None:
    contract = default_contract()
    gateway = Sealer(identity(trust_dir, "gateway"), trust, GP)
    good = sign_response(identity(trust_dir, LA), contract, response())
    tampered = good | {
        "response": contract.encode(c.REFERRAL_RESPONSE, response(decision="NO_FURTHER_ACTION"))
    }
    for_another = sign_response(identity(trust_dir, LA), contract, response(referrer=SCHOOL))
    values = [
        gateway.seal(Purpose.RECEIPTS, uuid.uuid4(), contract.encode(c.SIGNED_REFERRAL_RESPONSE, s))
        for s in (good, tampered, for_another)
    ]
    topic = f"sgx.receipts.{GP}"
    async with await OutboxStore.open(None, tmp_path / "outbox.db", owner=GP) as store:
        recorder = ReceiptRecorder(
            store=store, agency=GP, opener=Opener(identity(trust_dir, GP), trust),
            contract=contract, trust=trust,
        )  # fmt: skip
        await recorder.record([Record(topic, 0, i, v) for i, v in enumerate(values)])
        heard = await ReferralOutcomes(store.engine).of(GP)
        assert [h.response_id for h in heard] == [uuid.UUID(str(response_id(good)))]
        assert heard[0].decision == "EARLY_HELP"
        assert heard[0].signed_response == good["response"]
        kept = [(q.offset, q.reason) for q in await store.quarantine_list(GP)]
        assert kept == [(1, "bad_signature"), (2, "invalid_record")]
        again = ReceiptRecorder(
            store=store, agency=GP, opener=Opener(identity(trust_dir, GP), trust),
            contract=contract,
        )  # fmt: skip
        await again.record([Record(topic, 0, 9, values[0])])  # no directory: not kept as the LA's
        assert len(await ReferralOutcomes(store.engine).of(GP)) == 1


def response_id(signed: dict[str, Any]) -> str:
    return str(default_contract().decode_as(c.REFERRAL_RESPONSE, signed["response"])["response_id"])


def _row(stage: str, outcome: str | None, decision: str | None = None) -> ResponseRecord:
    return ResponseRecord(
        1, str(uuid.uuid4()), 1, "n-1", GP, stage, decision, None, None, "c", None, "sw", "x",
        NOW, NOW, outcome, None,
    )  # fmt: skip


def test_the_inbox_shows_what_is_due_next_and_what_is_overdue() -> None:
    due = (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=2))
    nothing = ReferralState(*due, ())
    assert nothing.words(NOW).startswith("Acknowledge by")
    assert nothing.overdue(NOW + dt.timedelta(days=1, minutes=1)) == "acknowledgement"
    acked = ReferralState(*due, (_row("ACKNOWLEDGED", "DELIVERED"),))
    assert acked.words(NOW).startswith("Acknowledged; decide by")
    assert acked.overdue(NOW + dt.timedelta(days=1, minutes=1)) is None
    assert acked.overdue(NOW + dt.timedelta(days=2, minutes=1)) == "decision"
    refused = ReferralState(*due, (_row("ACKNOWLEDGED", "QUARANTINED"),))
    assert refused.acknowledged is None  # the referrer was not told
    decided = ReferralState(
        *due,
        (
            _row("DECIDED", "DELIVERED", "EARLY_HELP"),
            _row("DECIDED", None, "SECTION_47_ENQUIRIES"),
        ),
    )
    assert decided.words(NOW + dt.timedelta(days=9)) == (
        "Decided: Child protection enquiries (s.47)"
    )
    assert decided.overdue(NOW + dt.timedelta(days=9)) is None
