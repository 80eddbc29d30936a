"""The inbox's ASGI app: the web pages, the API, ``/healthz``, ``/readyz``. Its metrics
are served on the metrics port (``SGX_METRICS_PORT``), as every service's, never beside
the pages people use (``safeguard.inbox_wiring``).

Every response carries a strict Content-Security-Policy (no script, no inline style, no
framing), ``nosniff`` and ``no-referrer``. Each request is logged as its route template
(``/items/{item_id}``), status, time and caller id: never a query string, a form field or
anything opened from an item. Errors map from the exchange's exception tree: not signed in
→ the sign-in page (web) or 401 (API); Forbidden → 403; NotFound → 404 without a word of
the item; AlreadyAsked → 409; ContractError → 422 with the field's path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.inbox import auth
from consumers.inbox.api import PREFIX, Api, errors
from consumers.inbox.family import Families
from consumers.inbox.family_api import FamilyApi
from consumers.inbox.family_web import FamilyWeb
from consumers.inbox.network_checks import NetworkChecks
from consumers.inbox.network_checks_api import NetworkChecksApi
from consumers.inbox.network_checks_web import NetworkChecksWeb
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.openapi import openapi_document
from consumers.inbox.service import Inbox
from consumers.inbox.settings import InboxSettings
from consumers.inbox.views import ID_DIGITS
from consumers.inbox.web import Web
from sgx.domain.calendar import CalendarSettings
from sgx.domain.family import DisclosureKind
from sgx.errors import (
    AlreadyAsked,
    ContractError,
    ExchangeError,
    Forbidden,
    NotAuthenticated,
    NotFound,
)
from sgx.ops.metrics import FamilyMetrics

log = logging.getLogger("sgx.inbox")
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _Id(Convertor[int]):
    """An id in a path: a whole number of at most :data:`~consumers.inbox.views.ID_DIGITS`
    ASCII digits, as a query's is read (:func:`~consumers.inbox.views.whole_number`), so it
    fits the stores' 64-bit ids; any other path segment matches no route (404)."""

    regex = f"[0-9]{{1,{ID_DIGITS}}}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", _Id())

MAX_BODY = 64 * 1024  # the largest form or JSON body the inbox reads (a share is ~1 KB)


class _BodyTooLarge(Exception):
    pass


class _Guard:
    """Security headers on every response, bodies no larger than :data:`MAX_BODY`, and one
    log line (with the caller, once known) and metric per request."""

    def __init__(self, app: ASGIApp, inbox: Inbox) -> None:
        self._app = app
        self._inbox = inbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.monotonic()
        status, received, responded = 500, 0, False

        async def sending(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        async def receiving() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise _BodyTooLarge
            return message

        declared = dict(scope["headers"]).get(b"content-length", b"0")
        try:
            if not declared.isdigit() or int(declared) > MAX_BODY:
                raise _BodyTooLarge
            await self._app(scope, receiving, sending)
        except _BodyTooLarge:
            if not responded:
                too_large = f"the body must be at most {MAX_BODY} bytes"
                refusal = (
                    errors(413, [("body", too_large)])
                    if scope["path"].startswith(PREFIX)
                    else PlainTextResponse(too_large + "\n", 413)
                )
                await refusal(scope, receive, sending)
        finally:
            # the router leaves the route it matched in the scope (its template, not the URL)
            matched = scope.get("route")
            route = matched.path if isinstance(matched, Route) else "(unknown)"
            self._inbox.metrics.requests.labels(route, str(status)).inc()
            log.info(
                "%s %s %d %.0f ms by %s",
                scope["method"],
                route,
                status,
                (time.monotonic() - started) * 1000,
                scope.get("state", {}).get(auth.CALLER, "(anonymous)"),
            )


def inbox_app(
    inbox: Inbox,
    settings: InboxSettings,
    *,
    session_secret: str,
    la_name: str,
    idp: IdentityProvider | None = None,
    ready: Callable[[], Awaitable[bool]] | None = None,
    families: Families | None = None,
    network_checks: NetworkChecks | None = None,
) -> Starlette:
    web = Web(
        inbox,
        la_name=la_name,
        local_accounts=settings.local_accounts,
        idp=idp,
        oidc_name=settings.oidc_display_name,
    )
    api = Api(inbox, idp)
    families = families or _families(inbox, settings)
    web.families, api.families = FamilyWeb(web, families), families
    family_web, family_api = web.families, FamilyApi(inbox, families, idp)
    share = DisclosureKind.ONWARD_SHARE
    network = network_checks or NetworkChecks(inbox, families, trust=None, ask=None)
    checks = NetworkChecksApi(inbox, network, idp)
    checks_web = NetworkChecksWeb(web, family_web, network)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        ok = await ready() if ready else True
        return PlainTextResponse("ready\n" if ok else "not ready\n", status_code=200 if ok else 503)

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    async def home(_: Request) -> Response:
        return RedirectResponse("/queue", status_code=303)

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/login", web.login_form, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/login/oidc", web.oidc_start, methods=["GET"]),
        Route("/auth/callback", web.oidc_callback, methods=["GET"], name="oidc_callback"),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/queue", web.queue, methods=["GET"]),
        Route("/items/{item_id:id}", web.item, methods=["GET"]),
        Route("/items/{item_id:id}/ack", web.ack, methods=["POST"]),
        Route("/items/{item_id:id}/share", web.share, methods=["POST"]),
        Route("/shares/{share_id:id}/consent", web.ask_consent, methods=["POST"]),
        Route("/items/{item_id:id}/child", web.child, methods=["GET"]),
        Route("/family", family_web.outstanding, methods=["GET"]),
        Route("/shares/{share_id:id}/family", family_web.record, methods=["POST"]),
        Route("/items/{item_id:id}/family-summary", family_web.summary, methods=["GET"]),
        Route("/items/{item_id:id}/referral", web.respond, methods=["POST"]),
        Route("/items/{item_id:id}/network-checks", checks_web.page, methods=["GET"]),
        Route("/items/{item_id:id}/network-checks", checks_web.ask, methods=["POST"]),
        Route("/static/inbox.css", web.stylesheet, methods=["GET"]),
        Route(f"{PREFIX}/deliveries", api.deliveries, methods=["GET"]),
        Route(PREFIX + "/deliveries/{item_id:id}", api.delivery, methods=["GET"]),
        Route(PREFIX + "/deliveries/{item_id:id}/ack", api.ack, methods=["POST"]),
        Route(PREFIX + "/deliveries/{item_id:id}/shares", api.share, methods=["POST"]),
        Route(PREFIX + "/shares/{share_id:id}", api.share_decision, methods=["GET"]),
        Route(PREFIX + "/shares/{share_id:id}/consent", api.ask_consent, methods=["POST"]),
        Route(PREFIX + "/consents/{consent_id:id}", api.consent, methods=["GET"]),
        Route(
            PREFIX + "/deliveries/{item_id:id}/sharing-record", api.sharing_record, methods=["GET"]
        ),
        Route(
            PREFIX + "/shares/{share_id:id}/family",
            family_api.record(share, "share_id"),
            methods=["POST"],
        ),
        Route(
            PREFIX + "/shares/{share_id:id}/family",
            family_api.decision(share, "share_id"),
            methods=["GET"],
        ),
        Route(f"{PREFIX}/family/outstanding", family_api.outstanding, methods=["GET"]),
        Route(
            PREFIX + "/deliveries/{item_id:id}/family-summary", family_api.summary, methods=["GET"]
        ),
        Route(PREFIX + "/deliveries/{item_id:id}/referral", api.referral, methods=["GET"]),
        Route(
            PREFIX + "/deliveries/{item_id:id}/referral/responses", api.respond, methods=["POST"]
        ),
        Route(PREFIX + "/deliveries/{item_id:id}/network-checks", checks.ask, methods=["POST"]),
        Route(PREFIX + "/deliveries/{item_id:id}/network-checks", checks.list, methods=["GET"]),
        Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]

    def is_api(request: Request) -> bool:
        return request.url.path.startswith(PREFIX)

    async def no_route(request: Request, exc: Exception) -> Response:
        """The router's 404 (no route matches, as for an id that is not a whole number)
        and 405, as the API's JSON errors on its paths."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if "Allow" in headers:  # the router lists a set's methods, in no fixed order
            headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
        if not is_api(request):
            return PlainTextResponse(exc.detail, exc.status_code, headers=headers)
        problems = {
            404: "no resource of this API has this path (ids are whole numbers of at most "
            f"{ID_DIGITS} digits); see {PREFIX}/openapi.json",
            405: f"{request.method} is not allowed on this path",
        }
        problem = problems.get(exc.status_code, exc.detail)
        return errors(exc.status_code, [("path", problem)], headers)

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return errors(401, [("header.authorization", str(exc))])
        return RedirectResponse("/login", status_code=303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return errors(403, [("", str(exc))])
        return await web.error(request, 403, "Not allowed", str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return errors(404, [("path", str(exc))])
        return await web.error(request, 404, "Not found", str(exc))

    async def conflict(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return errors(409, [("path", str(exc))])
        return await web.error(request, 409, "Asked already", str(exc))

    async def bad_input(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ContractError)
        path = exc.path if "." in exc.path else f"body.{exc.path}"
        if is_api(request):
            return errors(422, [(path, exc.problem)])
        return await web.error(request, 422, "Please check the form", f"{exc.path}: {exc.problem}")

    async def failed(request: Request, exc: Exception) -> Response:
        log.error("%s failed: %s", request.url.path, type(exc).__name__)
        if is_api(request):
            return errors(503, [("", "the inbox could not do this now; try again")])
        return await web.error(request, 503, "Try again", "The inbox could not do this now.")

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_Guard, inbox=inbox),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret,
                session_cookie=auth.SESSION_COOKIE,
                max_age=settings.session_max_age_s,
                same_site="lax",
                https_only=settings.secure_cookies,
            ),
        ],
        exception_handlers={
            HTTPException: no_route,
            NotAuthenticated: not_signed_in,
            Forbidden: forbidden,
            NotFound: not_found,
            AlreadyAsked: conflict,
            ContractError: bad_input,
            ExchangeError: failed,
        },
    )
    return app


def _families(inbox: Inbox, settings: InboxSettings) -> Families:
    """Families informed with the calendar of ``SGX_SCHOOL_*`` and metrics of its own (the
    served inbox passes its own, on the registry it serves: ``safeguard.inbox_wiring``)."""
    return Families(
        inbox,
        calendar=CalendarSettings().calendar(),
        due_days=settings.family_decision_working_days,
        metrics=FamilyMetrics(CollectorRegistry()),
    )
