"""``make demo`` as a person runs it: ``safeguard demo`` in its own process, on its own
embedded broker. It must finish, say what arrived where in words (no Python reprs), and
show each thing the README promises, the author's consent among them."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest

pytestmark = pytest.mark.broker

REPRS = re.compile(r"UUID\(|datetime\.|\{'|\['|<[A-Za-z_.]+ object at 0x|Traceback")


async def test_the_demo_runs_and_speaks_in_words() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard.cli", "demo",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    said = out.decode()
    assert process.returncode == 0, said
    assert REPRS.search(said) is None, REPRS.search(said)
    for promised in (
        "refused by the gateway: an LA may change only its own cases",
        "Islington allocates Zara to Ines Duarte (transfer-in from Camden",
        "Camden: queue of mash:la-camden",
        "to parents (parent or carer): REFUSED (THIRD_PARTY_AUTHOR_CONSENT, "
        "POLICE_CONFIDENTIAL_TO_PROCEEDINGS)",
        # the author's consent: refused, asked, granted, then exactly that share allowed
        "to her parents: REFUSED (THIRD_PARTY_AUTHOR_CONSENT)",
        "sw-amara asks the author through the exchange: asked school-hillside (the author)",
        "Camden hears: granted by Ruth Okafor",
        "the same share again: allowed: the author's consent (request",
        "to the family's GP: REFUSED (THIRD_PARTY_AUTHOR_CONSENT)",
        "consent_granted   attendance_update   school-hillside → la-camden",
        # a referral both ways: to the MASH with its deadlines, the outcome to the GP only
        "Camden's MASH has it (residence mash): acknowledge by",
        "la-camden: section 47 enquiries, by Mo Duty",
        "not_the_referrer",
        # a school's referral, network-checked by the MASH of residence (issue 24)
        "Ruth Okafor, Hillside Primary's DSL, refers Sami (open to no LA, lives in Camden",
        "reaches Camden's MASH queue (mash:la-camden) as item #",
        "Camden's MASH acknowledges it (signed by Camden)",
        "rates the contact AMBER (answers within 24 working hours)",
        "    nhs-royal-free   asked, answer due",
        "    met-police       asked, answer due",
        "    gp-hillside      asked, answer due",
        "Hillside's feed answers from its attendance register, no person involved",
        'sgx_information_requests_overdue{la="la-camden",party="met-police"} = 1',
        "the alert SgxInformationRequestOverdue fires",
        "the police answer late",
        "the gauge has no overdue request any more: the alert resolves",
        "    school-hillside  held, automatically",
        "    nhs-royal-free   held, by Dr Ada Nwosu",
        "      facts: Attendance register: From 2 November 2026 to 5 November 2026: missed 3 of 8",
        "met-police's answer to school-hillside (other professional): REFUSED "
        "(THIRD_PARTY_AUTHOR_CONSENT, POLICE_CONFIDENTIAL_TO_PROCEEDINGS)",
        "gp-hillside's answer to sw-amara (la social care): ALLOWED",
        "delivered minimised for her role (an onward share) by la-camden's agreement: "
        "withheld professional_opinion",
        "Hillside hears (safeguard producer referral show)",
        "    la-camden: section 47 enquiries, by Mo Duty",
        "the family-informed record: 4 network checks, each with its decision",
        "    to met-police: told (his mother) by phone by Mo Duty",
        "information_requested information_request la-camden → met-police",
        "bad_signature",
        "all verified",
        "Demo finished in",
    ):
        assert promised in said, f"the demo no longer shows: {promised}"
