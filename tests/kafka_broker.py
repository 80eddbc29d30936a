"""Kafka brokers for the tests: fast client settings, and a real Apache Kafka.

``apache_kafka`` (a session fixture, imported by ``tests/conftest.py``) runs
``scripts/ensure-kafka.sh start``: Apache Kafka from Maven Central (fetched once into a
cache outside the repository), one KRaft node on loopback with a PLAINTEXT listener and a
SASL_SSL one (SCRAM-SHA-512, the certificates of ``deploy/scripts/make-certs.sh``), the
StandardAuthorizer on and deny by default, and deploy/'s topics, SCRAM users and ACLs
applied by the operators' own ``deploy/scripts/create-topics-and-acls.sh``. The broker is
left running for the next session. If it cannot start, every test that uses it fails
with the script's own words: it never skips.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from benchmarks.local_kafka import ENSURE_KAFKA, delete_every_topic, ensure_local_kafka
from sgx.errors import ConfigError
from sgx.settings import KafkaSettings


def kafka_test_settings(bootstrap_servers: str, **security: Any) -> KafkaSettings:
    """Settings for ``bootstrap_servers`` with timings that keep tests fast; ``security``
    sets the protocol, SASL and TLS fields."""
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        fetch_max_wait_ms=10,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        **security,
    )


@dataclass(frozen=True)
class ApacheKafka:
    """How to reach the Apache Kafka of ``scripts/ensure-kafka.sh``."""

    version: str
    plaintext: str  # PLAINTEXT bootstrap; its principal ANONYMOUS is a super user
    sasl_ssl: str  # SASL_SSL bootstrap (SCRAM-SHA-512); the certificate names localhost
    ca_file: Path  # the dev CA of make-certs.sh, which signed the broker's certificate
    sasl_dir: Path  # <principal>.password for every SCRAM principal of deploy/'s plan
    admin_config: Path  # Kafka client properties of sgx-admin, the plan's applier

    def password(self, principal: str) -> str:
        """The SCRAM password make-certs.sh made for ``principal``."""
        return (self.sasl_dir / f"{principal}.password").read_text(encoding="utf-8").strip()

    def plaintext_settings(self) -> KafkaSettings:
        """Settings for the PLAINTEXT listener: no authentication, every permission."""
        return kafka_test_settings(self.plaintext)

    def scram_settings(self, principal: str, password: str | None = None) -> KafkaSettings:
        """Settings for the SASL_SSL listener as ``principal`` (its own password unless
        ``password`` is given), trusting the dev CA: the project's own client settings,
        as a deployed service sets them (``SGX_KAFKA_*``)."""
        return kafka_test_settings(
            self.sasl_ssl,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=principal,
            sasl_password=SecretStr(self.password(principal) if password is None else password),
            ssl_cafile=self.ca_file,
        )


# The flow tests' broker: a second Apache Kafka of the same script, without deploy/'s plan,
# on its own ports and run directory, so deleting every topic between tests (each test
# starts from an empty broker, as with a Tansu of its own) never touches the plan's.
FLOW_BROKER = {
    # beside the script's own default run directory, /var/tmp/sgx-kafka
    "SGX_KAFKA_RUN": os.environ.get("SGX_TEST_KAFKA_FLOW_RUN", "/var/tmp/sgx-kafka-flow"),  # noqa: S108
    "SGX_KAFKA_PLAINTEXT_PORT": "19192",
    "SGX_KAFKA_SASL_SSL_PORT": "19193",
    "SGX_KAFKA_CONTROLLER_PORT": "19194",
    "SGX_KAFKA_PLAN": "0",
}


def ensure_apache_kafka(env: Mapping[str, str] | None = None) -> ApacheKafka:
    """Start (or find running) the broker of ``scripts/ensure-kafka.sh`` (``env``: its
    settings, e.g. :data:`FLOW_BROKER`); fail, never skip, if it cannot."""
    try:
        found = ensure_local_kafka(env)
    except ConfigError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        return ApacheKafka(
            version=found["KAFKA_VERSION"],
            plaintext=found["KAFKA_PLAINTEXT"],
            sasl_ssl=found["KAFKA_SASL_SSL"],
            ca_file=Path(found["KAFKA_CA_FILE"]),
            sasl_dir=Path(found["KAFKA_SASL_DIR"]),
            admin_config=Path(found["KAFKA_ADMIN_CONFIG"]),
        )
    except KeyError as missing:
        pytest.fail(f"{ENSURE_KAFKA} start did not print {missing}: {found}", pytrace=False)


BROKERS = ("kafka", "tansu")


def broker_kind(kind: str | None = None) -> str:
    """``kind``, else ``SGX_TEST_BROKER`` (default ``kafka``); a typo fails the test."""
    chosen = kind or os.environ.get("SGX_TEST_BROKER") or "kafka"
    if chosen not in BROKERS:
        raise AssertionError(f"SGX_TEST_BROKER={chosen!r}: use one of {', '.join(BROKERS)}")
    return chosen


@functools.cache
def flow_kafka() -> ApacheKafka:
    """The flow tests' Apache Kafka (:data:`FLOW_BROKER`), started once per session."""
    return ensure_apache_kafka(FLOW_BROKER)


async def emptied(bootstrap: str) -> None:
    """Every topic of the flow broker deleted: the next test starts from an empty broker."""
    try:
        await delete_every_topic(bootstrap)
    except ConfigError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def apache_kafka() -> ApacheKafka:
    """The Apache Kafka of ``scripts/ensure-kafka.sh``, running, with deploy/'s plan applied."""
    return ensure_apache_kafka()
