"""What the item page shows of a referral: its deadlines, what the LA has told the
referrer, and the forms to acknowledge it and record the decision."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consumers.inbox.access import RESPOND, ROLE_LABELS, Principal
from consumers.inbox.referral_store import ResponseRecord
from consumers.inbox.referrals import DECISIONS, is_referral
from consumers.inbox.service import Inbox
from consumers.reader import QueueView

STATUS_WORDS = {
    "sending": "kept, not sent yet (sent again when this page is next shown)",
    "sent": "sent; the exchange has not answered yet",
    "delivered": "passed to the referrer",
    "refused": "refused by the exchange",
    "quarantined": "refused by the exchange",
}


def responded_as(who: Principal) -> str:
    """How the referrer sees who responded: the person's name and role."""
    return f"{who.name}, {ROLE_LABELS.get(who.role or '', 'case-management system')}"


def _when(at: dt.datetime | None) -> str:
    return f"{at:%d %b %Y %H:%M} UTC" if at else "not given"


def _sentence(text: str | None) -> str | None:
    """The LA's words ending as a sentence (once)."""
    if not text:
        return None
    return text if text.rstrip().endswith((".", "!", "?")) else text.rstrip() + "."


def _row(r: ResponseRecord) -> dict[str, Any]:
    what = "Acknowledged" if r.stage == "ACKNOWLEDGED" else DECISIONS.get(r.decision or "", "?")
    words = STATUS_WORDS.get(r.status, r.status)
    if r.status in ("refused", "quarantined") and r.outcome_detail:
        words = f"{words}: {r.outcome_detail}"
    return {
        "row": r.response_row,
        "what": what,
        "status": r.status,
        "status_words": words,
        "responded_as": r.responded_as,
        "responded_by": r.responded_by,
        "at": _when(r.responded_at),
        "reasons": _sentence(r.reasons),
        "next_steps": _sentence(r.next_steps),
        "la_contact": r.la_contact,
        "la_reference": r.la_reference,
    }


async def referral_context(
    inbox: Inbox, view: QueueView, now: dt.datetime
) -> dict[str, Any] | None:
    """The page's ``referral`` (None for anything but a referral)."""
    if not is_referral(view):
        return None
    state = await inbox.referrals.state(view)
    return {
        "referrer": view.notification["author"]["agency_name"],
        "acknowledge_by": _when(state.acknowledge_by),
        "decide_by": _when(state.decide_by),
        "overdue": state.overdue(now),
        "words": state.words(now),
        "responses": [_row(r) for r in state.responses],
        "may_acknowledge": state.acknowledged is None,
        "decided": state.decided is not None,
        "decisions": list(DECISIONS.items()),
        "contact": inbox.referral_contact,
        "action": RESPOND,
    }
