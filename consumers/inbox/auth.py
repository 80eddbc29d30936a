"""Who is asking: people by a signed session cookie, systems by a bearer token; and the
CSRF token every state-changing form carries.

The session is Starlette's signed cookie (itsdangerous, HMAC-SHA1 over the timestamped
payload; HttpOnly, Secure, SameSite=Lax — Lax, not Strict, because the identity provider
sends the browser back to the callback from another site). It holds who signed in and the
CSRF token, never anything about a child. Signing in starts a new session, so a session id
planted before sign-in is worth nothing. The CSRF check is the synchronizer-token pattern
(a random token in the session, echoed in every form and compared in constant time):
small enough that a library would add more than it saves.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from starlette.requests import Request

from consumers.inbox.access import Principal, role_from
from consumers.inbox.oidc import IdentityProvider
from consumers.inbox.sessions import Session
from consumers.inbox.store import TOKEN_PREFIX, InboxStore
from sgx.errors import ConfigError, Forbidden, NotAuthenticated
from sgx.keys.files import read_private_file
from sgx.keys.key_admin import write_private_file

SESSION_COOKIE = "sgx_inbox"
CALLER = "sgx_caller"  # who made a request, for its log line (request.state)
CSRF_FIELD = "csrf_token"


MIN_SECRET = 32  # characters of a session-signing secret (48 random bytes are made: 64)


def session_secret(path: Path) -> str:
    """The session-signing secret kept at ``path`` (made, mode 0600, on first use; read as
    every private file is, refused if group or other may read it, or if it is short).

    It is written whole to a file of its own, then linked into place: a second instance
    starting at the same moment reads a whole secret or makes its own and finds the
    first one's, never an empty file."""
    if not path.exists():
        made = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(made, secrets.token_urlsafe(48).encode())
            os.link(made, path)
        except FileExistsError:
            pass  # another instance linked its own first: read theirs
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create the session secret: {exc}") from exc
        finally:
            made.unlink(missing_ok=True)
    return checked_secret(read_private_file(path).decode().strip(), str(path))


def checked_secret(secret: str, where: str) -> str:
    """``secret`` if it is long enough to sign sessions with; ConfigError naming ``where``."""
    if len(secret) < MIN_SECRET:
        raise ConfigError(
            f"{where}: the session secret has {len(secret)} characters; it needs {MIN_SECRET}"
            " or more (random ones)"
        )
    return secret


SESSION_TOKEN = "sid"  # noqa: S105 - the session key under which the token is kept
PERSON = "sgx_person"  # the request's signed-in person, once looked up (request.state)


async def sign_in(
    request: Request, store: InboxStore, who: Principal, via: str, username: str | None = None
) -> None:
    """Begin a server-side session for ``who``; the cookie carries only its token."""
    token = await store.sessions.begin(
        Session(who.subject, username, who.name, who.role, who.team, via)
    )
    request.session.clear()
    request.session[SESSION_TOKEN] = token
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


async def sign_out(request: Request, store: InboxStore) -> None:
    """End the session on the server (a copy of the cookie opens nothing after)."""
    token = request.session.get(SESSION_TOKEN)
    if isinstance(token, str):
        await store.sessions.end(token)
    request.session.clear()


async def person(request: Request, store: InboxStore, la: str) -> Principal | None:
    """The signed-in person, or None: the session must be live on the server, and a local
    account's role and team are read from the account now (a disabled one signs nobody)."""
    if hasattr(request.state, PERSON):
        found: Principal | None = getattr(request.state, PERSON)
        return found
    token = request.session.get(SESSION_TOKEN)
    session = await store.sessions.find(token) if isinstance(token, str) else None
    who = None
    if session is not None:
        role, team = session.role, session.team
        if session.username is not None:
            account = await store.account(session.username)
            if account is None or account.disabled or account.worker_id != session.subject:
                await store.sessions.end(str(token), "account changed")
                session = None
            else:
                role, team = account.role, account.team
        if session is not None:
            who = Principal(
                la=la,
                subject=session.subject,
                kind="person",
                name=session.name,
                role=role_from(role),
                team=team,
            )
            setattr(request.state, CALLER, f"person:{session.subject}")
    setattr(request.state, PERSON, who)
    return who


def signed_in(request: Request) -> Principal | None:
    """The person :func:`person` found for this request, if it looked (for page headers)."""
    found: Principal | None = getattr(request.state, PERSON, None)
    return found


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made for a visitor not yet signed in, for the sign-in form)."""
    token = request.session.get(CSRF_FIELD)
    if not token:
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, sent: object) -> None:
    expected = request.session.get(CSRF_FIELD)
    if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, str(expected))):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and try again")


async def system(
    request: Request, store: InboxStore, idp: IdentityProvider | None, la: str
) -> Principal:
    """The machine client behind ``Authorization: Bearer ...``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send Authorization: Bearer <token>")
    token = token.strip()
    if token.startswith(TOKEN_PREFIX):
        found = await store.client_for(la, token)
        if found is None:
            raise NotAuthenticated("unknown or revoked API token")
    elif idp is None:
        raise NotAuthenticated("unknown API token")
    else:
        found = await idp.system(token)
    setattr(request.state, CALLER, f"system:{found.subject}")
    return found
