"""A benchmark phase that cannot get ready says which stage and why, instead of hanging
(issue 23: three of fourteen runs of benchmarks.run hung, one in the gateway stage
waiting for its allocation updates to be applied)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from benchmarks.common import Report, StageFailed, Stages


async def stuck_stage(report: Report, *_: Any) -> None:
    """Waits for allocation updates that never come, saying so."""
    report("waiting", metric="sgx_gateway_notifications_total", have=3.0, want=10.0)
    await asyncio.sleep(60)


async def a_phase_with_a_stuck_gateway() -> None:
    async with Stages() as stages:  # left on the failure: the stage is stopped at once
        stages.spawn("gateway", stuck_stage)
        await stages.expect("ready", ["gateway"], limit_s=5)


async def test_a_stage_that_never_gets_ready_is_named_with_what_it_last_said() -> None:
    with pytest.raises(StageFailed) as failed:
        await a_phase_with_a_stuck_gateway()
    said = str(failed.value)
    assert "no 'ready' within 5s from gateway" in said
    assert "waiting" in said
    assert "'have': 3.0" in said
    assert "'want': 10.0" in said


async def deep_wait() -> None:
    await asyncio.Event().wait()  # what a stage waits on, three awaits down


async def stage_stuck_deep_down(report: Report, *_: Any) -> None:
    await deep_wait()


async def a_phase_stuck_deep_down() -> None:
    async with Stages() as stages:
        stages.spawn("gateway", stage_stuck_deep_down)
        await stages.expect("ready", ["gateway"], limit_s=3)


async def test_a_stage_that_never_gets_ready_says_where_each_task_awaits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its tasks' chains of awaits reach the parent (through the report queue, not the
    shared stderr) down to the innermost await, not only the outermost coroutine."""
    with pytest.raises(StageFailed) as failed:
        await a_phase_stuck_deep_down()
    assert "no answer" not in str(failed.value)  # it answered in time
    printed = capsys.readouterr().err
    assert "=== where stage gateway is" in printed
    chain = printed[printed.index("=== where stage gateway is") :]
    frames = [line.strip() for line in chain.splitlines() if " in " in line]
    assert any(frame.endswith("in stage_stuck_deep_down") for frame in frames), chain
    assert any(frame.endswith("in deep_wait") for frame in frames), chain
    assert any(frame.endswith("in Event.wait") for frame in frames), chain


async def stage_blocking_its_loop(report: Report, *_: Any) -> None:
    time.sleep(30)  # noqa: ASYNC251  # a loop that cannot answer: what this test is about


async def a_phase_with_a_blocked_loop() -> None:
    async with Stages() as stages:
        stages.spawn("gateway", stage_blocking_its_loop)
        await stages.expect("ready", ["gateway"], limit_s=2)


async def test_a_stage_whose_loop_is_blocked_is_named_with_its_threads_stacks(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """No "where" answer from a blocked loop: its threads' stacks instead (faulthandler,
    from the child, on the shared stderr), and the phase's failure still says which stage
    was not ready."""
    with pytest.raises(StageFailed) as failed:
        await a_phase_with_a_blocked_loop()
    said = str(failed.value)
    assert "no 'ready' within 2s from gateway" in said
    assert "no answer from gateway in 5s: its event loop is busy or blocked" in said
    assert "in stage_blocking_its_loop" in capfd.readouterr().err  # the child's main thread
