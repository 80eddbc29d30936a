"""A small OpenID provider for the inbox's tests: discovery, an authorization endpoint
(a page with a button per known person), a token endpoint (authorization code with PKCE
S256, and client credentials) and a JWKS; tokens are RS256 JWTs signed with joserfc
(authlib's JOSE). It is strict where the inbox must be correct: an unknown client, a
wrong secret, a code used twice, a wrong redirect_uri or a PKCE verifier that does not
match the challenge are refused, and every check that passed is counted."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sgx.ops.serving import HttpServer


@dataclass
class OpenIDProvider:
    client_id: str
    client_secret: str
    people: dict[str, dict[str, Any]]  # login name -> extra ID-token claims
    machines: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (secret, scope)
    audience: str = "sgx-inbox-api"
    wrong_nonce: bool = False  # sign ID tokens with another nonce (the inbox must refuse)
    checks: Counter[str] = field(default_factory=Counter)
    issuer: str = ""
    _key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, auto_kid=True))
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _server: HttpServer | None = None

    async def __aenter__(self) -> OpenIDProvider:
        self._server = HttpServer(self._app(), "127.0.0.1", 0)
        await self._server.start()
        self.issuer = f"http://127.0.0.1:{self._server.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.stop()

    def _sign(self, claims: dict[str, Any], typ: str | None = None) -> str:
        header = {"alg": "RS256", "kid": self._key.kid} | ({"typ": typ} if typ else {})
        return jwt.encode(header, claims, self._key)

    def rotate_key(self) -> None:
        """A new signing key (and key id); the key set serves only the new one."""
        self._key = RSAKey.generate_key(2048, auto_kid=True)

    def machine_token(self, client: str, scope: str, **changes: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client,
            "client_id": client,
            "aud": self.audience,
            "scope": scope,
            "iat": now,
            "exp": now + 300,
        } | changes
        return self._sign(claims, typ="at+jwt")  # an access token (RFC 9068)

    def _client_ok(self, request: Request, form: Any) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            client, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            client, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if client == self.client_id and secrets.compare_digest(secret, self.client_secret):
            return client
        known = self.machines.get(client)
        if known and secrets.compare_digest(secret, known[0]):
            return client
        return None

    def _app(self) -> Starlette:
        async def discovery(_: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "grant_types_supported": ["authorization_code", "client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                }
            )

        async def jwks(_: Request) -> Response:
            return JSONResponse(KeySet([self._key]).as_dict(private=False))

        async def authorize(request: Request) -> Response:
            q = request.query_params
            if q.get("client_id") != self.client_id or q.get("response_type") != "code":
                return HTMLResponse("unknown client", status_code=400)
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return HTMLResponse("PKCE S256 is required", status_code=400)
            if not q.get("nonce") or not q.get("state"):
                return HTMLResponse("nonce and state are required", status_code=400)
            self.checks["authorize"] += 1
            hidden = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in q.items()
            )
            buttons = "".join(
                f'<button name="login" value="{(n := html.escape(name))}">Sign in as {n}</button>'
                for name in self.people
            )
            return HTMLResponse(
                f'<!doctype html><html lang="en"><title>Test IdP</title><main>'
                f'<form method="post" action="/authorize">{hidden}{buttons}</form></main></html>'
            )

        async def approve(request: Request) -> Response:
            form = await request.form()
            login = str(form.get("login"))
            code = secrets.token_urlsafe(16)
            self._codes[code] = {k: str(v) for k, v in form.items()}
            target = str(form["redirect_uri"])
            return (
                RedirectResponse(
                    f"{target}?{urlencode({'code': code, 'state': form['state']})}", status_code=302
                )
                if login in self.people
                else HTMLResponse("unknown person", status_code=400)
            )

        async def token(request: Request) -> Response:
            form = await request.form()
            client = self._client_ok(request, form)
            if client is None:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            grant = form.get("grant_type")
            now = int(time.time())
            if grant == "client_credentials" and client in self.machines:
                self.checks["client_credentials"] += 1
                scope = self.machines[client][1]
                return JSONResponse(
                    {
                        "access_token": self.machine_token(client, scope),
                        "token_type": "Bearer",
                        "expires_in": 300,
                    }
                )
            if grant != "authorization_code":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            asked = self._codes.pop(str(form.get("code")), None)
            if asked is None or asked["redirect_uri"] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            verifier = str(form.get("code_verifier", ""))
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not verifier or challenge != asked["code_challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            self.checks["pkce"] += 1
            person = self.people[asked["login"]]
            claims = {
                "iss": self.issuer,
                "aud": self.client_id,
                "iat": now,
                "exp": now + 300,
                "nonce": "not-the-nonce" if self.wrong_nonce else asked["nonce"],
                "sub": asked["login"],
            } | person
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": self._sign(claims),
                }
            )

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/authorize", authorize, methods=["GET"]),
                Route("/authorize", approve, methods=["POST"]),
                Route("/token", token, methods=["POST"]),
            ]
        )
