"""Key rotation and revocation under load, through the real broker, with no restart: the
running gateway and consumer pick the directory change up (sgx.ops.trust_reload). Rotation
loses and quarantines nothing; after revocation the old key's new envelopes are
quarantined as unknown_key_id (kept, not lost) while the new key's are delivered."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from producers.publisher import Publisher
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from safeguard.samples import allocation_update
from sgx.domain.identifiers import make_nhs_number
from sgx.keys.key_admin import revoke_key, rotate_key
from sgx.keys.trust import utc_now
from sgx.wire import contract as c
from tests import samples
from tests.integration.harness import eventually, running_exchange

pytestmark = pytest.mark.broker
CHILD = make_nhs_number(8501)


def reloads(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("sgx_trust_reloads_total", {"outcome": "ok"})
    return float(value or 0.0)


async def test_rotation_under_load_then_revocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGX_TRUST_RELOAD_S", "0.2")
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(allocation_update([(CHILD, None, "sw-amara", "Team 1", "tm-jones")]))
        trust = ex.rt.exchange.trust_dir
        old_school_kid = ex.rt.trust().party(SCHOOL).keys[-1].kid
        sent = 0

        async def stream(pub: Publisher, seconds: float) -> None:
            nonlocal sent
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                record = samples.attendance_update(nhs_number=CHILD, upn=None)
                await pub.publish(c.ATTENDANCE_UPDATE, record)
                sent += 1
                await asyncio.sleep(0.05)

        async with publisher(ex.rt, SCHOOL) as before:  # holds only the old key
            flowing = asyncio.create_task(stream(before, 4.0))
            await asyncio.sleep(0.5)
            # The school, the gateway and the LA rotate, effective in 1.5 s: time for every
            # running service to reload before anyone seals to a new key.
            soon = utc_now() + timedelta(seconds=1.5)
            for party in (SCHOOL, "gateway", LA):
                rotate_key(trust, party, not_before=soon)
            async with publisher(ex.rt, SCHOOL) as after:  # holds both keys
                await stream(after, 3.0)
                await flowing
                await ex.wait_rows(2 * sent)
                assert ex.quarantined("unknown_key_id") == 0
                assert reloads(ex.gateway_metrics) >= 1
                assert reloads(ex.consumer_metrics) >= 1

                # Revoke the school's old key: the running gateway reloads, then refuses
                # what is still sealed under it, and keeps it.
                before_reloads = reloads(ex.gateway_metrics)
                revoke_key(trust, SCHOOL, old_school_kid)
                await eventually(lambda: reloads(ex.gateway_metrics) > before_reloads, "a reload")
                await before.publish(
                    c.ATTENDANCE_UPDATE, samples.attendance_update(nhs_number=CHILD, upn=None)
                )
                await after.publish(
                    c.ATTENDANCE_UPDATE, samples.attendance_update(nhs_number=CHILD, upn=None)
                )
        await eventually(lambda: ex.quarantined("unknown_key_id") == 1, "the old key's envelope")
        await ex.wait_rows(2 * (sent + 1))
        async with await ex.rt.queue_store(LA) as store:
            assert set((await store.rows_per_notification()).values()) == {1}
            assert await store.count() == 2 * (sent + 1)
        async with ex.gateway_store() as gateway:
            (kept,) = await gateway.quarantine_list()
        assert kept.reason == "unknown_key_id"
        assert old_school_kid in kept.detail
        assert kept.raw, "the envelope is kept whole, to replay if the revocation was a mistake"
