"""The agreed times to acknowledge and decide a referral: the agreement's ``[referrals]``,
an LA's own, and the deadlines the gateway gives each receiving LA in working days."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.agreement import Agreement, ReferralTimes
from gateway.partnership import Partnership
from gateway.referral_book import ReferralBook
from gateway.referrals import ReferralClock
from safeguard.parties import DEMO_PARTIES, LA, OTHER_LA
from sgx.domain.calendar import CalendarSettings
from sgx.errors import ConfigError
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import TrustDirectory
from sgx.settings import ExchangeSettings
from sgx.store.db import open_engine
from sgx.wire.contract import default_contract

LONDON = ZoneInfo("Europe/London")


def _agreement() -> dict[str, Any]:
    return tomllib.loads(ExchangeSettings().agreement_file.read_text(encoding="utf-8"))


def test_working_together_s_one_working_day_each_is_the_partnership_s() -> None:
    agreement = Agreement.from_mapping(_agreement(), default_contract(), source="test")
    assert agreement.referral_times == ReferralTimes(acknowledge=1, decide=1)
    silent = {k: v for k, v in _agreement().items() if k != "referrals"}
    assert Agreement.from_mapping(silent, default_contract(), source="t").referral_times == (
        ReferralTimes(1, 1)
    )


@pytest.mark.parametrize(
    ("referrals", "message"),
    [
        (
            {"acknowledge_within_working_days": 0},
            r"acknowledge_within_working_days: must be from 1",
        ),
        ({"decide_within_working_days": 21}, r"decide_within_working_days: must be from 1 to 20"),
        (
            {"decide_within_working_days": "1"},
            r"decide_within_working_days: must be a whole number",
        ),
        ({"decide_within_working_days": True}, r"must be a whole number"),
        ({"decide_in": 1}, r"unknown key\(s\) \['decide_in'\]"),
        (
            {"acknowledge_within_working_days": 2, "decide_within_working_days": 1},
            r"decide_within_working_days: is sooner than the acknowledgement",
        ),
    ],
)
def test_a_time_that_cannot_be_agreed_is_refused_by_name(
    referrals: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"test: referrals.*{message}"):
        Agreement.from_mapping(
            _agreement() | {"referrals": referrals}, default_contract(), source="test"
        )


def _partnership(tmp_path: Path) -> Partnership:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    trust = TrustDirectory.load(tmp_path / "trust")
    data = _agreement()
    data["authorities"][OTHER_LA]["referrals"] = {"decide_within_working_days": 3}
    return Partnership.from_mapping(data, default_contract(), trust, source="test")


async def test_each_la_s_deadlines_follow_its_own_agreement(tmp_path: Path) -> None:
    partnership = _partnership(tmp_path)
    assert partnership.agreement(LA).referral_times == ReferralTimes(1, 1)
    assert partnership.agreement(OTHER_LA).referral_times == ReferralTimes(1, 3)
    engine = open_engine(None, tmp_path / "r.db")
    try:
        clock = ReferralClock(
            partnership=partnership,
            calendar=CalendarSettings().calendar(),
            book=ReferralBook(engine),
        )
        friday = datetime(2025, 3, 7, 16, 30, tzinfo=LONDON)
        assert clock.due(LA, friday) == (
            datetime(2025, 3, 10, 16, 30, tzinfo=LONDON),
            datetime(2025, 3, 10, 16, 30, tzinfo=LONDON),
        )
        assert clock.due(OTHER_LA, friday)[1] == datetime(2025, 3, 12, 16, 30, tzinfo=LONDON)
    finally:
        await engine.dispose()


def test_an_la_s_unknown_agreement_key_names_what_it_may_say(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    trust = TrustDirectory.load(tmp_path / "trust")
    data = _agreement()
    data["authorities"][OTHER_LA]["timescales"] = {}
    with pytest.raises(ConfigError, match="known: senders, roles, referrals"):
        Partnership.from_mapping(data, default_contract(), trust, source="test")
