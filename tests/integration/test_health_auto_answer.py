"""A health body's feed answers a MASH information request from the A&E attendances its
FHIR export holds, without a person, where the asking LA's agreement lets health bodies
answer automatically: through the real broker and gateway, the MASH hears the attendance
(when and where, nothing clinical, no opinion), marked automatic; a request for a child the
export holds no attendance for, or whose date of birth differs, is left for a person.
(Under an agreement that does not allow it, the gateway quarantines such an answer:
tests/integration/test_network_checks.py.)
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from safeguard.parties import HEALTH
from sgx.settings import ExchangeSettings
from tests.integration.harness import eventually, running_exchange
from tests.integration.mash import mash
from tests.integration.test_author_consent import cli
from tests.integration.test_network_checks import CHILD, ask

pytestmark = pytest.mark.broker
FHIR = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
AMIRA = {**CHILD, "nhs_number": "9990000824", "date_of_birth": date(2023, 2, 10)}


def agreement_letting_health_answer(folder: Path) -> Path:
    """The repository's agreement, with health bodies added to those that may answer
    automatically."""
    text = ExchangeSettings().agreement_file.read_text(encoding="utf-8")
    agreed = 'auto_answer = ["school", "health"]'
    changed = text.replace('auto_answer = ["school"]', agreed)
    assert agreed in changed
    path = folder / "agreement.toml"
    path.write_text(changed, encoding="utf-8")
    return path


async def test_the_health_feed_answers_from_the_a_and_e_attendances_it_holds(
    tmp_path: Path,
) -> None:
    agreement = agreement_letting_health_answer(tmp_path)
    async with (
        running_exchange(tmp_path, agreement=agreement) as ex,
        mash(ex) as client,
    ):
        held = {**ask(HEALTH), "child": AMIRA}
        elsewhere = {**ask(HEALTH), "child": {**AMIRA, "date_of_birth": date(2016, 4, 1)}}
        unknown = ask(HEALTH)  # a child the export holds nothing for
        for sent in (held, elsewhere, unknown):
            assert (await client.ask(sent))["state"] == "ASKED"

        auto = await cli(ex, "producer", "information", "auto-answer", "--agency", HEALTH,
                         "--bundle", str(FHIR / "health_bundle.json"))  # fmt: skip
        assert auto.exit_code == 0, auto.output
        assert "1 information request(s) answered from the A&E feed" in auto.output
        assert f"held: information request {held['request_id']}" in auto.output
        for left in (elsewhere, unknown):
            assert f"left for a person: information request {left['request_id']}" in auto.output

        async def answered() -> bool:
            return held["request_id"] in await client.answers()

        await eventually(answered, "the health feed's answer to reach the MASH")
        heard = await client.answers()
        assert set(heard) == {held["request_id"]}
        said = heard[held["request_id"]]
        assert (said["outcome"], said["automatic"]) == ("HELD", True)
        assert said["facts"] == (
            "A&E attendances in the trust's feed: 1 (09 Nov 2026 23:40 UTC at "
            "Royal Free Hospital emergency department)."
        )
        assert "Scald" not in said["facts"]  # the clinical detail stays behind
        assert said["professional_opinion"] is None
        assert said["answered_by"] == f"{HEALTH} A&E feed"
        listed = await cli(ex, "producer", "information", "list", "--agency", HEALTH, "--open")
        assert "2 information request(s), 2 awaiting an answer" in listed.output


async def test_a_feed_of_another_kind_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex:
        refused = await cli(ex, "producer", "information", "auto-answer", "--agency", "met-police",
                            "--bundle", str(FHIR / "health_bundle.json"))  # fmt: skip
        assert refused.exit_code != 0
        assert "met-police is a police" in refused.output
