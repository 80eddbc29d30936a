"""Typed settings for every service, read from ``SGX_*`` environment variables.

Secrets (a PostgreSQL DSN with a password, SASL passwords) are ``SecretStr`` so they
never print in logs or reprs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sgx.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
_SCHEMA = re.compile(r"[a-z][a-z0-9_]{0,39}")


class KafkaSettings(BaseSettings):
    """How a service reaches the broker."""

    model_config = SettingsConfigDict(env_prefix="SGX_KAFKA_", extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # The embedded broker holds a fetch until this expires: it sets the latency floor per hop.
    fetch_max_wait_ms: int = 20
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    # How long a service waits for its consumer group's first assignment before it fails
    # saying what the group's coordinator did (sgx/kafka/groups.py): a join takes the
    # session timeout or two when members come and go, and the gateway's claim of its audit
    # chains (gateway.service.CLAIM_LIMIT_S, 60 s) at most once more.
    group_join_limit_s: float = Field(default=120.0, gt=0)
    # How long a producer waits to fill a batch; not the gateway's, which sends a batch's
    # records at once and awaits their acks (safeguard.runtime.run_gateway: 0).
    linger_ms: int = 5
    # Idempotent producers (a retried batch is written once). Apache Kafka has them; the
    # embedded broker (Tansu) refuses them, so the demo and its users turn this off.
    idempotence: bool = True
    max_batch_size: int = 262_144
    inbound_partitions: int = 3
    delivery_partitions: int = 3


class StoreSettings(BaseSettings):
    """Where a service keeps its durable state: SQLite by default, PostgreSQL with a DSN."""

    model_config = SettingsConfigDict(env_prefix="SGX_STORE_", extra="forbid")

    # e.g. postgresql+asyncpg://user:pw@host/db ; None means SQLite under the home directory.
    dsn: SecretStr | None = None
    # The PostgreSQL schema of this party's store. Each party's store is its own (one LA's
    # queue and inbox, the gateway's audit, an agency's outbox): in production a service
    # runs for one party with its own role and schema (deploy/store_plan.py). "{party}" in
    # the name stands for the owner (sgx_{party}: sgx_la_camden), so one process serving
    # several parties (the demo, tests) still keeps one schema each.
    pg_schema: str | None = None

    @field_validator("pg_schema")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        if value == "":
            return None  # SGX_STORE_PG_SCHEMA= : the DSN's default schema
        if value is not None and not _SCHEMA.fullmatch(value.replace("{party}", "p")):
            raise ValueError(
                "a PostgreSQL schema name is 1-40 of a-z 0-9 _ starting with a letter, "
                "optionally with {party}"
            )
        return value

    def schema_for(self, owner: str) -> str | None:
        """The schema of ``owner``'s store (None: the DSN's default schema)."""
        if self.pg_schema is None:
            return None
        name = self.pg_schema.replace("{party}", owner.replace("-", "_"))
        if len(name) > 63:  # PostgreSQL's limit: a longer name would be cut, not refused
            raise ConfigError(
                f"the PostgreSQL schema of {owner}'s store, {name}, is over 63 characters"
            )
        return name


class ExchangeSettings(BaseSettings):
    """Settings shared by the exchange's services."""

    model_config = SettingsConfigDict(env_prefix="SGX_", extra="ignore")

    home: Path = Field(default=Path(".sgx"), description="state directory: trust/, stores")
    schema_dir: Path = REPO_ROOT / "schemas"
    agreement_file: Path = REPO_ROOT / "gateway" / "agreement.toml"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # The share of each sender's notifications that should name the child by NHS number:
    # exported as sgx_gateway_nhs_number_target_ratio, the identifier-quality alert's bar.
    nhs_number_target: float = Field(default=0.95, ge=0.0, le=1.0)
    # The connector an agency's producer publishes through (SGX_CONNECTOR): a system that
    # publishes for several agencies, on its own topic. Unset: the connector the trust
    # directory lists as carrying the agency, if exactly one does; else the agency is its
    # own connector and publishes on its own topic.
    connector: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    # How often a running service looks for trust-directory changes (also at once on SIGHUP).
    trust_reload_s: float = Field(default=5.0, gt=0)
    checkpoint_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="how often a gateway signs the heads of the audit chains it owns",
    )

    @property
    def trust_dir(self) -> Path:
        return self.home / "trust"
