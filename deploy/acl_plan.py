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
                         party the gateway delivers to (local authority, school, police);
                         a local authority's also READ sgx.receipts.<la>, in the same
                         group: it keeps the gateway's answers to the LA (share decisions,
                         consent outcomes, receipts) as rows (consumers.answer_rows)
    <connector>          a connector (``[[connector]]``: a system publishing for the agencies
                         it ``carries``, e.g. a schools' MIS supplier), as its ``principal``
                         (default its id): WRITE its own inbound topic sgx.inbound.<connector>
                         and nothing else inbound; READ its own outbound topics,
                         sgx.receipts.<connector> and (if it carries a school or a force)
                         sgx.delivery.<connector>, in the groups of the agencies it carries:
                         sgx-producer-<agency>, sgx-open-cases-<school> and
                         sgx-consumer-<agency> (it runs their outboxes and consumers)

An agency a connector carries has no topic, principal or consumer principal of its own:
it reaches the exchange only through its connector, both ways, so the partitions grow
with the connectors, not with the agencies. What the gateway sends it (receipts,
requests, open-case lists, a key adult's or a SPOC's deliveries) goes on the connector's
outbound topics, keyed by the agency, naming it in a header and sealed for it alone
(``sgx.kafka.outbound``): the connector carries what it cannot read. An agency carried
by several connectors hears on the first one's topics (the directory's order). An
agency no connector carries is its own connector, with its own topics as before. The
ACL lets a connector write only its topic; which agencies it may carry is the gateway's
check (the envelope's signature names the connector it was sealed for).

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
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from deploy.partnership_file import GATEWAY as GATEWAY
from deploy.partnership_file import PARTIES_FILE as PARTIES_FILE
from deploy.partnership_file import Party as Party
from deploy.partnership_file import checked_connectors, checked_parties
from deploy.partnership_file import load_parties as load_parties
from deploy.partnership_file import load_partnership as load_partnership
from sgx.kafka.wiring import (
    GATEWAY_GROUP,
    REPLAY_TOPIC,
    delivery_group,
    open_cases_group,
    receipts_group,
)
from sgx.keys.connectors import Connector, carriers
from sgx.wire.schema_registry import TOPIC as SCHEMAS_TOPIC

DEPLOY_DIR = Path(__file__).resolve().parent
SCRIPT_FILE = DEPLOY_DIR / "scripts" / "create-topics-and-acls.sh"
TOPICS_FILE = DEPLOY_DIR / "k8s" / "kafka" / "topics.yaml"
USERS_FILE = DEPLOY_DIR / "k8s" / "kafka" / "users.yaml"

CLUSTER = "sgx"  # the Strimzi Kafka resource's name
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

Operation = Literal["Read", "Write", "Describe"]
ResourceType = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]


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


def plan(parties: Iterable[Party], connectors: Sequence[Connector] = ()) -> Plan:
    """The topics, principals and ACL bindings for ``parties`` and their ``connectors``."""
    members = checked_parties(parties)
    checked_connectors(members, connectors)
    carried = carriers(connectors)
    # The schema registry (sgx.wire.schema_registry): the gateway writes, everyone reads.
    topics: list[Topic] = [Topic(SCHEMAS_TOPIC, 1, compacted=True), Topic(REPLAY_TOPIC, 1)]
    bindings: list[Binding] = _gateway_bindings()
    principals = [GATEWAY]
    for party in members:
        if party.id in carried:  # its connector's topics carry it both ways
            continue
        topics.append(Topic(f"sgx.inbound.{party.id}", INBOUND_PARTITIONS))
        topics.append(Topic(f"sgx.receipts.{party.id}", RECEIPTS_PARTITIONS))
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
            bindings += _consumer_bindings(party)
            bindings.append(Binding(consumer_principal(party.id), "Read", "topic", SCHEMAS_TOPIC))
    by_id = {party.id: party for party in members}
    for connector in connectors:
        # what the gateway sends the agencies whose first carrier it is (as
        # TrustDirectory.outbound_connector): its receipts topic, and its delivery topic if
        # it carries a school or a force
        outbound = [by_id[a] for a in connector.carries if carried[a][0] == connector.id]
        topics.append(Topic(f"sgx.inbound.{connector.id}", INBOUND_PARTITIONS))
        if outbound:  # (a connector only second to carry every agency it lists hears nothing)
            topics.append(Topic(f"sgx.receipts.{connector.id}", INBOUND_PARTITIONS))
        if any(agency.kind in DELIVERY_KINDS for agency in outbound):
            topics.append(Topic(f"sgx.delivery.{connector.id}", DELIVERY_PARTITIONS))
        principal = connector.kafka_principal
        if principal not in principals:
            principals.append(principal)
        bindings += _connector_bindings(connector, outbound)
    return Plan(tuple(topics), tuple(principals), tuple(bindings))


def _connector_bindings(connector: Connector, outbound: Sequence[Party]) -> list[Binding]:
    """A connector writes its own inbound topic and reads its own outbound topics (its
    receipts topic, and its delivery topic if it has one) in the groups of the agencies
    whose answers and deliveries come there (it runs their outboxes and consumers)."""
    principal = connector.kafka_principal
    bindings = [Binding(principal, "Write", "topic", f"sgx.inbound.{connector.id}")]
    if outbound:
        bindings.append(Binding(principal, "Read", "topic", f"sgx.receipts.{connector.id}"))
    if any(agency.kind in DELIVERY_KINDS for agency in outbound):
        bindings.append(Binding(principal, "Read", "topic", f"sgx.delivery.{connector.id}"))
    for agency in outbound:
        bindings += [Binding(principal, "Read", "group", g) for g in agency_groups(agency)]
        if agency.kind in DELIVERY_KINDS:
            bindings.append(Binding(principal, "Read", "group", delivery_group(agency.id)))
    bindings += [Binding(principal, "Read", "topic", SCHEMAS_TOPIC), _describe_all(principal)]
    return bindings


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


def _consumer_bindings(party: Party) -> list[Binding]:
    principal = consumer_principal(party.id)
    read = [f"sgx.delivery.{party.id}"]
    if party.kind == "local_authority":  # the gateway's answers, kept as rows
        read.append(f"sgx.receipts.{party.id}")
    return [
        *(Binding(principal, "Read", "topic", topic) for topic in read),
        Binding(principal, "Read", "group", principal),
        _describe_all(principal),
    ]


# -- shell rendering -------------------------------------------------------------------
_SCRIPT_HEAD = """\
#!/usr/bin/env bash
# GENERATED from deploy/parties.toml by deploy/acl_plan.py: do not edit.
# Creates the exchange's topics, SCRAM-SHA-512 users and allow-ACLs on an Apache Kafka
# cluster (run by the compose `kafka-setup` job, or by hand with the admin certificate).
# Idempotent: existing topics are kept, users' passwords and ACLs are (re)set, and an
# allow-ACL on the exchange's topics and groups (names beginning sgx) that the plan no
# longer has is removed: an agency moved behind a connector loses what it held.
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

planned=()
acl() {  # principal operation resource-type pattern-type name
  planned+=("$1 $2 $3 $4 $5")
  "$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --add --allow-principal "User:$1" \\
    --operation "$2" --resource-pattern-type "$4" "--$3" "$5" >/dev/null
}

revoke_stale() {  # allow-ACLs on sgx* topics and groups that no acl line above granted
  local line kind="" name="" pattern="" principal operation key
  local on='resourceType=([A-Z]+), name=([^,]+), patternType=([A-Z]+)'
  local allows='principal=User:([^,]+), host=[*], operation=([A-Z]+), permissionType=ALLOW'
  declare -A wanted=()
  for key in "${planned[@]}"; do wanted[$key]=1; done
  while IFS= read -r line; do
    if [[ $line =~ $on ]]; then
      kind=${BASH_REMATCH[1],,} name=${BASH_REMATCH[2]} pattern=${BASH_REMATCH[3],,}
    elif [[ $line =~ $allows ]]; then
      principal=${BASH_REMATCH[1]} operation=${BASH_REMATCH[2],,}
      operation=${operation^}
      if [[ $kind != topic && $kind != group ]] || [[ $name != sgx* ]]; then continue; fi
      key="$principal $operation $kind $pattern $name"
      [[ -n ${wanted[$key]:-} ]] && continue
      echo "revoking $key (not in the plan)"
      "$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --remove --force --allow-principal \\
        "User:$principal" --operation "$operation" --resource-pattern-type "$pattern" \\
        "--$kind" "$name" >/dev/null
    fi
  done < <("$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --list)
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
    lines += ["", "# what an earlier plan granted and this one does not", "revoke_stale"]
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
    p = plan(*load_partnership(parties_file))
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
