"""Shared fixtures: a real Kafka-protocol broker for the session, and a home directory.

``broker`` is the flow tests' Apache Kafka (``SGX_TEST_BROKER=kafka``, the default), an
embedded Tansu broker on a free loopback port (``tansu``), or the cluster named by
``SGX_TEST_BOOTSTRAP``. ``apache_kafka`` (``tests/kafka_broker.py``)
is a real Apache Kafka with SASL_SSL and deploy/'s ACLs, from ``scripts/ensure-kafka.sh``.
If a broker cannot start, every test that needs it errors: a message-flow test never
skips silently.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sgx.kafka.embedded import EmbeddedBroker
from sgx.settings import KafkaSettings
from tests.kafka_broker import apache_kafka, broker_kind, flow_kafka, kafka_test_settings

__all__ = ["apache_kafka", "broker", "kafka_test_settings", "tmp_home"]


@pytest.fixture(scope="session")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KafkaSettings]:
    """KafkaSettings pointed at a running broker for the whole session."""
    existing = os.environ.get("SGX_TEST_BOOTSTRAP")
    if existing:
        yield kafka_test_settings(existing)
        return
    if broker_kind() == "kafka":
        yield (await asyncio.to_thread(flow_kafka)).plaintext_settings()
        return
    async with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as embedded:
        yield kafka_test_settings(embedded.bootstrap_servers, idempotence=False)


@pytest.fixture
def tmp_home(tmp_path: Path) -> Path:
    """An empty exchange home directory for one test."""
    home = tmp_path / "home"
    home.mkdir()
    return home
