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
#   REPLICATION_FACTOR   every topic's replicas               (default the plan's, 3)
#   MIN_INSYNC_REPLICAS  every topic's min.insync.replicas   (default 2)
#                 (a one-node test broker sets both to 1: scripts/ensure-kafka.sh)
set -euo pipefail
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
BOOTSTRAP=${BOOTSTRAP:-kafka-1:19092}
ADMIN_CONFIG=${ADMIN_CONFIG:-/secrets/admin.properties}
SASL_DIR=${SASL_DIR:-/secrets/sasl}
admin=(--bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG")

topic() {  # name partitions replicas [more kafka-topics.sh options]
  "$KAFKA_BIN/kafka-topics.sh" "${admin[@]}" --create --if-not-exists --topic "$1" \
    --partitions "$2" --replication-factor "${REPLICATION_FACTOR:-$3}" \
    --config "min.insync.replicas=${MIN_INSYNC_REPLICAS:-2}" "${@:4}"
}

user() {  # name: SCRAM-SHA-512 credentials from $SASL_DIR/<name>.password
  local password
  password=$(<"$SASL_DIR/$1.password")
  "$KAFKA_BIN/kafka-configs.sh" "${admin[@]}" --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" >/dev/null
}

planned=()
acl() {  # principal operation resource-type pattern-type name
  planned+=("$1 $2 $3 $4 $5")
  "$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --add --allow-principal "User:$1" \
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
      "$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --remove --force --allow-principal \
        "User:$principal" --operation "$operation" --resource-pattern-type "$pattern" \
        "--$kind" "$name" >/dev/null
    fi
  done < <("$KAFKA_BIN/kafka-acls.sh" "${admin[@]}" --list)
}

# topics
topic sgx.schemas 1 3 --config cleanup.policy=compact
topic sgx.replay 1 3
topic sgx.inbound.la-camden 3 3
topic sgx.receipts.la-camden 1 3
topic sgx.allocations.la-camden 1 3 --config retention.ms=-1
topic sgx.delivery.la-camden 3 3
topic sgx.inbound.la-islington 3 3
topic sgx.receipts.la-islington 1 3
topic sgx.allocations.la-islington 1 3 --config retention.ms=-1
topic sgx.delivery.la-islington 3 3
topic sgx.inbound.school-hillside 3 3
topic sgx.receipts.school-hillside 1 3
topic sgx.delivery.school-hillside 3 3
topic sgx.inbound.school-canonbury 3 3
topic sgx.receipts.school-canonbury 1 3
topic sgx.delivery.school-canonbury 3 3
topic sgx.inbound.nhs-royal-free 3 3
topic sgx.receipts.nhs-royal-free 1 3
topic sgx.inbound.met-police 3 3
topic sgx.receipts.met-police 1 3
topic sgx.delivery.met-police 3 3
topic sgx.inbound.gp-hillside 3 3
topic sgx.receipts.gp-hillside 1 3
topic sgx.inbound.whittington-health 3 3
topic sgx.receipts.whittington-health 1 3
topic sgx.inbound.family-action-camden 3 3
topic sgx.receipts.family-action-camden 1 3
topic sgx.inbound.mis-north-london 3 3
topic sgx.receipts.mis-north-london 3 3
topic sgx.delivery.mis-north-london 3 3

# principals
user sgx-gateway
user la-camden
user sgx-consumer-la-camden
user la-islington
user sgx-consumer-la-islington
user school-hillside
user sgx-consumer-school-hillside
user school-canonbury
user sgx-consumer-school-canonbury
user nhs-royal-free
user met-police
user sgx-consumer-met-police
user gp-hillside
user whittington-health
user family-action-camden
user mis-north-london

# allow-ACLs (no ACL, no access: allow.everyone.if.no.acl.found=false)
acl sgx-gateway Read topic prefixed sgx.inbound.
acl sgx-gateway Read topic prefixed sgx.allocations.
acl sgx-gateway Write topic prefixed sgx.delivery.
acl sgx-gateway Write topic prefixed sgx.receipts.
acl sgx-gateway Read group literal sgx-gateway
acl sgx-gateway Write topic literal sgx.schemas
acl sgx-gateway Write topic literal sgx.replay
acl sgx-gateway Read topic literal sgx.replay
acl sgx-gateway Read topic literal sgx.schemas
acl sgx-gateway Describe topic prefixed sgx.
acl la-camden Write topic literal sgx.inbound.la-camden
acl la-camden Read topic literal sgx.receipts.la-camden
acl la-camden Read group literal sgx-producer-la-camden
acl la-camden Describe topic prefixed sgx.
acl la-camden Read topic literal sgx.schemas
acl la-camden Write topic literal sgx.allocations.la-camden
acl sgx-consumer-la-camden Read topic literal sgx.delivery.la-camden
acl sgx-consumer-la-camden Read topic literal sgx.receipts.la-camden
acl sgx-consumer-la-camden Read group literal sgx-consumer-la-camden
acl sgx-consumer-la-camden Describe topic prefixed sgx.
acl sgx-consumer-la-camden Read topic literal sgx.schemas
acl la-islington Write topic literal sgx.inbound.la-islington
acl la-islington Read topic literal sgx.receipts.la-islington
acl la-islington Read group literal sgx-producer-la-islington
acl la-islington Describe topic prefixed sgx.
acl la-islington Read topic literal sgx.schemas
acl la-islington Write topic literal sgx.allocations.la-islington
acl sgx-consumer-la-islington Read topic literal sgx.delivery.la-islington
acl sgx-consumer-la-islington Read topic literal sgx.receipts.la-islington
acl sgx-consumer-la-islington Read group literal sgx-consumer-la-islington
acl sgx-consumer-la-islington Describe topic prefixed sgx.
acl sgx-consumer-la-islington Read topic literal sgx.schemas
acl school-hillside Write topic literal sgx.inbound.school-hillside
acl school-hillside Read topic literal sgx.receipts.school-hillside
acl school-hillside Read group literal sgx-producer-school-hillside
acl school-hillside Read group literal sgx-open-cases-school-hillside
acl school-hillside Describe topic prefixed sgx.
acl school-hillside Read topic literal sgx.schemas
acl sgx-consumer-school-hillside Read topic literal sgx.delivery.school-hillside
acl sgx-consumer-school-hillside Read group literal sgx-consumer-school-hillside
acl sgx-consumer-school-hillside Describe topic prefixed sgx.
acl sgx-consumer-school-hillside Read topic literal sgx.schemas
acl school-canonbury Write topic literal sgx.inbound.school-canonbury
acl school-canonbury Read topic literal sgx.receipts.school-canonbury
acl school-canonbury Read group literal sgx-producer-school-canonbury
acl school-canonbury Read group literal sgx-open-cases-school-canonbury
acl school-canonbury Describe topic prefixed sgx.
acl school-canonbury Read topic literal sgx.schemas
acl sgx-consumer-school-canonbury Read topic literal sgx.delivery.school-canonbury
acl sgx-consumer-school-canonbury Read group literal sgx-consumer-school-canonbury
acl sgx-consumer-school-canonbury Describe topic prefixed sgx.
acl sgx-consumer-school-canonbury Read topic literal sgx.schemas
acl nhs-royal-free Write topic literal sgx.inbound.nhs-royal-free
acl nhs-royal-free Read topic literal sgx.receipts.nhs-royal-free
acl nhs-royal-free Read group literal sgx-producer-nhs-royal-free
acl nhs-royal-free Describe topic prefixed sgx.
acl nhs-royal-free Read topic literal sgx.schemas
acl met-police Write topic literal sgx.inbound.met-police
acl met-police Read topic literal sgx.receipts.met-police
acl met-police Read group literal sgx-producer-met-police
acl met-police Describe topic prefixed sgx.
acl met-police Read topic literal sgx.schemas
acl sgx-consumer-met-police Read topic literal sgx.delivery.met-police
acl sgx-consumer-met-police Read group literal sgx-consumer-met-police
acl sgx-consumer-met-police Describe topic prefixed sgx.
acl sgx-consumer-met-police Read topic literal sgx.schemas
acl gp-hillside Write topic literal sgx.inbound.gp-hillside
acl gp-hillside Read topic literal sgx.receipts.gp-hillside
acl gp-hillside Read group literal sgx-producer-gp-hillside
acl gp-hillside Describe topic prefixed sgx.
acl gp-hillside Read topic literal sgx.schemas
acl whittington-health Write topic literal sgx.inbound.whittington-health
acl whittington-health Read topic literal sgx.receipts.whittington-health
acl whittington-health Read group literal sgx-producer-whittington-health
acl whittington-health Describe topic prefixed sgx.
acl whittington-health Read topic literal sgx.schemas
acl family-action-camden Write topic literal sgx.inbound.family-action-camden
acl family-action-camden Read topic literal sgx.receipts.family-action-camden
acl family-action-camden Read group literal sgx-producer-family-action-camden
acl family-action-camden Describe topic prefixed sgx.
acl family-action-camden Read topic literal sgx.schemas
acl mis-north-london Write topic literal sgx.inbound.mis-north-london
acl mis-north-london Read topic literal sgx.receipts.mis-north-london
acl mis-north-london Read topic literal sgx.delivery.mis-north-london
acl mis-north-london Read group literal sgx-producer-school-gospel-oak
acl mis-north-london Read group literal sgx-open-cases-school-gospel-oak
acl mis-north-london Read group literal sgx-consumer-school-gospel-oak
acl mis-north-london Read group literal sgx-producer-school-highbury-fields
acl mis-north-london Read group literal sgx-open-cases-school-highbury-fields
acl mis-north-london Read group literal sgx-consumer-school-highbury-fields
acl mis-north-london Read topic literal sgx.schemas
acl mis-north-london Describe topic prefixed sgx.

# what an earlier plan granted and this one does not
revoke_stale

echo "topics, users and ACLs applied"
