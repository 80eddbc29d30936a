"""Identifier quality through the real broker: per sender, how many notifications name the
child by NHS number, by UPN only, or by neither (with the reason given), as the gateway's
metrics, beside the target the alert compares against."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeguard.parties import HEALTH, SCHOOL
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.wire import contract as c
from tests import samples
from tests.integration.harness import eventually, running_exchange

pytestmark = pytest.mark.broker


async def test_the_gateway_counts_how_each_sender_names_children(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        for n in range(3):
            await ex.publish(
                SCHOOL,
                c.ATTENDANCE_UPDATE,
                samples.attendance_update(nhs_number=make_nhs_number(900 + n)),
            )
        await ex.publish(
            SCHOOL,
            c.ATTENDANCE_UPDATE,
            samples.attendance_update(nhs_number=None, upn=make_upn(901)),
        )
        await ex.publish(
            HEALTH,
            c.HEALTH_UPDATE,
            samples.health_update(
                nhs_number=None, child__identifier_absent_reason="UNREASONABLE_DELAY"
            ),
        )
        await ex.publish(HEALTH, c.HEALTH_UPDATE, samples.health_update())

        def count(party: str, identifier: str) -> float:
            value = ex.gateway_metrics.get_sample_value(
                "sgx_gateway_child_identifiers_total", {"party": party, "identifier": identifier}
            )
            return value or 0.0

        async def counted() -> bool:
            return count(HEALTH, "nhs_number") + count(HEALTH, "unreasonable_delay") == 2

        await eventually(counted, "the gateway to count both health updates")
        await eventually(lambda: count(SCHOOL, "upn_only") == 1, "the school's UPN-only update")
        assert count(SCHOOL, "nhs_number") == 3
        assert count(HEALTH, "unreasonable_delay") == 1
        assert count(HEALTH, "nhs_number") == 1
        target = ex.gateway_metrics.get_sample_value("sgx_gateway_nhs_number_target_ratio")
        assert target == 0.95
        # the same notification sent again is a duplicate, not a second one: counted once
        before = count(SCHOOL, "nhs_number")
        record = samples.attendance_update(nhs_number=make_nhs_number(950))
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
        await eventually(
            lambda: ex.gateway_count("attendance_update", "duplicate") == 1, "the resend"
        )
        assert count(SCHOOL, "nhs_number") == before + 1
