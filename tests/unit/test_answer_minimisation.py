"""An agency's answer to a MASH information request is minimised by role, by the receiving
LA's agreement, like any notification (issue 24): the MASH that asked sees it whole, a
colleague it is shared with sees what the ``onward`` list allows, and what was withheld is
named in the delivery and its audit entry."""

from __future__ import annotations

import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.agreement import Agreement
from gateway.audit_chain import AuditEntry
from gateway.decision import Decision
from gateway.information_delivery import deliver_answer
from gateway.partnership import Partnership
from safeguard.parties import DEMO_PARTIES, LA, OTHER_LA
from sgx.errors import ConfigError
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import TrustDirectory
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.contract import default_contract

FACTS = "Two fixed-term exclusions this term; attendance 81%."
OPINION = "We think the household is under strain; the school is worried."


def _agreement() -> dict[str, Any]:
    return tomllib.loads(ExchangeSettings().agreement_file.read_text(encoding="utf-8"))


def _silent() -> dict[str, Any]:
    """The repository's agreement as one written before answers existed: no answer lists."""
    data = _agreement()
    for types in data["roles"].values():
        types.pop("information_answer", None)
    return data


def answer(**changes: Any) -> dict[str, Any]:
    return {
        "answer_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()),
        "local_authority": LA, "outcome": "HELD", "facts": FACTS,
        "professional_opinion": OPINION,
        "restrictions": [{"code": "NOT_TO_PARENTS", "source": "AUTHOR", "text": "not to parents"}],
        "answered_by": "Ms Patel, DSL", "automatic": False,
        "answered_at": datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
    } | changes  # fmt: skip


def test_the_mash_that_asked_sees_the_whole_answer_and_a_colleague_not_the_opinion() -> None:
    agreement = Agreement.from_mapping(_agreement(), default_contract(), source="test")
    record = answer()
    assert agreement.minimise("mash_duty", c.INFORMATION_ANSWER, record) == (record, [])
    onward, withheld = agreement.minimise("onward", c.INFORMATION_ANSWER, record)
    assert withheld == ["professional_opinion"]
    assert onward == {**record, "professional_opinion": None}
    assert record["professional_opinion"] == OPINION  # the original is left as it was
    # nothing to withhold is not reported as withheld
    _, none = agreement.minimise("onward", c.INFORMATION_ANSWER, answer(professional_opinion=None))
    assert none == []


def test_an_agreement_silent_on_answers_gives_the_mash_all_and_other_roles_nothing_optional() -> (
    None
):
    agreement = Agreement.from_mapping(_silent(), default_contract(), source="test")
    record = answer()
    assert agreement.minimise("mash_duty", c.INFORMATION_ANSWER, record) == (record, [])
    for role in ("onward", "social_worker", "supervisor", "key_adult"):
        kept, withheld = agreement.minimise(role, c.INFORMATION_ANSWER, record)
        assert withheld == ["facts", "professional_opinion"], role
        # what a recipient needs to act on it still travels: outcome, who, when, restrictions
        assert kept == {**record, "facts": None, "professional_opinion": None}


def test_an_la_s_own_agreement_decides_what_its_roles_see_of_an_answer(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    trust = TrustDirectory.load(tmp_path / "trust")
    data = _agreement()
    data["authorities"][OTHER_LA].setdefault("roles", {})["onward"] = {"information_answer": ["*"]}
    data["authorities"][OTHER_LA]["roles"]["mash_duty"] = {"information_answer": ["facts"]}
    partnership = Partnership.from_mapping(data, default_contract(), trust, source="test")
    record = answer()
    other = partnership.agreement(OTHER_LA)
    assert other.minimise("onward", c.INFORMATION_ANSWER, record) == (record, [])
    assert other.minimise("mash_duty", c.INFORMATION_ANSWER, record)[1] == ["professional_opinion"]
    assert partnership.agreement(LA).minimise("onward", c.INFORMATION_ANSWER, record)[1] == [
        "professional_opinion"
    ]


@pytest.mark.parametrize(
    ("types", "error"),
    [
        ({"information_answer": ["opinion"]}, "roles.onward.information_answer: 'opinion' is not"),
        ({"information_answer": "facts"}, "information_answer: must be a list"),
        # a misspelt type would otherwise fall back to the default silently
        ({"informaton_answer": ["*"]}, r"unknown type\(s\) \['informaton_answer'\]"),
    ],
)
def test_an_answer_list_that_cannot_be_applied_stops_the_agreement_loading(
    types: dict[str, Any], error: str
) -> None:
    data = _agreement()
    data["roles"]["onward"] |= types
    with pytest.raises(ConfigError, match=error):
        Agreement.from_mapping(data, default_contract(), source="test")


def _entry() -> AuditEntry:
    return AuditEntry(
        decision="delivered", message_id="m", notification_id="n", sender="school-hillside",
        recipient=None, recipient_role=None, local_authority=LA,
        notification_type="information_answer", child_pseudonym=None, reason="ONWARD_SHARE",
        lawful_basis=None, consent=None, no_consent_reason=None, restrictions=(),
        withheld=(), detail="", decided_at=datetime(2026, 11, 20, tzinfo=UTC),
    )  # fmt: skip


def _deliver(recipient: dict[str, Any], reason: str) -> tuple[Decision, dict[str, Any], bytes]:
    contract = default_contract()
    agreement = Agreement.from_mapping(_agreement(), contract, source="test")
    record = contract.decode(contract.encode(c.INFORMATION_ANSWER, answer()))[1]
    plaintext = contract.encode(c.INFORMATION_ANSWER, record)
    decision = Decision()
    deliver_answer(
        decision, la=LA, record=record, plaintext=plaintext, recipient=recipient,
        reason=reason, sender_agency="school-hillside", sender_kind="school",
        codes=("NOT_TO_PARENTS",), urgency="ROUTINE", key=b"k" * 16, audit=_entry(),
        routed_at=datetime(2026, 11, 20, tzinfo=UTC), agreement=agreement, contract=contract,
    )  # fmt: skip
    return decision, record, plaintext


def test_a_colleague_s_delivery_is_re_encoded_without_the_opinion_and_says_so() -> None:
    colleague = {"id": "sw-ben", "role": "ONWARD", "team": None, "name": "Ben"}
    decision, record, _ = _deliver(colleague, "ONWARD_SHARE")
    (delivery,) = decision.deliveries
    assert delivery.record["withheld"] == ["professional_opinion"]
    name, sent = default_contract().decode(delivery.record["notification"])
    assert name == c.INFORMATION_ANSWER
    assert sent == {**record, "professional_opinion": None}
    assert OPINION.encode() not in delivery.record["notification"]
    (audited,) = decision.audit
    assert audited.withheld == ("professional_opinion",)
    assert delivery.audit_indexes == [0]


def test_the_mash_s_delivery_is_the_agency_s_own_bytes_with_nothing_withheld() -> None:
    mash = {"id": f"mash:{LA}", "role": "MASH_DUTY", "team": "MASH", "name": "MASH duty"}
    decision, _, plaintext = _deliver(mash, "REQUESTING_LA_MASH")
    (delivery,) = decision.deliveries
    assert delivery.record["notification"] == plaintext
    assert delivery.record["withheld"] == []
    assert decision.audit[0].withheld == ()
