"""The inbox's web pages: sign-in, the queue, an item, a child's sharing record.

Server-rendered HTML (Jinja2, autoescaped), no script. Every page with personal data is
sent ``Cache-Control: no-store``; ids in URLs are queue item and share ids, never a child's
identifier; every form that changes something carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from consumers.inbox import auth
from consumers.inbox.access import ROLE_LABELS, Principal
from consumers.inbox.consent_store import ConsentRecord
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.referral_pages import referral_context, responded_as
from consumers.inbox.service import ACKED_PAGE, Inbox, NotYourCopy
from consumers.inbox.store import ShareRecord
from consumers.inbox.views import (
    CATEGORY_LABELS,
    RESTRICTION_LABELS,
    child_name,
    duration,
    item_page,
    overdue,
    queue_order,
    type_words,
    waited,
    whole_number,
    words,
)
from consumers.queue import QueueItem
from consumers.reader import QueueView
from sgx.errors import NotAuthenticated

if TYPE_CHECKING:
    from consumers.inbox.family_web import FamilyWeb

TEMPLATES = Path(__file__).parent / "templates"
SHARE_STATUS = {True: "allowed", False: "refused", None: "pending"}


def share_status(share: ShareRecord) -> str:
    return SHARE_STATUS[share.allowed]


SEALED_FOR_ANOTHER = "(sealed for its recipient)"


def routing_words(item: QueueItem) -> str:
    """What a row is, from its routing facts alone (nothing opened)."""
    return item.notification_type.rsplit(".", 1)[-1]


TOO_MANY = (
    "Too many failed sign-ins: wait a few minutes and try again. If it goes on, ask your"
    " administrator to unlock your account."
)


class Web:
    def __init__(
        self,
        inbox: Inbox,
        *,
        la_name: str,
        local_accounts: bool,
        idp: IdentityProvider | None,
        oidc_name: str,
    ) -> None:
        self._inbox = inbox
        self._la_name = la_name
        self._local = local_accounts
        self._idp = idp
        self._oidc_name = oidc_name
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
        self._templates = Jinja2Templates(env=env)
        self.families: FamilyWeb | None = None  # families informed (consumers.inbox.family_web)

    def _render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        who = auth.signed_in(request)
        context.update(
            la_name=self._la_name,
            who=who,
            role_label=ROLE_LABELS.get(who.role or "", "no role") if who else "",
            csrf=auth.csrf_token(request),
            words=words,
        )
        response: Response = self._templates.TemplateResponse(
            request, name, context, status_code=status
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _who(self, request: Request) -> Principal:
        who = await auth.person(request, self._inbox.store, self._inbox.la)
        if who is None:
            raise NotAuthenticated("sign in first")
        return who

    # for the pages of other modules (families informed)
    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return self._render(request, name, status, **context)

    async def person(self, request: Request) -> Principal:
        return await self._who(request)

    def routing(self, request: Request, sealed: NotYourCopy) -> Response:
        return self._routing(request, sealed)

    def _routing(self, request: Request, sealed: NotYourCopy) -> Response:
        """The page of a row the caller sees by its routing facts only (a team member's)."""
        return self._render(
            request,
            "routing.html",
            item=sealed.item,
            own=sealed.own,
            what=routing_words(sealed.item),
            nav="queue",
            waited=duration(waited(sealed.item, dt.datetime.now(dt.UTC))),
        )

    async def error(self, request: Request, status: int, title: str, message: str) -> Response:
        return self._render(request, "error.html", status, title=title, message=message)

    # -- signing in ----------------------------------------------------------------------
    async def login_form(
        self, request: Request, error: str | None = None, status: int = 200
    ) -> Response:
        oidc = self._oidc_name if self._idp else None
        return self._render(
            request, "login.html", status, error=error, oidc=oidc, local=self._local
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        if not self._local:
            return await self.login_form(
                request, "Local accounts are off: use the sign-in button.", 400
            )
        username, password = str(form.get("username", ""))[:200], str(form.get("password", ""))
        address = request.client.host if request.client else None
        guard, metrics = self._inbox.store.sign_ins, self._inbox.metrics
        refusal = await guard.check(username, address)
        if refusal.verdict != "ok":  # judged before the password, whatever the name
            metrics.sign_ins.labels("local", "refused").inc()
            metrics.sign_in_refusals.labels(refusal.verdict).inc()
            return await self.login_form(request, TOO_MANY, 429)
        account = await self._inbox.store.check_password(username, password)
        if account is None:
            await guard.failed(username, address)
            metrics.sign_ins.labels("local", "refused").inc()
            metrics.sign_in_refusals.labels("bad_credentials").inc()
            return await self.login_form(request, "The username or password is wrong.", 401)
        await guard.succeeded(username, address)
        who = Principal(
            la=self._inbox.la,
            subject=account.worker_id,
            kind="person",
            name=account.name,
            role=account.role,
            team=account.team,
        )
        await auth.sign_in(request, self._inbox.store, who, "local", account.username)
        self._inbox.metrics.sign_ins.labels("local", "ok").inc()
        return RedirectResponse("/queue", status_code=303)

    async def oidc_start(self, request: Request) -> Response:
        if self._idp is None:
            return await self.error(request, 404, "Not found", "Single sign-on is not set up here.")
        return await self._idp.start(request, str(request.url_for("oidc_callback")))

    async def oidc_callback(self, request: Request) -> Response:
        if self._idp is None:
            return await self.error(request, 404, "Not found", "Single sign-on is not set up here.")
        try:
            who = await self._idp.finish(request)
        except NotAuthenticated as exc:
            self._inbox.metrics.sign_ins.labels("oidc", "refused").inc()
            return await self.login_form(request, str(exc), 401)
        await auth.sign_in(request, self._inbox.store, who, "oidc")
        self._inbox.metrics.sign_ins.labels("oidc", "ok").inc()
        return RedirectResponse("/queue", status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        await auth.sign_out(request, self._inbox.store)
        return RedirectResponse("/login", status_code=303)

    # -- the queue and its items -----------------------------------------------------------
    async def queue(self, request: Request) -> Response:
        who = await self._who(request)
        include_acked = request.query_params.get("show") == "all"
        before = whole_number(request.query_params.get("before"))  # unreadable: ignored
        unread = await self._inbox.items(who, include_acked=False) if before is None else []
        acked = await self._inbox.acknowledged(who, before=before) if include_acked else []
        items = queue_order(unread) + acked  # acknowledged: newest first, a page at a time
        older = acked[-1].item_id if len(acked) == ACKED_PAGE else None
        now = dt.datetime.now(dt.UTC)
        rows = []
        listed = await self._inbox.listed(who, items)
        referrals = await self._inbox.referrals.states(
            [v for v in listed if isinstance(v, QueueView)]
        )
        for view in listed:
            if isinstance(view, QueueView):
                item, child, what = view.item, child_name(view.notification), type_words(view)
                sender = _author(view.notification)
            else:  # a team member's copy: its routing facts only
                item, child, what = view, SEALED_FOR_ANOTHER, routing_words(view)
                sender = view.sender_agency
            rows.append(
                {
                    "item_id": item.item_id,
                    "urgency": item.urgency,
                    "overdue": overdue(item, now),
                    "unread": item.status == "unread",
                    "child": child,
                    "what": what,
                    "sender": sender,
                    "recipient": item.recipient_id,
                    "waited": duration(waited(item, now)),
                    "acked_by": item.acked_by,
                    "referral": None,
                    "referral_overdue": False,
                }
            )
            state = referrals.get(item.notification_id) if isinstance(view, QueueView) else None
            if state is not None:
                rows[-1].update(
                    referral=state.words(now), referral_overdue=bool(state.overdue(now))
                )
        return self._render(
            request,
            "queue.html",
            rows=rows,
            nav="queue",
            include_acked=include_acked,
            older=older,
            unread=sum(r["unread"] for r in rows),
            overdue=sum(r["overdue"] for r in rows),
            referrals_overdue=sum(r["referral_overdue"] for r in rows),
        )

    async def item(self, request: Request) -> Response:
        who = await self._who(request)
        item_id = int(request.path_params["item_id"])
        try:
            view = await self._inbox.open(who, item_id, "opened")
        except NotYourCopy as sealed:  # a team member's row: its routing facts only
            return self._routing(request, sealed)
        notification_id = [view.item.notification_id]
        shares = await self._inbox.answered(await self._inbox.store.shares(notification_id))
        consents = await self._inbox.consents(notification_id)
        latest = {c.share_id: c for c in consents}  # the newest request about each share
        now = dt.datetime.now(dt.UTC)
        families = self.families
        family = await families.of_shares([s.share_id for s in shares]) if families else {}
        return self._render(
            request,
            "item.html",
            page=item_page(view),
            item=view.item,
            nav="queue",
            waited=duration(waited(view.item, now)),
            overdue=overdue(view.item, now),
            shares=[_share_row(s, latest.get(s.share_id)) for s in shares],
            consents=[_consent_row(c) for c in consents],
            message=_message(request, shares, consents),
            categories=list(CATEGORY_LABELS.items()),
            family=family,
            family_form=families.form(who) if families else None,
            referral=await referral_context(self._inbox, view, now),
        )

    async def respond(self, request: Request) -> Response:
        """Acknowledge a referral, or record the decision: told to the referrer."""
        who = await self._who(request)
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        item_id = int(request.path_params["item_id"])
        made = await self._inbox.referrals.respond(
            who,
            item_id,
            stage=str(form.get("stage", "")),
            decision=str(form.get("decision", "")) or None,
            reasons=str(form.get("reasons", "")),
            next_steps=str(form.get("next_steps", "")),
            la_contact=str(form.get("la_contact", "")),
            la_reference=str(form.get("la_reference", "")),
            responded_as=responded_as(who),
        )
        return RedirectResponse(f"/items/{item_id}#response-{made.response_row}", 303)

    async def ask_consent(self, request: Request) -> Response:
        """Ask the author's consent to a refused share; the item page says what came of it."""
        who = await self._who(request)
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        asked = await self._inbox.ask_consent(who, int(request.path_params["share_id"]))
        return RedirectResponse(
            f"/items/{asked.item_id}?consent={asked.consent_id}#consent-{asked.consent_id}", 303
        )

    async def ack(self, request: Request) -> Response:
        who = await self._who(request)
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        item_id = int(request.path_params["item_id"])
        await self._inbox.ack(who, item_id)
        return RedirectResponse(f"/items/{item_id}", status_code=303)

    async def share(self, request: Request) -> Response:
        who = await self._who(request)
        form = await request.form()
        auth.check_csrf(request, form.get(auth.CSRF_FIELD))
        item_id = int(request.path_params["item_id"])
        category = str(form.get("category", ""))
        if category not in CATEGORY_LABELS:
            return await self.error(
                request, 400, "Not a recipient category", "Choose a category from the list."
            )
        told = self.families.decision_in(form, who) if self.families else None  # checked first
        share = await self._inbox.share(
            who,
            item_id,
            category=category,
            to_name=str(form.get("to_name", "")),
            purpose=str(form.get("purpose", "")),
        )
        if told is not None and self.families is not None:
            await self.families.with_share(who, share.share_id, told)
        return RedirectResponse(
            f"/items/{item_id}?share={share.share_id}#share-{share.share_id}", 303
        )

    async def child(self, request: Request) -> Response:
        who = await self._who(request)
        item_id = int(request.path_params["item_id"])
        try:
            record = await self._inbox.child(who, item_id)
        except NotYourCopy as sealed:
            return self._routing(request, sealed)
        by_notification = {v.item.notification_id: v for v in record.views}
        received = [
            {
                "item_id": v.item.item_id,
                "when": f"{v.delivery['authored_at']:%d %b %Y %H:%M}",
                "what": type_words(v),
                "author": _author(v.notification),
                "basis": _basis(v.notification),
                "consent": words(v.notification.get("sharing", {}).get("consent", "NOT_SOUGHT")),
            }
            for v in sorted(record.views, key=lambda v: v.delivery["authored_at"])
        ]
        shared = []
        families = self.families
        family = await families.of_shares([s.share_id for s in record.shares]) if families else {}
        for s in record.shares:
            row = _share_row(s) | {"family": family.get(s.share_id)}
            source = by_notification.get(s.notification_id)
            row["what"] = type_words(source) if source else "an item"
            row["basis"] = _basis(source.notification) if source else ""
            shared.append(row)
        return self._render(
            request,
            "child.html",
            item_id=item_id,
            child=child_name(record.views[0].notification),
            received=received,
            shared=shared,
            printable=request.query_params.get("print") == "1",
            now=f"{dt.datetime.now(dt.UTC):%d %b %Y %H:%M}",
            nav="queue",
        )

    async def stylesheet(self, _: Request) -> Response:
        return FileResponse(TEMPLATES / "inbox.css", media_type="text/css")


def _author(notification: dict[str, Any]) -> str:
    if "answered_by" in notification:  # an information answer
        return str(notification["answered_by"])
    a = notification.get("author") or notification.get("requested_by") or {}
    return f"{a.get('name')}, {a.get('role')}, {a.get('agency_name')}"


def _basis(notification: dict[str, Any]) -> str:
    s = notification.get("sharing")
    if "answered_by" in notification:
        return "an answer to the MASH's information request (network check)"
    if not s:
        return "2013/2024 Protocol request"
    return f"{words(s['lawful_basis'])} ({s['legal_gateway']})"


def _share_row(share: ShareRecord, consent: ConsentRecord | None = None) -> dict[str, Any]:
    refused = share.allowed is False and bool(share.broken)
    return {
        "share_id": share.share_id,
        "status": share_status(share),
        "to_name": share.to_name,
        "category_code": share.to_category,
        "category": CATEGORY_LABELS.get(share.to_category, share.to_category),
        "purpose": share.purpose,
        "requested_by": share.requested_by,
        "requested_at": f"{share.requested_at:%d %b %Y %H:%M}",
        "broken": [RESTRICTION_LABELS.get(b, b) for b in share.broken],
        "reason": share.reason,
        # a refused share may be put to its author, unless that is waiting or was granted
        "may_ask": refused and (consent is None or not (consent.waiting or consent.lifts)),
        # granted in full: the same share may be asked for again, and will be allowed
        "may_reshare": refused and consent is not None and consent.lifts,
    }


CONSENT_STATES = {
    None: "Sending",
    "ASKED": "Asked of the author",
    "NOT_NEEDED": "No consent needed",
    "UNKNOWN_NOTIFICATION": "Not asked",
    "GRANTED": "Granted",
    "REFUSED": "Refused by the author",
}


def _consent_row(consent: ConsentRecord) -> dict[str, Any]:
    return {
        "consent_id": consent.consent_id,
        "status": consent.status,
        "state": CONSENT_STATES.get(consent.state, consent.state or ""),
        "category": CATEGORY_LABELS.get(consent.category, consent.category),
        "purpose": consent.purpose,
        "requested_by": consent.requested_by,
        "requested_at": f"{consent.requested_at:%d %b %Y %H:%M}",
        "author": consent.author,
        "court_order": consent.court_order,
        "still_blocked": [RESTRICTION_LABELS.get(b, b) for b in consent.still_blocked],
        "reason": _sentence(consent.reason),
    }


def _sentence(text: str | None) -> str:
    """The gateway's words as a sentence of their own."""
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _message(
    request: Request, shares: list[ShareRecord], consents: list[ConsentRecord]
) -> dict[str, str] | None:
    """What the page says at the top after a share or a consent request was made."""
    if (share_id := request.query_params.get("share", "")).isdigit():
        return _share_message(next((s for s in shares if s.share_id == int(share_id)), None))
    if (consent_id := request.query_params.get("consent", "")).isdigit():
        found = next((c for c in consents if c.consent_id == int(consent_id)), None)
        return _consent_message(found)
    return None


def _consent_message(consent: ConsentRecord | None) -> dict[str, str] | None:
    if consent is None:
        return None
    author = consent.author or "the author"
    if consent.state is None:
        return {"kind": "", "text": "The exchange has not answered yet; the request is recorded."}
    if consent.state == "ASKED":
        text = f"Asked {author} for consent; the answer will show here. {_sentence(consent.reason)}"
        return {"kind": "ok", "text": text}
    if consent.lifts:
        text = f"{author} granted consent: ask for the share again. {_sentence(consent.reason)}"
        return {"kind": "ok", "text": text}
    return {"kind": "", "text": f"{CONSENT_STATES[consent.state]}. {_sentence(consent.reason)}"}


def _share_message(share: ShareRecord | None) -> dict[str, str] | None:
    if share is None:
        return None
    if share.allowed is None:
        return {"kind": "", "text": "The exchange has not answered yet; the request is recorded."}
    if share.allowed:
        return {
            "kind": "ok",
            "text": f"Allowed: you may share this with {share.to_name}. {share.reason}",
        }
    broken = ", ".join(RESTRICTION_LABELS.get(b, b) for b in share.broken)
    return {"kind": "", "text": f"Refused: {broken}. {share.reason}"}
