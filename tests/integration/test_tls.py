"""Our SSL client settings, end to end through a real TLS proxy that demands client certificates.

stunnel (Debian's stunnel4, installed by scripts/ensure-tools.sh) terminates TLS on one
loopback port and forwards to the embedded broker on another; the broker advertises the
proxy's address, so every connection a client makes after bootstrap (gateway, consumer,
publisher, group coordinator) stays on TLS. The certificates are made here with
``cryptography``: a CA, the proxy's server certificate for 127.0.0.1, and a client
certificate. A client that presents no certificate is refused by the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from safeguard import samples
from safeguard.parties import DEMO_PARTIES, SCHOOL
from safeguard.runtime import create_topics
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import TransportError
from sgx.kafka.embedded import LOOPBACK, EmbeddedBroker, free_port, tcp_open
from sgx.kafka.wiring import list_topics
from sgx.keys.key_admin import init_trust
from sgx.settings import KafkaSettings
from sgx.wire import contract as c
from tests.integration.harness import Exchange, eventually, make_runtime

pytestmark = pytest.mark.broker

CHILD = samples.child(make_nhs_number(71), make_upn(71), given="Tamsin", family="Overbeck")
ALLOCATE = samples.allocation_update(
    [(CHILD["nhs_number"], CHILD["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
)
PROXY_START_S = 10.0


# -- certificates -----------------------------------------------------------------
@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.IPAddress(IPv4Address(LOOPBACK)), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.with_suffix(".key").write_bytes(pem)
        path.with_suffix(".key").chmod(0o600)
    return path


def make_certs(directory: Path) -> Certs:
    """A dev CA, a server certificate for the loopback address and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _certificate("sgx-test-ca", ca_key, None)
    issuer = (ca.subject, ca_key)
    server = _certificate("127.0.0.1", server_key, issuer, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _certificate("sgx-gateway", client_key, issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(directory / "ca.pem", ca, None)
    _write(directory / "server.pem", server, server_key)
    _write(directory / "client.pem", client, client_key)
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


# -- the proxy --------------------------------------------------------------------
def stunnel_binary() -> str:
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:  # fail, never skip: scripts/ensure-tools.sh installs it
        raise AssertionError("stunnel is not installed: run scripts/ensure-tools.sh")
    return found


@dataclass(frozen=True)
class Proxy:
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _stunnel_config(certs: Certs, accept: int, connect: int, log: Path) -> str:
    return "\n".join(
        [
            "foreground = yes",
            "pid =",
            "debug = info",
            f"output = {log}",
            "[kafka]",
            f"accept = {LOOPBACK}:{accept}",
            f"connect = {LOOPBACK}:{connect}",
            f"cert = {certs.server_cert}",
            f"key = {certs.server_key}",
            f"CAfile = {certs.ca}",
            "requireCert = yes",  # no client certificate, no connection
            "verifyChain = yes",  # ...and it must be signed by our CA
            "",
        ]
    )


@contextlib.asynccontextmanager
async def tls_proxy(certs: Certs, directory: Path, broker_port: int) -> AsyncIterator[Proxy]:
    """stunnel accepting mTLS on a free port and forwarding to ``broker_port``."""
    proxy = Proxy(port=free_port(), log=directory / "stunnel.log")
    config = directory / "stunnel.conf"
    config.write_text(_stunnel_config(certs, proxy.port, broker_port, proxy.log))
    process = await asyncio.create_subprocess_exec(
        stunnel_binary(),
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: tcp_open(LOOPBACK, proxy.port), "stunnel to listen", PROXY_START_S)
        yield proxy
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.wait()


def ssl_settings(bootstrap: str, certs: Certs, *, with_client_cert: bool = True) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol="SSL",
        ssl_cafile=certs.ca,
        ssl_certfile=certs.client_cert if with_client_cert else None,
        ssl_keyfile=certs.client_key if with_client_cert else None,
        fetch_max_wait_ms=10,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        idempotence=False,  # the embedded broker behind the proxy has no idempotent producer
    )


@dataclass
class TlsSetup:
    certs: Certs
    proxy: Proxy
    broker: EmbeddedBroker


@contextlib.asynccontextmanager
async def broker_behind_proxy(tmp_path: Path) -> AsyncIterator[TlsSetup]:
    """An embedded broker on its own port, reachable by clients only through the proxy."""
    certs = make_certs(tmp_path / "certs")
    broker_port, proxy_dir = free_port(), tmp_path / "proxy"
    proxy_dir.mkdir()
    async with tls_proxy(certs, proxy_dir, broker_port) as proxy:
        broker = EmbeddedBroker(tmp_path / "broker", port=broker_port, advertised=proxy.address)
        async with broker:
            yield TlsSetup(certs, proxy, broker)


# -- tests ------------------------------------------------------------------------
async def test_publisher_gateway_and_consumer_work_through_the_mtls_proxy(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_trust(home / "trust", DEMO_PARTIES)
    async with broker_behind_proxy(tmp_path) as tls:
        plain = make_runtime(home, tls.proxy.address, idempotence=False)
        rt = replace(plain, kafka=ssl_settings(tls.proxy.address, tls.certs))
        ex = Exchange(rt)
        await create_topics(rt)
        try:
            await ex.start_gateway()
            await ex.start_consumer()
            await ex.allocate(ALLOCATE)
            sent = await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(CHILD))
            await ex.wait_rows(2)
        finally:
            await ex.stop_all()
        worker, supervisor = await ex.queue("sw-amara"), await ex.queue("tm-jones")
        assert [v.item.notification_id for v in worker] == [str(sent)]
        assert [v.item.notification_id for v in supervisor] == [str(sent)]
        assert worker[0].notification["child"]["nhs_number"] == CHILD["nhs_number"]
        # the traffic really went through the proxy, authenticated by the client certificate
        log = tls.proxy.log_text()
        assert "Certificate accepted at depth=0: CN=sgx-gateway" in log
        assert "TLS accepted" in log


async def test_a_client_without_a_certificate_is_refused(tmp_path: Path) -> None:
    async with broker_behind_proxy(tmp_path) as tls:
        trusted = ssl_settings(tls.proxy.address, tls.certs)
        assert isinstance(await list_topics(trusted), list)  # the proxy path itself works

        stranger = ssl_settings(tls.proxy.address, tls.certs, with_client_cert=False)
        with pytest.raises(TransportError):
            await list_topics(stranger)

        async def refused_by_the_proxy() -> bool:  # stunnel may log just after it hangs up
            return "peer did not return a certificate" in tls.proxy.log_text()

        await eventually(refused_by_the_proxy, "stunnel to log the refusal", 5.0)
