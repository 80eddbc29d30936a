"""deploy/k8s: every manifest parses; built-in kinds validate against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors); Strimzi and Prometheus Operator
kinds are known; the pieces reference each other correctly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from deploy import acl_plan, store_plan
from tests.deploy.catalogue import REPO
from tests.deploy.yaml_strict import load, load_all

K8S = REPO / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
BUILTIN = {
    ("v1", "Namespace"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
}
CUSTOM = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("kafka.strimzi.io/v1beta2", "KafkaUser"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
STRIMZI_OPERATIONS = {"Read", "Write", "Create", "Delete", "Alter", "Describe", "All",
                      "IdempotentWrite", "ClusterAction", "DescribeConfigs",
                      "AlterConfigs"}  # fmt: skip


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFESTS for doc in load_all(path)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


def test_every_manifest_has_a_known_kind_and_api_version() -> None:
    documents = _documents()
    assert len(documents) >= 15
    for path, doc in documents:
        assert (doc["apiVersion"], doc["kind"]) in BUILTIN | CUSTOM, path
        assert doc["metadata"]["name"], path


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_builtin_kinds_validate_against_the_kubernetes_schema(path: Path) -> None:
    for doc in load_all(path):
        if (doc["apiVersion"], doc["kind"]) in BUILTIN:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    (deployment, *_) = _of_kind("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    assert sorted(K8S / r for r in kustomization["resources"]) == MANIFESTS


def test_kafka_is_kraft_with_three_nodes_and_a_scram_tls_listener() -> None:
    (kafka,) = _of_kind("Kafka")
    (pool,) = _of_kind("KafkaNodePool")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"


def test_topics_and_users_match_the_acl_plan() -> None:
    the_plan = acl_plan.plan(*acl_plan.load_partnership(acl_plan.PARTIES_FILE))
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in _of_kind("KafkaTopic")}
    assert topics == {t.name: t.partitions for t in the_plan.topics}
    users = {u["metadata"]["name"]: u for u in _of_kind("KafkaUser")}
    assert set(users) == set(the_plan.principals)
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        for acl in user["spec"]["authorization"]["acls"]:
            assert set(acl["operations"]) <= STRIMZI_OPERATIONS
            assert acl["resource"]["patternType"] in {"literal", "prefix"}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_deployments_share_one_image_probe_health_and_readiness_and_run_as_non_root() -> None:
    deployments = _of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "gateway",
        "consumer-la-camden",
        "consumer-la-islington",
        "inbox-la-camden",
        "push-school-hillside",
    }
    images = {_container(d)["image"] for d in deployments}
    assert len(images) == 1
    for d in deployments:
        container, pod = _container(d), d["spec"]["template"]["spec"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_each_deployment_authenticates_as_its_kafka_user_over_sasl_ssl() -> None:
    (kafka,) = _of_kind("Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    users = {u["metadata"]["name"] for u in _of_kind("KafkaUser")}
    for d in _of_kind("Deployment"):
        env = _env(_container(d))
        assert env["SGX_KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
        assert env["SGX_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["SGX_KAFKA_SASL_USERNAME"] in users
        # Strimzi writes each KafkaUser's password to a secret of the same name
        ref = env["SGX_KAFKA_SASL_PASSWORD"]["secretKeyRef"]
        assert ref == {"name": env["SGX_KAFKA_SASL_USERNAME"], "key": "password"}


def _served_party(container: dict[str, Any]) -> str:
    """The party a service runs for: its --la or --agency, or the gateway."""
    args = container["args"]
    for flag in ("--la", "--agency"):
        if flag in args:
            return str(args[args.index(flag) + 1])
    assert args[0] == "gateway", args
    return store_plan.GATEWAY


def test_each_deployment_opens_only_its_own_partys_store() -> None:
    """One store per party: Camden's consumer and inbox get Camden's credentials and
    schema, the push pod its school's, the gateway its own; no pod holds another's."""
    secrets = {}
    for d in _of_kind("Deployment"):
        container = _container(d)
        party, env = _served_party(container), _env(container)
        ref = env["SGX_STORE_DSN"]["secretKeyRef"]
        assert ref == {"name": f"sgx-store-{party}", "key": "dsn"}, d["metadata"]["name"]
        assert env["SGX_STORE_PG_SCHEMA"] == store_plan.store_name(party)
        named = {v["secretKeyRef"]["name"] for v in env.values() if isinstance(v, dict)}
        assert {n for n in named if n.startswith("sgx-store-")} == {f"sgx-store-{party}"}
        secrets[d["metadata"]["name"]] = ref["name"]
    assert secrets["inbox-la-camden"] == secrets["consumer-la-camden"] == "sgx-store-la-camden"
    assert secrets["push-school-hillside"] == "sgx-store-school-hillside"


def test_each_local_authority_of_the_partnership_has_its_delivery_consumer() -> None:
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    parties = acl_plan.load_parties(acl_plan.PARTIES_FILE)
    for la in [p.id for p in parties if p.kind == "local_authority"]:
        container = _container(deployments[f"consumer-{la}"])
        assert container["args"] == ["consumer", "run", "--la", la]
        assert _env(container)["SGX_KAFKA_SASL_USERNAME"] == acl_plan.consumer_principal(la)


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_services_pdbs_and_the_service_monitor_select_the_deployments() -> None:
    pods = {d["metadata"]["name"]: _pod_labels(d) for d in _of_kind("Deployment")}

    def selected(selector: dict[str, str]) -> list[str]:
        return [name for name, labels in pods.items() if selector.items() <= labels.items()]

    by_service = {
        s["metadata"]["name"]: selected(s["spec"]["selector"]) for s in _of_kind("Service")
    }
    by_pdb = {
        p["metadata"]["name"]: selected(p["spec"]["selector"]["matchLabels"])
        for p in _of_kind("PodDisruptionBudget")
    }
    # each selects exactly one deployment, and each deployment has its own Service and PDB
    for chosen in (by_service, by_pdb):
        assert all(len(names) == 1 for names in chosen.values()), chosen
        assert sorted(name for (name,) in chosen.values()) == sorted(pods), chosen
    for service in _of_kind("Service"):
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    (monitor,) = _of_kind("ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [s["metadata"]["labels"] for s in _of_kind("Service")]
    assert all(all(labels.get(k) == v for k, v in wanted.items()) for labels in services)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_the_inbox_asks_for_shares_as_its_la_and_may_not_read_deliveries() -> None:
    """The inbox publishes share requests on its LA's inbound topic and reads the answers
    on its receipts topic, as the LA; the sealed deliveries it shows come from the queue
    database, so its principal needs (and has) no access to the delivery topic."""
    container = _container(
        {d["metadata"]["name"]: d for d in _of_kind("Deployment")}["inbox-la-camden"]
    )
    env = _env(container)
    assert container["args"] == ["inbox", "serve", "--la", "la-camden"]
    assert env["SGX_KAFKA_SASL_USERNAME"] == "la-camden"
    assert env["SGX_INBOX_LOCAL_ACCOUNTS"] == "false"
    assert env["SGX_INBOX_SESSION_SECRET"]["secretKeyRef"]["name"] == "sgx-inbox-la-camden"
    plan = acl_plan.plan(*acl_plan.load_partnership(acl_plan.PARTIES_FILE))
    assert plan.allows("la-camden", "Write", "topic", "sgx.inbound.la-camden")
    assert plan.allows("la-camden", "Read", "topic", "sgx.receipts.la-camden")
    assert not plan.allows("la-camden", "Read", "topic", "sgx.delivery.la-camden")


def test_the_cluster_runs_the_kafka_version_the_tests_run() -> None:
    pom = (REPO / "scripts" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    tested = pom.split("<kafka.version>")[1].split("</kafka.version>")[0]
    (kafka,) = _of_kind("Kafka")
    assert kafka["spec"]["kafka"]["version"] == tested
    compose = (REPO / "deploy" / "compose" / "compose.yaml").read_text(encoding="utf-8")
    images = {
        line.split("image:")[1].split()[0]
        for line in compose.splitlines()
        if "apache/kafka" in line
    }
    assert images == {f"apache/kafka:{tested}"}
