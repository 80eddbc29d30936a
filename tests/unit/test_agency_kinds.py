"""Every agency kind with the s.11 duty (sgx/keys/kinds.py) is known to the trust
directory, the agreement, the restrictions and the cluster plan alike."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from deploy.acl_plan import Party, plan
from gateway.agreement import Agreement
from gateway.restrictions import defaults
from sgx.errors import ConfigError
from sgx.keys.key_admin import init_trust
from sgx.keys.kinds import AGENCY_KINDS, KIND_LABELS, PARTNER_KINDS, AgencyKind
from sgx.keys.trust import DIRECTORY_FILE, PartySpec, TrustDirectory
from sgx.settings import ExchangeSettings
from sgx.wire.contract import default_contract

NEW_KINDS: tuple[AgencyKind, ...] = (
    "gp_practice",
    "community_health",
    "youth_justice",
    "probation",
    "early_years",
    "voluntary",
)


def _every_kind() -> list[PartySpec]:
    specs = [
        PartySpec("gateway", "gateway", "gateway"),
        PartySpec("la-a", "local_authority", "LA A", gss_code="E09000007"),
    ]
    specs += [
        PartySpec(f"agency-{kind.replace('_', '-')}", kind, KIND_LABELS[kind], ("la-a",))
        for kind in AGENCY_KINDS
        if kind != "local_authority"
    ]
    return specs


def test_the_issue_s_kinds_are_agency_kinds_with_words() -> None:
    assert set(NEW_KINDS) <= set(AGENCY_KINDS)
    assert set(KIND_LABELS) == set(AGENCY_KINDS)
    assert set(AGENCY_KINDS) - {"local_authority"} == PARTNER_KINDS


def test_a_trust_directory_holds_every_kind(tmp_path: Path) -> None:
    init_trust(tmp_path, _every_kind())
    trust = TrustDirectory.load(tmp_path)
    for kind in NEW_KINDS:
        (party,) = trust.parties(kind)
        assert trust.served(party.id) == ("la-a",)
        assert trust.serving("la-a", kind) == [party]


def test_a_kind_the_exchange_does_not_know_is_refused_by_name(tmp_path: Path) -> None:
    init_trust(tmp_path, _every_kind())
    path = tmp_path / DIRECTORY_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["parties"][2]["kind"] = "church"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"parties\[2\]\.kind"):
        TrustDirectory.load(tmp_path)


def _agreement() -> dict[str, Any]:
    return tomllib.loads(ExchangeSettings().agreement_file.read_text(encoding="utf-8"))


def test_the_repository_agreement_says_what_every_kind_may_send() -> None:
    assert set(_agreement()["senders"]) == set(AGENCY_KINDS)


def test_the_agreement_accepts_every_kind_and_names_an_unknown_one() -> None:
    data = _agreement()
    agreement = Agreement.from_mapping(data, default_contract(), source="test")
    for kind in AGENCY_KINDS:
        assert kind in agreement.senders
    data["senders"] = {**data["senders"], "church": []}
    with pytest.raises(ConfigError, match=r"senders\.church: unknown agency kind.*gp_practice"):
        Agreement.from_mapping(data, default_contract(), source="test")


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_what_a_partner_agency_writes_needs_its_consent_to_go_further(kind: AgencyKind) -> None:
    assert defaults(kind) == ("THIRD_PARTY_AUTHOR_CONSENT",)


def test_police_material_keeps_its_own_restriction_and_an_la_has_none() -> None:
    police = ("THIRD_PARTY_AUTHOR_CONSENT", "POLICE_CONFIDENTIAL_TO_PROCEEDINGS")
    assert defaults("police") == police
    assert defaults("local_authority") == ()


def test_the_cluster_plan_gives_every_new_kind_its_inbound_and_receipts_topics_only() -> None:
    las = [Party("la-a", "local_authority", gss_code="E09000007")]
    agencies = [Party(f"a-{kind.replace('_', '-')}", kind, serves=("la-a",)) for kind in NEW_KINDS]
    topics = {t.name for t in plan([*las, *agencies]).topics}
    for agency in agencies:
        assert {f"sgx.inbound.{agency.id}", f"sgx.receipts.{agency.id}"} <= topics
        assert f"sgx.delivery.{agency.id}" not in topics  # the gateway delivers none to it
