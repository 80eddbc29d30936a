"""Sign-in through the LA's identity provider: OpenID Connect for people, OAuth2 access
tokens (client credentials) for case-management systems.

People: authlib's Starlette client runs the authorization-code flow with PKCE (S256);
discovery, the state and nonce (kept in the signed session cookie, so any instance can
finish a sign-in another started), the token request and the ID token's signature, issuer,
audience, expiry and nonce checks are authlib's. The claims then map to a
:class:`~consumers.inbox.access.Principal` by the settings' claim names.

Systems: a bearer token that is not one of the inbox's own (``sgxi_``) is taken as a JWT
access token of the provider, verified with joserfc (authlib's JOSE implementation; its
older ``authlib.jose`` is deprecated) against the provider's JWKS, for issuer, audience
and expiry; its scopes are the inbox's scopes (:mod:`consumers.inbox.access`).
"""

from __future__ import annotations

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

    def person(self, claims: dict[str, Any]) -> Principal:
        s = self._settings
        la = claims.get(s.oidc_la_claim) if s.oidc_la_claim else None
        if la is not None and la != self._la:
            raise Forbidden("this account belongs to another local authority")
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
        """A machine client's access token, verified; NotAuthenticated if it is not valid."""
        try:
            decoded = jwt.decode(token, await self._keys(), algorithms=_ALGORITHMS)
            options: dict[str, Any] = {"iss": {"essential": True, "value": self.issuer}}
            options["exp"] = {"essential": True}
            if self._settings.api_audience:
                options["aud"] = {"essential": True, "value": self._settings.api_audience}
            jwt.JWTClaimsRegistry(**options).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise NotAuthenticated(f"the access token is not valid: {exc}") from exc
        claims = decoded.claims
        client = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        scopes = str(claims.get(self._settings.api_scope_claim) or "").split()
        return Principal(
            la=self._la,
            subject=str(client),
            kind="system",
            name=str(client),
            scopes=frozenset(scopes),
        )

    async def _keys(self) -> KeySet:
        if self._jwks is not None and time.monotonic() - self._jwks[0] < _JWKS_TTL_S:
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
