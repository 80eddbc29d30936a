"""An LA acknowledges and decides referrals from its command line, through a real
Kafka-protocol broker: ``safeguard referral list|show|acknowledge|decide``.

Camden's MASH acknowledges and decides a GP's referral about a child open to no LA; the
allocated worker's team decides a charity's referral about an allocated child. Each
response goes through the inbox's own referral desk (recorded in the same table the inbox
and API use), signed by Camden, to the referring agency only, which sees it in its CLI.
Bad arguments are refused naming the option; nothing is sent for them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.inbox.referrals import DECISIONS
from safeguard import samples
from safeguard.inbox_wiring import inbox_store
from safeguard.parties import GP, HEALTH, LA, OTHER_LA, POLICE, SCHOOL, VOLUNTARY
from sgx.wire import contract as c
from sgx.wire.referral_signature import verify_response
from tests.integration.harness import eventually, running_exchange
from tests.integration.test_author_consent import cli
from tests.integration.test_referral_outcomes import AMIRA, CONTACT, MIA, responses_on

pytestmark = pytest.mark.broker

REASONS = "The information meets the threshold for enquiries under s.47."


async def test_the_la_acknowledges_and_decides_from_its_cli_and_the_referrer_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SGX_INBOX_REFERRAL_CONTACT", raising=False)
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(
            samples.allocation_update(
                [(AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
            )
        )
        gp_referral = await ex.publish(GP, c.REFERRAL, samples.referral(MIA))
        charity = await ex.publish(VOLUNTARY, c.REFERRAL, samples.referral(AMIRA, agency=VOLUNTARY))
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
        (mash_item,) = await ex.wait_items(f"mash:{LA}", 1)
        amara = await ex.wait_items("sw-amara", 2)
        (charity_item,) = [v for v in amara if v.item.notification_id == str(charity)]
        (attendance,) = [v for v in amara if v.item.notification_type == c.ATTENDANCE_UPDATE]
        mia, amira = mash_item.item.item_id, charity_item.item.item_id

        listed = await cli(ex, "referral", "list", "--la", LA)
        assert listed.exit_code == 0, listed.output
        assert f"{LA}: 2 referral(s) awaiting a response, 0 overdue" in listed.output
        assert "Acknowledge by" in listed.output
        async with await inbox_store(ex.rt, LA) as store:  # the listing's reads, audited
            reads = {(r["item_id"], r["reader"], r["action"]) for r in await store.reads()}
        # the referrals only (one row each: not the supervisor's copy); not the attendance
        read = {item for item, _, _ in reads}
        assert len(read) == 2
        assert mia in read
        assert attendance.item.item_id not in read
        assert {(who, how) for _, who, how in reads} == {("cli:operator", "listed")}
        mash_only = await cli(ex, "referral", "list", "--la", LA, "--mash")
        assert "1 referral(s)" in mash_only.output
        assert f"#{mia} " in mash_only.output
        assert "Mia Quill" in mash_only.output
        assert "Amira" not in mash_only.output

        # bad arguments, each named; nothing is recorded or sent for them
        refused = {
            "--contact": ("acknowledge", str(mia), "--by", "Mo Duty"),  # no contact configured
            "--reasons": ("decide", str(mia), "--decision", "section-47", "--reasons", "  ",
                          "--by", "Mo Duty", "--contact", CONTACT),
            "--by": ("acknowledge", str(mia), "--by", " ", "--contact", CONTACT),
            "ITEM": ("acknowledge", str(attendance.item.item_id), "--by", "Mo Duty",
                     "--contact", CONTACT),
            "--decision": ("decide", str(mia), "--decision", "maybe", "--reasons", "x",
                           "--by", "Mo Duty", "--contact", CONTACT),
        }  # fmt: skip
        for option, args in refused.items():
            said = await cli(ex, "referral", *args, "--la", LA)
            assert said.exit_code == 2, (option, said.output)
            assert option in said.output, (option, said.output)
        missing = await cli(ex, "referral", "acknowledge", "99999", "--by", "Mo Duty",
                            "--contact", CONTACT, "--la", LA)  # fmt: skip
        assert missing.exit_code == 2
        assert "no item 99999 in a queue you may see" in missing.output
        async with await inbox_store(ex.rt, LA) as store:
            assert await store.referrals.of([str(gp_referral), str(charity)]) == []

        ack = await cli(ex, "referral", "acknowledge", str(mia), "--by", "Mo Duty, MASH",
                        "--contact", CONTACT, "--la", LA)  # fmt: skip
        assert ack.exit_code == 0, ack.output
        assert f"acknowledged: the referral of #{mia} from {GP}" in ack.output
        assert "delivered: passed to the referrer" in ack.output
        again = await cli(ex, "referral", "acknowledge", str(mia), "--by", "Mo Duty, MASH",
                          "--contact", CONTACT, "--la", LA)  # fmt: skip
        assert again.exit_code == 2
        assert "acknowledged already" in again.output
        decided = await cli(
            ex, "referral", "decide", str(mia), "--decision", "section-47", "--reasons", REASONS,
            "--next-steps", "Please join a strategy discussion tomorrow at 10:00.",
            "--reference", "MASH-2026-0412", "--by", "Tess Jones, MASH manager",
            "--contact", CONTACT, "--la", LA,
        )  # fmt: skip
        assert decided.exit_code == 0, decided.output
        assert "decided: Child protection enquiries (s.47)" in decided.output
        team = await cli(
            ex, "referral", "decide", str(amira), "--decision", "early-help", "--reasons",
            "Needs are best met by an early help assessment.", "--by", "Amara Osei",
            "--contact", CONTACT, "--la", LA, "--team", "Assessment Team 1",
        )  # fmt: skip
        assert team.exit_code != 0  # --team selects queues for `list` only
        team = await cli(
            ex, "referral", "decide", str(amira), "--decision", "early-help", "--reasons",
            "Needs are best met by an early help assessment.", "--by", "Amara Osei",
            "--contact", CONTACT, "--la", LA,
        )  # fmt: skip
        assert team.exit_code == 0, team.output

        shown = await cli(ex, "referral", "show", str(mia), "--la", LA)
        assert shown.exit_code == 0, shown.output
        assert shown.output.count("delivered: passed to the referrer") == 2
        assert f"Decided: {DECISIONS['SECTION_47_ENQUIRIES']}" in shown.output
        left = await cli(ex, "referral", "list", "--la", LA)
        assert f"{LA}: 0 referral(s) awaiting a response" in left.output
        every = await cli(ex, "referral", "list", "--la", LA, "--all")
        assert "2 referral(s), 0 overdue" in every.output

        # the same table the inbox and its API read: one record per response, by the CLI
        async with await inbox_store(ex.rt, LA) as store:
            made = await store.referrals.of([str(gp_referral)])
        assert [(r.stage, r.decision, r.responded_by) for r in made] == [
            ("ACKNOWLEDGED", None, "cli:Mo Duty, MASH"),
            ("DECIDED", "SECTION_47_ENQUIRIES", "cli:Tess Jones, MASH manager"),
        ]

        # each referrer hears its own, signed by Camden (verified); no one else hears anything
        async def told() -> bool:
            return len(await responses_on(ex, GP)) == 2

        await eventually(told, "the GP to hear both of Camden's responses")
        trust, contract = ex.rt.trust(), ex.rt.contract()
        heard = [verify_response(trust, contract, s) for s in await responses_on(ex, GP)]
        assert [(r["stage"], r["decision"]) for r in heard] == [
            ("ACKNOWLEDGED", None), ("DECIDED", "SECTION_47_ENQUIRIES"),
        ]  # fmt: skip
        assert heard[1]["reasons"] == REASONS
        assert heard[1]["la_contact"] == CONTACT
        (charity_heard,) = [
            verify_response(trust, contract, s) for s in await responses_on(ex, VOLUNTARY)
        ]
        assert charity_heard["decision"] == "EARLY_HELP"
        for agency in (SCHOOL, HEALTH, POLICE, OTHER_LA, LA):
            assert await responses_on(ex, agency) == [], agency
        gp_sees = await cli(ex, "producer", "referral", "list", "--agency", GP)
        assert gp_sees.exit_code == 0, gp_sees.output
        assert "la-camden decided: child protection enquiries (s.47)" in gp_sees.output
