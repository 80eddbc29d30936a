"""Where a benchmark stage is: every asyncio task's await chain, for a stage that hangs.

``Task.print_stack`` shows only a suspended task's outermost coroutine (in CPython 3.11
a suspended coroutine's frame does not link to what it awaits), which says nothing about
a task stuck three awaits down in a library. :func:`task_stacks` follows each task's
chain of awaits (``cr_await``, ``gi_yieldfrom``, ``ag_await``) to the innermost frame
and names the future it waits on.

A stage's process answers a SIGUSR2 with :func:`task_stacks` through its report queue
(:mod:`benchmarks.common`), so the parent prints it whole, after the threads' stacks
(faulthandler, SIGUSR1), however busy the shared stderr is.
"""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any

MAX_DEPTH = 60  # awaits followed per task at most


def _frame(awaitable: Any) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, attribute, None)
        if isinstance(frame, FrameType):
            return frame
    return None


def _awaiting(awaitable: Any) -> Any:
    for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, attribute, None)
        if inner is not None:
            return inner
    return None


def await_chain(coro: Any) -> list[str]:
    """``coro``'s frames, outermost first, each as ``file:line in function``."""
    lines: list[str] = []
    current = coro
    for _ in range(MAX_DEPTH):
        frame = _frame(current)
        if frame is None:
            break
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        current = _awaiting(current)
        if current is None:
            break
    return lines


def task_stacks(tasks: set[asyncio.Task[Any]] | None = None) -> str:
    """Every task of the running loop (or ``tasks``) with its chain of awaits and the
    future it waits on, innermost last."""
    tasks = asyncio.all_tasks() if tasks is None else tasks
    out: list[str] = []
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.append(f"--- task {task.get_name()}{' (done)' if task.done() else ''}")
        out += [f"  {line}" for line in await_chain(task.get_coro())]
        waiter = getattr(task, "_fut_waiter", None)  # what the innermost frame awaits
        if waiter is not None:
            out.append(f"  waits on {waiter!r}")
    return "\n".join(out)
