"""Sign-in through the LA's identity provider: OpenID Connect for people, OAuth2 access
tokens (client credentials) for case-management systems.

People: authlib's Starlette client runs the authorization-code flow with PKCE (S256);
discovery, the state and nonce (kept in the signed session cookie, so any instance can
finish a sign-in another started), the token request and the ID token's signature, issuer,
audience, expiry and nonce checks are authlib's. The claims then map to a
:class:`~consumers.inbox.access.Principal` by the settings' claim names.

Systems: a bearer token that is not one of the inbox's own (``sgxi_``) is taken as a JWT
access token of the provider, verified with joserfc (authlib's JOSE implementation; its
older ``authlib.jose`` is deprecated) against the provider's JWKS: its signature, issuer,
audience (``SGX_INBOX_API_AUDIENCE``; without one no provider token is accepted), expiry
and not-before, that it is an access token (RFC 9068 ``typ: at+jwt``, or a ``typ:
Bearer`` claim; never an ID token), that its client is one this LA admits
(``SGX_INBOX_API_CLIENTS``), whose scopes cut the token's, and, where the provider serves
several LAs (``SGX_INBOX_OIDC_SHARED``), that it names this LA. A key id the cached key
set lacks makes the inbox read the provider's keys again, once.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx2
from authlib.integrations.starlette_client import OAuth, OAuthError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import Response

from consumers.inbox.access import Principal, role_from
from consumers.inbox.settings import InboxSettings
from sgx.errors import ConfigError, Forbidden, NotAuthenticated

_ALGORITHMS = ["RS256", "ES256", "EdDSA"]
_JWKS_TTL_S = 300.0
_REFRESH_S = 30.0  # an unknown key id reads the keys again, but not more often than this


class IdentityProvider:
    """The LA's OpenID provider, as this inbox uses it."""

    def __init__(self, settings: InboxSettings, la: str) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id):
            raise ConfigError("OpenID Connect needs SGX_INBOX_OIDC_ISSUER and _CLIENT_ID")
        self._settings = settings
        self._la = la
        self.issuer = settings.oidc_issuer.rstrip("/")
        secret = settings.oidc_client_secret
        self._oauth = OAuth()
        self._oauth.register(
            name="la",
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"},
        )
        self._jwks: tuple[float, KeySet] | None = None

    @property
    def _client(self) -> Any:
        return self._oauth.create_client("la")

    async def start(self, request: Request, redirect_uri: str) -> Response:
        """Send the browser to the provider (state, nonce and PKCE verifier in the session)."""
        response: Response = await self._client.authorize_redirect(request, redirect_uri)
        return response

    async def finish(self, request: Request) -> Principal:
        """Complete the code flow; the signed-in person as a Principal."""
        try:
            token = await self._client.authorize_access_token(request)
        except (OAuthError, JoseError, httpx2.HTTPError, KeyError, ValueError) as exc:
            raise NotAuthenticated(f"sign-in with the identity provider failed: {exc}") from exc
        claims = token.get("userinfo")
        if not claims:
            raise NotAuthenticated("the identity provider returned no ID token")
        return self.person(dict(claims))

    def _check_la(self, claims: dict[str, Any], what: str) -> None:
        s = self._settings
        la = claims.get(s.oidc_la_claim) if s.oidc_la_claim else None
        if la is None and s.oidc_shared:
            raise Forbidden(f"the {what} names no local authority ({s.oidc_la_claim!r})")
        if la is not None and la != self._la:
            raise Forbidden(f"this {what} belongs to another local authority")

    def person(self, claims: dict[str, Any]) -> Principal:
        s = self._settings
        self._check_la(claims, "account")
        subject = claims.get(s.oidc_worker_claim)
        if not isinstance(subject, str) or not subject:
            raise NotAuthenticated(f"the ID token has no {s.oidc_worker_claim!r} claim")
        team = claims.get(s.oidc_team_claim)
        return Principal(
            la=self._la,
            subject=subject,
            kind="person",
            name=str(claims.get(s.oidc_name_claim) or subject),
            role=role_from(claims.get(s.oidc_role_claim)),
            team=team if isinstance(team, str) else None,
        )

    async def system(self, token: str) -> Principal:
        """A machine client's access token, verified; NotAuthenticated if it is not valid,
        Forbidden if it is valid but not for this LA."""
        s = self._settings
        if not s.api_audience:
            raise NotAuthenticated(
                "this inbox accepts no access tokens of the identity provider"
                " (SGX_INBOX_API_AUDIENCE is not set)"
            )
        try:
            decoded = await self._decode(token)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": s.api_audience},
                exp={"essential": True},
                nbf={"essential": False},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise NotAuthenticated(f"the access token is not valid: {exc}") from exc
        claims = decoded.claims
        typ = str(decoded.header.get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt") and claims.get("typ") != "Bearer":
            raise NotAuthenticated("the token is not an access token (typ at+jwt)")
        self._check_la(claims, "token")
        client = str(claims.get("client_id") or claims.get("azp") or "")
        allowed = s.api_clients.get(client)
        if allowed is None:
            raise Forbidden(f"client {client or '(unnamed)'!r} is not admitted to this inbox")
        scopes = set(str(claims.get(s.api_scope_claim) or "").split()) & set(allowed)
        return Principal(
            la=self._la,
            subject=client,
            kind="system",
            name=client,
            scopes=frozenset(scopes),
        )

    async def _decode(self, token: str) -> Any:
        """The token decoded with the provider's keys, read again once if it names a key
        id they lack (the provider rotated its keys)."""
        keys = await self._keys()
        kid = _kid_of(token)
        unknown = kid is not None and not any(k.kid == kid for k in keys.keys)
        if unknown and self._jwks is not None and time.monotonic() - self._jwks[0] > _REFRESH_S:
            keys = await self._keys(refresh=True)  # at most every _REFRESH_S: not on demand
        return jwt.decode(token, keys, algorithms=_ALGORITHMS)

    async def _keys(self, *, refresh: bool = False) -> KeySet:
        fresh = self._jwks is not None and time.monotonic() - self._jwks[0] < _JWKS_TTL_S
        if fresh and not refresh and self._jwks is not None:
            return self._jwks[1]
        try:
            metadata = await self._client.load_server_metadata()
            async with httpx2.AsyncClient(timeout=10) as http:
                answer = await http.get(metadata["jwks_uri"])
                answer.raise_for_status()
                keys = KeySet.import_key_set(answer.json())
        except (httpx2.HTTPError, KeyError, ValueError, JoseError) as exc:
            raise NotAuthenticated(f"the identity provider's keys cannot be read: {exc}") from exc
        self._jwks = (time.monotonic(), keys)
        return keys


def _kid_of(token: str) -> str | None:
    """The key id a JWT's header names (unverified: only to pick a key), or None."""
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except (ValueError, IndexError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
