"""The inbox's settings, from ``SGX_INBOX_*`` environment variables (or the CLI's options)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class InboxSettings(BaseSettings):
    """One LA's inbox service. OpenID Connect is on when ``oidc_issuer`` is set; local
    accounts (``safeguard inbox user add``) are on unless ``local_accounts`` is false."""

    model_config = SettingsConfigDict(env_prefix="SGX_INBOX_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8300
    # Signs the session cookie; every instance of one LA's inbox must hold the same one.
    # None: a random secret kept in <home>/inbox/session-<la>.key (mode 0600).
    session_secret: SecretStr | None = None
    session_max_age_s: int = Field(default=8 * 3600, gt=0, description="one working day")
    # Secure cookies are sent over HTTPS only (and http://localhost, which browsers trust).
    secure_cookies: bool = True
    local_accounts: bool = True
    session_idle_s: int = Field(
        default=30 * 60, gt=0, description="a session unused this long ends (server side)"
    )
    sign_in_backoff_s: float = Field(
        default=1.0,
        ge=0,
        description="the wait after the free failed sign-ins of a name or address; it doubles"
        " with each further failure, to 15 minutes (consumers/inbox/throttle.py)",
    )
    share_timeout_s: float = Field(default=30.0, gt=0)
    family_decision_working_days: int = Field(
        default=2,
        ge=0,
        description="a disclosure with no family-informed decision is overdue this many"
        " working days after it was made (weekdays but bank holidays: SGX_SCHOOL_TIMEZONE,"
        " SGX_SCHOOL_BANK_HOLIDAYS)",
    )
    # What a response to a referral offers the referrer as the LA's contact, unless the
    # worker gives another (the front door's telephone and secure email).
    referral_contact: str = ""

    # The LA's identity provider (discovery at <issuer>/.well-known/openid-configuration).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_display_name: str = "your authority's sign-in"
    # Which ID-token claims carry the worker id, role, team, display name and LA.
    oidc_worker_claim: str = "sub"
    oidc_role_claim: str = "sgx_role"
    oidc_team_claim: str = "sgx_team"
    oidc_name_claim: str = "name"
    oidc_la_claim: str | None = "sgx_la"  # when present in a token, it must name this LA
    # The provider serves several LAs: every token must then name this LA in oidc_la_claim.
    oidc_shared: bool = False
    # Machine clients' OAuth2 access tokens (client credentials) from the same provider:
    # the audience they must carry, and the claim holding their scopes (space separated).
    api_audience: str | None = None  # unset: no provider access token is accepted at all
    api_scope_claim: str = "scope"
    # Each machine client this LA admits, with the scopes it may hold here (JSON in the
    # environment, e.g. {"mosaic": ["deliveries:read", "queue:all"]}): a token's scopes
    # are cut to these, and a client not named is refused.
    api_clients: dict[str, list[str]] = {}
