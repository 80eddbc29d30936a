"""Restrictions on onward use: which are attached, and which onward shares they forbid.

Third-party information belongs to its author: it may go to parents, other professionals
or into care proceedings only with the author's written consent. Police material under the
2013 / 2024 Protocol is confidential to the proceedings. The author may add restrictions of
their own. A consent the author put on record (``sharing.onward_consent``) lifts a
restriction for that category of recipient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sgx.restrictions import FORBIDS, TEXT

THIRD_PARTY_KINDS = frozenset({"school", "health", "police"})


def attach(sender_kind: str, sharing: dict[str, Any]) -> list[dict[str, str]]:
    """The restrictions a delivery carries: the author's, then the defaults, without repeats."""
    attached: list[dict[str, str]] = []
    seen: set[str] = set()

    def add(code: str, source: str) -> None:
        if code not in seen:
            seen.add(code)
            attached.append({"code": code, "source": source, "text": TEXT[code]})

    for code in sharing.get("restrictions") or ():
        add(code, "AUTHOR")
    if sender_kind in THIRD_PARTY_KINDS:
        add("THIRD_PARTY_AUTHOR_CONSENT", "DEFAULT")
    if sender_kind == "police":
        add("POLICE_CONFIDENTIAL_TO_PROCEEDINGS", "DEFAULT")
    return attached


def broken_by(codes: Iterable[str], consents: Iterable[str], category: str) -> list[str]:
    """The restriction codes an onward share to ``category`` would break."""
    if category in set(consents):
        return []
    return [code for code in codes if category in FORBIDS.get(code, frozenset())]
