"""Whether a Kafka listener answers: one ApiVersions request, over plain TCP or TLS.

    python3 scripts/kafka/answers.py HOST:PORT [--tls CAFILE]

Exits 0 if the broker answered ApiVersions without error, 1 if not (refused, closed,
timed out, an error code, or a TLS certificate that ``CAFILE`` does not vouch for or
that does not name HOST). A SASL listener answers ApiVersions before authentication,
so this needs no credentials. Standard library only: scripts/ensure-kafka.sh runs it
before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import struct
import sys

API_VERSIONS = 18
CORRELATION_ID = 0x5347
CLIENT_ID = b"sgx-ensure-kafka"


def request() -> bytes:
    """ApiVersions v0: request header v1 (key, version, correlation id, client id)."""
    body = struct.pack(">hhih", API_VERSIONS, 0, CORRELATION_ID, len(CLIENT_ID)) + CLIENT_ID
    return struct.pack(">i", len(body)) + body


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def answers(host: str, port: int, cafile: str | None, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = raw
            if cafile is not None:
                context = ssl.create_default_context(cafile=cafile)
                sock = context.wrap_socket(raw, server_hostname=host)
            sock.sendall(request())
            (size,) = struct.unpack(">i", read_exactly(sock, 4))
            correlation, error = struct.unpack(">ih", read_exactly(sock, min(size, 6)))
    except (OSError, struct.error):  # ssl.SSLError and timeouts are OSErrors
        return False
    return correlation == CORRELATION_ID and error == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument("--tls", metavar="CAFILE", help="speak TLS, trusting CAFILE")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    return 0 if answers(host, int(port), args.tls, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
