"""What a national partnership's trust directory and topics cost, without a broker.

    python -m benchmarks.national_topics [--las 152] [--schools 24757] [--trusts 200]
        [--forces 43] [--connectors 200] [--own 100] [--inbound-partitions 3]

The partnership of :mod:`benchmarks.national` (25,000 agencies behind 200 connectors by
default, 100 of them their own connectors): its trust directory is written (keys for
every party, as ``safeguard keys init`` does) and loaded as every service loads it, under
``tracemalloc``; then the topics the exchange creates for it
(:func:`safeguard.runtime.exchange_topics`), and which of them the gateway group reads,
are counted with its connectors and as if every agency were its own connector (as before
connectors). With connectors both ways, a carried agency's receipts and deliveries are on
its connector's topics (``sgx.kafka.outbound``), so the exchange's topics are per
connector, per agency of its own and per LA (``benchmarks/README.md`` has the figures).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.national import CONNECTORS, FORCES, LAS, OWN, SCHOOLS, TRUSTS, build
from gateway.service import group_topics
from safeguard.runtime import exchange_topics
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import TrustDirectory
from sgx.settings import KafkaSettings


def topic_figures(trust: TrustDirectory, kafka: KafkaSettings) -> dict[str, int]:
    """Topics and partitions the exchange creates for ``trust``, and the gateway's share."""
    topics = exchange_topics(trust, kafka)
    read = set(group_topics(trust))
    return {
        "topics": len(topics),
        "partitions": sum(topics.values()),
        "inbound_topics": sum(1 for t in topics if t.startswith("sgx.inbound.")),
        "gateway_group_partitions": sum(n for t, n in topics.items() if t in read),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    national = build(args.las, args.schools, args.trusts, args.forces, 4_000 * args.las,
                     connectors=args.connectors, own=args.own)  # fmt: skip
    kafka = KafkaSettings(inbound_partitions=args.inbound_partitions)
    figures: dict[str, Any] = {
        "las": len(national.las),
        "agencies": len(national.serves),
        "connectors": len(national.connectors),
    }
    with tempfile.TemporaryDirectory(prefix="sgx-bench-national-topics-") as tmp:
        started = time.perf_counter()
        init_trust(Path(tmp) / "trust", national.parties, national.connectors)
        figures["keys_init_s"] = round(time.perf_counter() - started, 1)
        size = (Path(tmp) / "trust" / "directory.json").stat().st_size
        figures["directory_json_mb"] = round(size / 1e6, 1)
        tracemalloc.start()
        started = time.perf_counter()
        trust = TrustDirectory.load(Path(tmp) / "trust")
        figures["load_s"] = round(time.perf_counter() - started, 2)
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures["loaded_mb"] = round(held / 1e6, 1)
        figures["load_peak_mb"] = round(peak / 1e6, 1)
        figures["with_connectors"] = topic_figures(trust, kafka)
        figures["every_agency_its_own"] = topic_figures(TrustDirectory(trust.parties()), kafka)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--las", type=int, default=LAS)
    parser.add_argument("--schools", type=int, default=SCHOOLS)
    parser.add_argument("--trusts", type=int, default=TRUSTS)
    parser.add_argument("--forces", type=int, default=FORCES)
    parser.add_argument("--connectors", type=int, default=CONNECTORS)
    parser.add_argument("--own", type=int, default=OWN)
    parser.add_argument("--inbound-partitions", type=int, default=3)
    print(json.dumps(measure(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
