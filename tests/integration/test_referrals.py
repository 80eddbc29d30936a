"""Referrals from any agency, end to end through a real Kafka-protocol broker.

A referral is routed by the same rule as every notification: to the allocated worker and
supervisor in every LA holding the child, else to the MASH of the LA the child lives in,
else to the sender's default LA; minimised by each receiving LA's agreement; carrying
that LA's deadlines to acknowledge and decide (working days), whose clocks the gateway
starts. A GP practice sends it with a referral form through its outbox
(``safeguard producer referral send``), a voluntary organisation and a school as records.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from safeguard import samples
from safeguard.cli import main as safeguard
from safeguard.parties import GP, LA, LA_GSS, OTHER_LA, SCHOOL, VOLUNTARY
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.wire import contract as c
from tests.integration.harness import Exchange, eventually, running_exchange
from tests.integration.test_routing import receipt_for

pytestmark = pytest.mark.broker

FORMS = Path(__file__).resolve().parent.parent / "fixtures" / "referrals"
FORM_NHS = "9434765919"  # the child of referrals/gp-neglect.json, resident in Camden
AMIRA = samples.child(make_nhs_number(41), make_upn(41), given="Amira", family="Zephyrine")
ALLOCATE_AMIRA = samples.allocation_update(
    [(AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
)


async def run_cli(ex: Exchange, args: list[str]) -> Result:
    """``safeguard ARGS`` as a person runs it (its own event loop, in a thread)."""
    env = {**ex.kafka_env(), "SGX_STORE_DSN": ""}
    return await asyncio.to_thread(CliRunner().invoke, safeguard, args, env=env)


async def referral_row(ex: Exchange, referral_id: str, la: str) -> Any:
    async with await ex.rt.disclosure_requests() as requests:
        from gateway.referral_book import ReferralBook

        return await ReferralBook(requests.engine, schema=requests.schema).get(referral_id, la)


async def test_a_referral_about_a_child_open_to_no_la_reaches_the_mash_of_residence(
    tmp_path: Path,
) -> None:
    """The GP's referral form, through its outbox, to Camden's MASH (the child lives in
    Camden); the MASH sees all of it, with Camden's deadlines; the GP's receipt says
    delivered, naming no LA."""
    async with running_exchange(tmp_path) as ex:
        sent = await run_cli(
            ex,
            ["producer", "referral", "send", str(FORMS / "gp-neglect.json"),
             "--home", str(tmp_path), "--agency", GP],
        )  # fmt: skip
        assert sent.exit_code == 0, sent.output
        assert sent.output.splitlines()[0] == "sent 1 referral(s), 0 error(s)"
        referral_id = sent.output.splitlines()[1].split()[-1]  # the form's stable id

        (mash,) = await ex.wait_items(f"mash:{LA}", 1)
        assert mash.item.notification_id == referral_id
        assert (mash.item.route_reason, mash.item.recipient_role) == ("RESIDENCE_MASH", "MASH_DUTY")
        assert mash.delivery["notification_type"] == c.REFERRAL
        assert mash.delivery["sender_kind"] == "gp_practice"
        assert mash.delivery["withheld"] == []  # the front door's own work: all of it
        details = mash.notification["referral"]
        assert details["concerns"] == ["NEGLECT", "PARENTAL_SUBSTANCE_MISUSE"]
        assert [m["relationship"] for m in details["household"]] == ["mother", "mother's partner"]
        assert mash.notification["child"]["nhs_number"] == FORM_NHS
        due = mash.delivery["referral_due"]
        assert datetime.now(UTC) < due["acknowledge_by"] <= due["decide_by"]
        restrictions = {r["code"]: r["source"] for r in mash.delivery["restrictions"]}
        assert restrictions == {"THIRD_PARTY_AUTHOR_CONSENT": "DEFAULT"}
        assert await ex.queue_rows(OTHER_LA) == 0  # Islington: not its child

        row = await referral_row(ex, referral_id, LA)
        assert row is not None
        assert (row.referrer, row.referrer_kind) == (GP, "gp_practice")
        assert row.acknowledge_due == due["acknowledge_by"]
        assert row.acknowledged_at is None
        pseudonym = ex.rt.pseudonyms().child_key(FORM_NHS, None)
        assert pseudonym is not None
        assert row.child_pseudonym == pseudonym.hex()  # never the NHS number

        receipt = await receipt_for(ex, GP, mash.delivery["notification_id"])
        assert (receipt["outcome"], receipt["reason"]) == ("DELIVERED", "delivered")
        assert LA not in receipt["detail"]
        async with ex.gateway_store() as store:
            audit = await store.audit_records(notification_id=referral_id)
        assert [(a.decision, a.reason, a.recipient, a.notification_type) for a in audit] == [
            ("delivered", "RESIDENCE_MASH", f"mash:{LA}", "referral")
        ]


async def test_a_referral_about_an_allocated_child_reaches_the_worker_and_supervisor(
    tmp_path: Path,
) -> None:
    """Amira is Camden's; a charity refers her, naming Islington as where she lives: the
    allocation wins. The supervisor does not see what the child said; the worker does."""
    async with running_exchange(tmp_path) as ex:
        await ex.start_consumer(party=OTHER_LA)
        await ex.allocate(ALLOCATE_AMIRA)
        said = {
            "wishes_and_feelings": "Wants to stay with her nan.",
            "what_was_said": "He shouts and I hide.",
            "circumstances": "At the homework club.",
            "how_disclosed": "Spontaneously.",
        }
        record = samples.referral(dict(AMIRA, residence_la="E09000019"), agency=VOLUNTARY)
        record["assessment"]["child_views"] = said
        referral_id = await ex.publish(VOLUNTARY, c.REFERRAL, record)

        (worker,) = await ex.wait_items("sw-amara", 1)
        (supervisor,) = await ex.wait_items("tm-jones", 1)
        for view in (worker, supervisor):
            assert view.item.notification_id == str(referral_id)
            assert view.delivery["referral_due"] is not None
        assert worker.item.route_reason == "ALLOCATED_WORKER"
        assert supervisor.item.route_reason == "SUPERVISOR"
        assert worker.notification["assessment"]["child_views"] == said
        views = supervisor.notification["assessment"]["child_views"]
        assert views["wishes_and_feelings"] == said["wishes_and_feelings"]
        assert views["what_was_said"] is None
        assert "assessment.child_views.what_was_said" in supervisor.delivery["withheld"]
        assert supervisor.notification["referral"]["household"] is not None

        marker = await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        await ex.wait_items("sw-amara", 2)
        assert await ex.queue_rows(OTHER_LA) == 0  # Islington's MASH: an allocation wins
        assert str(marker) != str(referral_id)
        assert await referral_row(ex, str(referral_id), OTHER_LA) is None
        row = await referral_row(ex, str(referral_id), LA)
        assert row is not None
        assert row.referrer == VOLUNTARY


async def test_any_agency_the_agreement_allows_may_refer_and_a_bad_form_is_named(
    tmp_path: Path,
) -> None:
    """A school refers a pupil open nowhere whose residence it does not know: its default
    LA's MASH (Camden, the only LA it serves). A file with a bad form sends the good one
    and names the bad form's field."""
    async with running_exchange(tmp_path) as ex:
        pupil = samples.child(make_nhs_number(42), None, given="Noor")
        referral_id = await ex.publish(SCHOOL, c.REFERRAL, samples.referral(pupil, agency=SCHOOL))
        (mash,) = await ex.wait_items(f"mash:{LA}", 1)
        assert mash.item.notification_id == str(referral_id)
        assert mash.item.route_reason == "DEFAULT_LA_MASH"

        sent = await run_cli(
            ex,
            ["producer", "referral", "send", str(FORMS / "two-forms-one-bad.json"),
             "--home", str(tmp_path), "--agency", VOLUNTARY],
        )  # fmt: skip
        assert sent.exit_code == 1, sent.output
        lines = sent.output.splitlines()
        assert lines[0] == "sent 1 referral(s), 1 error(s)"
        assert lines[2].startswith("error   referral form: field '[1].household[0].relationship'")
        assert "Ava" not in sent.output

        async def two() -> bool:
            return len(await ex.queue(f"mash:{LA}")) == 2

        await eventually(two, "the charity's referral at Camden's MASH")
        tom = next(
            v for v in await ex.queue(f"mash:{LA}") if v.item.notification_id != str(referral_id)
        )
        assert tom.item.route_reason == "RESIDENCE_MASH"
        assert tom.notification["child"]["residence_la"] == LA_GSS
        assert tom.notification["referral"]["parents_not_told_reason"] == "RISK_TO_CHILD"
