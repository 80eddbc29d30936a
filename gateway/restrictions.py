"""Restrictions on onward use: which are attached, and which onward shares they forbid.

Third-party information belongs to its author: it may go to parents, other professionals
or into care proceedings only with the author's written consent. Police material under the
2013 / 2024 Protocol is confidential to the proceedings. The author may add restrictions of
their own. A consent the author put on record (``sharing.onward_consent``) lifts a
restriction for that category of recipient, and so does a consent the author gives later
when asked (:mod:`sgx.domain.consent`, :mod:`gateway.consents`), except police material
confidential to the proceedings, which goes further only under a court order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sgx.domain.restrictions import TEXT
from sgx.keys.kinds import PARTNER_KINDS

THIRD_PARTY_KINDS = PARTNER_KINDS  # every agency but a local authority


def defaults(sender_kind: str) -> tuple[str, ...]:
    """The restrictions the exchange attaches to everything a ``sender_kind`` writes."""
    codes: tuple[str, ...] = ()
    if sender_kind in THIRD_PARTY_KINDS:
        codes += ("THIRD_PARTY_AUTHOR_CONSENT",)
    if sender_kind == "police":
        codes += ("POLICE_CONFIDENTIAL_TO_PROCEEDINGS",)
    return codes


def describe(codes: Iterable[str], sender_kind: str) -> list[dict[str, str]]:
    """Restriction records for ``codes`` (repeats dropped), as a recipient must see them."""
    default = set(defaults(sender_kind))
    return [
        {"code": code, "source": "DEFAULT" if code in default else "AUTHOR", "text": TEXT[code]}
        for code in dict.fromkeys(codes)
    ]


def attach(sender_kind: str, sharing: dict[str, Any]) -> list[dict[str, str]]:
    """The restrictions a delivery carries: the author's, then the defaults."""
    return describe([*(sharing.get("restrictions") or ()), *defaults(sender_kind)], sender_kind)
