"""``safeguard referral``'s arguments, refused before anything is opened or sent (no
broker, no store here: the flow is tests/integration/test_referral_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from consumers.inbox.referrals import DECISIONS
from safeguard.cli import main
from safeguard.cli_referral_desk import DECISION_OPTIONS


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["decide", "9", "--decision", "maybe", "--reasons", "x", "--by", "M", "--contact", "C"],
         "Invalid value for '--decision'"),
        (["decide", "9", "--decision", "section-47", "--reasons", "  ", "--by", "M",
          "--contact", "C"], "--reasons: say why, for the referrer"),
        (["decide", "9", "--decision", "early-help", "--by", "M"], "Missing option '--reasons'"),
        (["acknowledge", "9", "--by", "M"],
         "--contact (or SGX_INBOX_REFERRAL_CONTACT): must not be empty"),
        (["acknowledge", "9", "--by", " ", "--contact", "C"], "--by: must not be empty"),
        (["acknowledge", "nine", "--by", "M", "--contact", "C"], "Invalid value for 'ITEM'"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_named_and_nothing_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    monkeypatch.delenv("SGX_INBOX_REFERRAL_CONTACT", raising=False)
    result = CliRunner().invoke(main, ["referral", *args, "--home", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert list(tmp_path.iterdir()) == []  # no store was created, nothing was kept


def test_every_working_together_outcome_has_an_option() -> None:
    assert sorted(DECISION_OPTIONS.values()) == sorted(DECISIONS)
