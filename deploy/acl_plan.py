"""Topics, principals and ACLs of a production exchange, planned from its parties.

One pure function, :func:`plan`, turns the partnership (``deploy/parties.toml``) into the
topics, SCRAM principals and allow-ACL bindings of the cluster; two renderings keep the
deployments in step with it and are committed (tests check they are up to date):

* ``deploy/scripts/create-topics-and-acls.sh`` for the Compose cluster
  (``kafka-topics.sh``, ``kafka-configs.sh``, ``kafka-acls.sh``), and
* ``deploy/k8s/kafka/topics.yaml`` and ``users.yaml``: Strimzi ``KafkaTopic`` and
  ``KafkaUser`` resources for Kubernetes.

Principals (SCRAM user names)::

    <agency>             each agency, a local authority included: WRITE its inbound topic,
                         READ its receipts topic and the groups its services read it in:
                         sgx-producer-<agency> (the outbox's receipt listener) and, for a
                         school, sgx-open-cases-<school> (the open-case list listener);
                         a local authority also WRITE its allocation topic
    sgx-gateway          READ sgx.inbound.* and sgx.allocations.*, WRITE sgx.delivery.* and
                         sgx.receipts.*, READ its group sgx-gateway. Every gateway instance
                         uses this one principal and joins this one group, which shares the
                         inbound and allocation partitions between them; each instance
                         also reads every allocation topic outside the group (assigned,
                         committing nothing), which topic READ alone allows
    sgx-consumer-<id>    READ sgx.delivery.<id> and its group sgx-consumer-<id>, for each
                         party the gateway delivers to (local authority, school, police)

The schema registry topic ``sgx.schemas`` (compacted) is WRITE for the gateway only and
READ (no group) for every principal: a reader of an older release finds there the newer
writer schemas the gateway uses (``sgx.wire.schema_registry``).

Every principal may also DESCRIBE topics named ``sgx.*``: the services check at start
that every exchange topic exists (``safeguard.runtime.create_topics``) and a topic a
principal cannot describe looks missing, which would make it try to create it. Topic
names carry party ids only. DESCRIBE lets nobody read or write a record.

The partnership may span several local authorities. As in the trust directory
(``sgx.keys.trust.Party``), a local authority has its ONS GSS code (``gss_code``, e.g.
``E09000007`` Camden) and serves itself; any other agency lists the LAs it serves
(``serves``) or is marked ``serves_any`` (a national body). The file is refused, naming
the party and the field, where these do not fit (see :func:`partnership_problem`). No
topic, principal or ACL depends on them: topics and groups are per party, and which LA a
notification reaches is the gateway's routing (it follows the child), not the cluster's
ACLs. Adding an LA adds its inbound, receipts, allocation and delivery topics, its agency principal
and its delivery consumer ``sgx-consumer-<la>``, like any other party.

Regenerate after editing the parties file::

    python -m deploy.acl_plan write deploy/parties.toml
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sgx.errors import ConfigError
from sgx.kafka.wiring import (
    GATEWAY_GROUP,
    REPLAY_TOPIC,
    delivery_group,
    open_cases_group,
    receipts_group,
)
from sgx.keys.kinds import AGENCY_KINDS, AgencyKind
from sgx.keys.trust import GSS_CODE
from sgx.wire.schema_registry import TOPIC as SCHEMAS_TOPIC

DEPLOY_DIR = Path(__file__).resolve().parent
PARTIES_FILE = DEPLOY_DIR / "parties.toml"
SCRIPT_FILE = DEPLOY_DIR / "scripts" / "create-topics-and-acls.sh"
TOPICS_FILE = DEPLOY_DIR / "k8s" / "kafka" / "topics.yaml"
USERS_FILE = DEPLOY_DIR / "k8s" / "kafka" / "users.yaml"

CLUSTER = "sgx"  # the Strimzi Kafka resource's name
GATEWAY = GATEWAY_GROUP  # the gateway principal is named as its group
REPLICAS = 3
MIN_INSYNC = 2
INBOUND_PARTITIONS = 3  # as KafkaSettings.inbound_partitions
ALLOCATIONS_PARTITIONS = 1  # as safeguard.runtime.exchange_topics: one LA's updates in order
DELIVERY_PARTITIONS = 3  # as KafkaSettings.delivery_partitions
# The parties the gateway delivers to (as safeguard.runtime.DELIVERY_KINDS): a local
# authority's social care, a school's key adult (Operation Encompass), a police force's
# single point of contact (Protocol disclosure requests).
DELIVERY_KINDS = frozenset({"local_authority", "school", "police"})
RECEIPTS_PARTITIONS = 1

Kind = AgencyKind  # every agency kind of the trust directory (sgx.keys.kinds)
Operation = Literal["Read", "Write", "Describe"]
ResourceType = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]

# A party id names topics, SCRAM users and Kubernetes objects: the narrowest of the three.
_PARTY_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")
_KINDS: tuple[Kind, ...] = AGENCY_KINDS


_GSS_CODE = re.compile(GSS_CODE)
_REQUIRED_KEYS = frozenset({"id", "kind"})
_OPTIONAL_KEYS = frozenset({"gss_code", "serves", "serves_any"})


@dataclass(frozen=True, slots=True)
class Party:
    """A member of the partnership (never the gateway).

    A local authority has its ONS GSS code and serves itself; any other agency gives the
    ids of the LAs it serves, or ``serves_any`` (as ``sgx.keys.trust.Party``).
    """

    id: str
    kind: Kind
    gss_code: str | None = field(default=None, kw_only=True)
    serves: tuple[str, ...] = field(default=(), kw_only=True)
    serves_any: bool = field(default=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    partitions: int
    replicas: int = REPLICAS
    retention_ms: int | None = None  # None: the broker's default; -1: kept for ever
    compacted: bool = False  # cleanup.policy=compact: the newest record per key is kept


@dataclass(frozen=True, slots=True)
class Binding:
    """One allow-ACL: ``principal`` may ``operation`` on a topic or group."""

    principal: str
    operation: Operation
    resource: ResourceType
    name: str
    pattern: Pattern = "literal"

    def matches(self, resource: ResourceType, name: str) -> bool:
        if resource != self.resource:
            return False
        return name.startswith(self.name) if self.pattern == "prefixed" else name == self.name


@dataclass(frozen=True, slots=True)
class Plan:
    topics: tuple[Topic, ...]
    principals: tuple[str, ...]
    bindings: tuple[Binding, ...]

    def allows(
        self, principal: str, operation: Operation, resource: ResourceType, name: str
    ) -> bool:
        """Whether Kafka's authorizer lets ``principal`` do this (READ, WRITE imply DESCRIBE)."""
        implied = {operation, "Read", "Write"} if operation == "Describe" else {operation}
        return any(
            b.principal == principal and b.operation in implied and b.matches(resource, name)
            for b in self.bindings
        )


def consumer_principal(party_id: str) -> str:
    """A delivery consumer's principal: named as its consumer group."""
    return delivery_group(party_id)


def agency_groups(party: Party) -> tuple[str, ...]:
    """The consumer groups an agency's services read its receipts topic in: the outbox's
    receipt listener (``sgx.kafka.wiring.receipts_group``) and a school's
    open-case list listener (``safeguard producer school watch``)."""
    receipts = receipts_group(party.id)
    return (receipts, open_cases_group(party.id)) if party.kind == "school" else (receipts,)


def plan(parties: Iterable[Party]) -> Plan:
    """The topics, principals and ACL bindings for ``parties``."""
    members = _checked(parties)
    # The schema registry (sgx.wire.schema_registry): the gateway writes, everyone reads.
    topics: list[Topic] = [Topic(SCHEMAS_TOPIC, 1, compacted=True), Topic(REPLAY_TOPIC, 1)]
    bindings: list[Binding] = _gateway_bindings()
    principals = [GATEWAY]
    for party in members:
        topics += [
            Topic(f"sgx.inbound.{party.id}", INBOUND_PARTITIONS),
            Topic(f"sgx.receipts.{party.id}", RECEIPTS_PARTITIONS),
        ]
        principals.append(party.id)
        bindings += _agency_bindings(party)
        bindings.append(Binding(party.id, "Read", "topic", SCHEMAS_TOPIC))
        if party.kind == "local_authority":
            # Kept for ever: a gateway started on an empty database rebuilds its
            # directory from the LA's whole allocation history.
            topics.append(
                Topic(f"sgx.allocations.{party.id}", ALLOCATIONS_PARTITIONS, retention_ms=-1)
            )
            bindings.append(Binding(party.id, "Write", "topic", f"sgx.allocations.{party.id}"))
        if party.kind in DELIVERY_KINDS:
            topics.append(Topic(f"sgx.delivery.{party.id}", DELIVERY_PARTITIONS))
            principals.append(consumer_principal(party.id))
            bindings += _consumer_bindings(party.id)
            bindings.append(Binding(consumer_principal(party.id), "Read", "topic", SCHEMAS_TOPIC))
    return Plan(tuple(topics), tuple(principals), tuple(bindings))


def _describe_all(principal: str) -> Binding:
    return Binding(principal, "Describe", "topic", "sgx.", "prefixed")


def _gateway_bindings() -> list[Binding]:
    return [
        Binding(GATEWAY, "Read", "topic", "sgx.inbound.", "prefixed"),
        Binding(GATEWAY, "Read", "topic", "sgx.allocations.", "prefixed"),
        Binding(GATEWAY, "Write", "topic", "sgx.delivery.", "prefixed"),
        Binding(GATEWAY, "Write", "topic", "sgx.receipts.", "prefixed"),
        Binding(GATEWAY, "Read", "group", GATEWAY_GROUP),
        Binding(GATEWAY, "Write", "topic", SCHEMAS_TOPIC),
        # `safeguard quarantine replay` runs as the gateway: it writes, the group reads
        Binding(GATEWAY, "Write", "topic", REPLAY_TOPIC),
        Binding(GATEWAY, "Read", "topic", REPLAY_TOPIC),
        Binding(GATEWAY, "Read", "topic", SCHEMAS_TOPIC),
        _describe_all(GATEWAY),
    ]


def _agency_bindings(party: Party) -> list[Binding]:
    agency = party.id
    return [
        Binding(agency, "Write", "topic", f"sgx.inbound.{agency}"),
        Binding(agency, "Read", "topic", f"sgx.receipts.{agency}"),
        *(Binding(agency, "Read", "group", group) for group in agency_groups(party)),
        _describe_all(agency),
    ]


def _consumer_bindings(party_id: str) -> list[Binding]:
    principal = consumer_principal(party_id)
    return [
        Binding(principal, "Read", "topic", f"sgx.delivery.{party_id}"),
        Binding(principal, "Read", "group", principal),
        _describe_all(principal),
    ]


def partnership_problem(party: Party, kinds: Mapping[str, str]) -> tuple[str, str] | None:
    """(field, problem) if ``party``'s GSS code or served LAs do not fit its kind; the rules
    of the trust directory (``sgx.keys.trust``), ``kinds`` being every party's kind by id."""
    if party.kind == "local_authority":
        if party.gss_code is None:
            return "gss_code", (
                'a local authority needs its ONS GSS code (e.g. "E09000007" for Camden,'
                ' "E09000019" for Islington): add gss_code to this party'
            )
        if not _GSS_CODE.fullmatch(party.gss_code):
            return "gss_code", (
                f"{party.gss_code!r} is not an ONS GSS code (a letter E, N, S or W and eight"
                ' digits, e.g. "E09000007")'
            )
        if party.serves_any or any(la != party.id for la in party.serves):
            return "serves", f"a local authority serves only itself ({party.id!r})"
        return None
    if party.gss_code is not None:
        return "gss_code", f"only a local authority has a GSS code, not a {party.kind}"
    if party.serves_any and party.serves:
        return "serves", "give either serves or serves_any, not both"
    for j, la in enumerate(party.serves):
        if kinds.get(la) != "local_authority":
            return f"serves[{j}]", f"{la!r} is not a local authority in this partnership"
    return None


def _checked(parties: Iterable[Party], source: Path | None = None) -> list[Party]:
    """``parties``, or ConfigError naming the party (and ``source``, the file) if wrong."""
    members = list(parties)
    kinds = {p.id: p.kind for p in members}
    seen: set[str] = set()
    codes: dict[str, str] = {}
    for i, party in enumerate(members):
        where = f"{source}: party[{i}] ({party.id!r})" if source else f"parties[{i}] ({party.id!r})"
        if not _PARTY_ID.fullmatch(party.id):
            raise ConfigError(f"{where}: id must be 1-50 of a-z 0-9 - (it names users and objects)")
        if party.kind not in _KINDS:
            raise ConfigError(f"{where}: kind {party.kind!r} is not one of {', '.join(_KINDS)}")
        if party.id in seen or party.id == GATEWAY or party.id.startswith("sgx-"):
            raise ConfigError(f"{where}: id is a duplicate or reserved (sgx-*)")
        seen.add(party.id)
        problem = partnership_problem(party, kinds)
        if problem:
            raise ConfigError(f"{where}: field '{problem[0]}': {problem[1]}")
        if party.gss_code is not None:
            other = codes.setdefault(party.gss_code, party.id)
            if other != party.id:
                taken = f"{party.gss_code} is already the GSS code of {other!r}"
                raise ConfigError(f"{where}: field 'gss_code': {taken}")
    return members


def load_parties(path: Path) -> list[Party]:
    """The ``[[party]]`` tables of a TOML parties file: ``id``, ``kind`` and, as the kind
    needs, ``gss_code``, ``serves`` or ``serves_any``; ConfigError naming the file, the
    party and the field if one is missing, malformed or does not fit the partnership."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read parties file {path}: {exc}") from exc
    entries = data.get("party", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: party must be an array of tables ([[party]])")
    parties = [_party_entry(path, i, entry) for i, entry in enumerate(entries)]
    return _checked(parties, path)


def _party_entry(path: Path, i: int, entry: object) -> Party:
    if not isinstance(entry, dict) or not set(entry) >= _REQUIRED_KEYS:
        raise ConfigError(f"{path}: party[{i}] must have the keys id and kind")
    where = f"{path}: party[{i}] ({entry['id']!r})"
    unknown = sorted(set(entry) - _REQUIRED_KEYS - _OPTIONAL_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_REQUIRED_KEYS | _OPTIONAL_KEYS))
        raise ConfigError(f"{where}: field '{unknown[0]}' is not one of {allowed}")
    for key in ("id", "kind", "gss_code"):
        if key in entry and not isinstance(entry[key], str):
            raise ConfigError(f"{where}: field '{key}' must be a string")
    serves = entry.get("serves", [])
    if not isinstance(serves, list) or not all(isinstance(la, str) for la in serves):
        raise ConfigError(f"{where}: field 'serves' must be a list of LA ids")
    serves_any = entry.get("serves_any", False)
    if not isinstance(serves_any, bool):
        raise ConfigError(f"{where}: field 'serves_any' must be true or false")
    return Party(
        entry["id"],
        entry["kind"],
        gss_code=entry.get("gss_code"),
        serves=tuple(serves),
        serves_any=serves_any,
    )


# -- shell rendering -------------------------------------------------------------------
_SCRIPT_HEAD = """\
#!/usr/bin/env bash
# GENERATED from deploy/parties.toml by deploy/acl_plan.py: do not edit.
# Creates the exchange's topics, SCRAM-SHA-512 users and allow-ACLs on an Apache Kafka
# cluster (run by the compose `kafka-setup` job, or by hand with the admin certificate).
# Idempotent: existing topics are kept, users' passwords and ACLs are (re)set.
#   KAFKA_BIN     Kafka's bin directory                      (default /opt/kafka/bin)
#   BOOTSTRAP     a broker listener the admin may use        (default kafka-1:19092)
#   ADMIN_CONFIG  client properties of the admin principal   (default /secrets/admin.properties)
#   SASL_DIR      <user>.password files, one per principal   (default /secrets/sasl)
#   REPLICATION_FACTOR   every topic's replicas               (default the plan's, %(replicas)d)
#   MIN_INSYNC_REPLICAS  every topic's min.insync.replicas   (default %(min_insync)d)
#                 (a one-node test broker sets both to 1: scripts/ensure-kafka.sh)
set -euo pipefail
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
BOOTSTRAP=${BOOTSTRAP:-kafka-1:19092}
ADMIN_CONFIG=${ADMIN_CONFIG:-/secrets/admin.properties}
SASL_DIR=${SASL_DIR:-/secrets/sasl}
admin=(--bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG")

topic() {  # name partitions replicas [more kafka-topics.sh options]
  "$KAFKA_BIN/kafka-topics.sh" "${admin[@]}" --create --if-not-exists --topic "$1" \\
    --partitions "$2" --replication-factor "${REPLICATION_FACTOR:-$3}" \\
    --config "min.insync.replicas=${MIN_INSYNC_REPLICAS:-%(min_insync)d}" "${@:4}"
}

user() {  # name: SCRAM-SHA-512 credentials from $SASL_DIR/<name>.password
  local password
  password=$(<"$SASL_DIR/$1.password")
  "$KAFKA_BIN/kafka-configs.sh" "${admin[@]}" --alter --entity-type users --entity-name "$1" \\
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" >/dev/null
}

acl() {  # principal operation resource-type pattern-type name
  "$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --add --allow-principal "User:$1" \\
    --operation "$2" --resource-pattern-type "$4" "--$3" "$5" >/dev/null
}
"""


def _retention(t: Topic) -> str:
    extra = "" if t.retention_ms is None else f" --config retention.ms={t.retention_ms}"
    return extra + (" --config cleanup.policy=compact" if t.compacted else "")


def _topic_config(t: Topic) -> dict[str, int | str]:
    config: dict[str, int | str] = {"min.insync.replicas": MIN_INSYNC}
    if t.retention_ms is not None:
        config["retention.ms"] = t.retention_ms
    if t.compacted:
        config["cleanup.policy"] = "compact"
    return config


def shell_script(p: Plan) -> str:
    """The bash script that applies ``p`` with Kafka's own command-line tools."""
    lines = [_SCRIPT_HEAD % {"replicas": REPLICAS, "min_insync": MIN_INSYNC}, "# topics"]
    lines += [f"topic {t.name} {t.partitions} {t.replicas}{_retention(t)}" for t in p.topics]
    lines += ["", "# principals"]
    lines += [f"user {name}" for name in p.principals]
    lines += ["", "# allow-ACLs (no ACL, no access: allow.everyone.if.no.acl.found=false)"]
    lines += [
        f"acl {b.principal} {b.operation} {b.resource} {b.pattern} {b.name}" for b in p.bindings
    ]
    lines += ["", 'echo "topics, users and ACLs applied"', ""]
    return "\n".join(lines)


# -- Strimzi rendering -----------------------------------------------------------------
_GENERATED = "# GENERATED from deploy/parties.toml by deploy/acl_plan.py: do not edit.\n"


def _labels() -> dict[str, str]:
    return {"strimzi.io/cluster": CLUSTER, "app.kubernetes.io/part-of": "safeguarding-exchange"}


def kafka_topics(p: Plan) -> list[dict[str, Any]]:
    """One Strimzi ``KafkaTopic`` per topic of the plan."""
    return [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {"name": t.name.replace(".", "-"), "labels": _labels()},
            "spec": {
                "topicName": t.name,
                "partitions": t.partitions,
                "replicas": t.replicas,
                "config": _topic_config(t),
            },
        }
        for t in p.topics
    ]


def _strimzi_acl(b: Binding) -> dict[str, Any]:
    resource: dict[str, str] = {"type": b.resource, "name": b.name}
    resource["patternType"] = "prefix" if b.pattern == "prefixed" else "literal"
    return {"resource": resource, "operations": [b.operation], "host": "*"}


def kafka_users(p: Plan) -> list[dict[str, Any]]:
    """One Strimzi ``KafkaUser`` (SCRAM-SHA-512, simple authorization) per principal."""
    return [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaUser",
            "metadata": {"name": principal, "labels": _labels()},
            "spec": {
                "authentication": {"type": "scram-sha-512"},
                "authorization": {
                    "type": "simple",
                    "acls": [_strimzi_acl(b) for b in p.bindings if b.principal == principal],
                },
            },
        }
        for principal in p.principals
    ]


def yaml_documents(documents: Sequence[dict[str, Any]]) -> str:
    body = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True, width=100)
    return _GENERATED + body


def rendered(parties_file: Path = PARTIES_FILE) -> dict[Path, str]:
    """Every generated file, by path, for the parties in ``parties_file``."""
    p = plan(load_parties(parties_file))
    return {
        SCRIPT_FILE: shell_script(p),
        TOPICS_FILE: yaml_documents(kafka_topics(p)),
        USERS_FILE: yaml_documents(kafka_users(p)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.acl_plan", description=__doc__)
    parser.add_argument("action", choices=["write", "check", "shell"])
    parser.add_argument("parties", type=Path, nargs="?", default=PARTIES_FILE)
    args = parser.parse_args(argv)
    files = rendered(args.parties)
    if args.action == "shell":
        sys.stdout.write(files[SCRIPT_FILE])
        return 0
    stale = [path for path, text in files.items() if _read(path) != text]
    if args.action == "check":
        for path in stale:
            print(f"{path} is out of date: run python -m deploy.acl_plan write", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    SCRIPT_FILE.chmod(0o755)
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
