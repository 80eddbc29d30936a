"""``make inbox`` (``safeguard demo --inbox``): after the demo's traffic, serve Camden's and
Islington's inboxes with demo accounts until Ctrl-C, so a newcomer can sign in as the
allocated worker, the supervisor and MASH and see what each may see."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from consumers.inbox.settings import InboxSettings
from safeguard.cli_common import until_signalled
from safeguard.inbox_wiring import inbox_store, serving_inbox
from safeguard.parties import LA, OTHER_LA
from safeguard.runtime import Runtime

PASSWORD = "demo-password"  # noqa: S105 - the demo's published password, never a real one
ACCOUNTS: dict[str, list[tuple[str, str, str, str, str | None]]] = {
    LA: [
        ("amara", "sw-amara", "Amara Osei", "social_worker", "Assessment Team 1"),
        ("ben", "sw-ben", "Ben Ward", "social_worker", "Assessment Team 1"),
        ("jones", "tm-jones", "Tess Jones", "supervisor", "Assessment Team 1"),
        ("mash", "mash-duty-camden", "Mo Duty", "mash_duty", None),
    ],
    OTHER_LA: [
        ("ines", "sw-ines", "Ines Silva", "social_worker", "North Islington Team"),
        ("okoro", "tm-okoro", "Femi Okoro", "supervisor", "North Islington Team"),
    ],
}


async def serve_demo_inboxes(rt: Runtime, port: int, say: Callable[[str], None]) -> None:
    """Serve both LAs' inboxes (``port`` and ``port + 1``) until SIGINT or SIGTERM."""
    await until_signalled(lambda stop: _serve(rt, port, say, stop))


async def _serve(rt: Runtime, port: int, say: Callable[[str], None], stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for offset, (la, accounts) in enumerate(ACCOUNTS.items()):
            async with await inbox_store(rt, la) as store:
                for username, worker, name, role, team in accounts:
                    await store.add_account(  # the demo's accounts, as the demo defines them
                        username, PASSWORD, worker_id=worker, name=name, role=role, team=team,
                        replace=True,
                    )  # fmt: skip
            settings = InboxSettings(host="127.0.0.1", port=port + offset)
            running = await stack.enter_async_context(serving_inbox(rt, la, settings))
            # Browsers keep a Secure cookie over plain http only for localhost.
            say(f"  {la}: {running.url.replace('127.0.0.1', 'localhost')}")
            for username, worker, _, role, team in accounts:
                in_team = f", {team}" if team else ""
                say(f"    {username:<6} {role.replace('_', ' ')}{in_team} (queue {worker})")
        say(f"  every account's password: {PASSWORD}")
        say("  Ctrl-C stops the inboxes and the exchange.")
        await stop.wait()
