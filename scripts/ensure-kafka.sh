#!/usr/bin/env bash
# A real Apache Kafka broker on loopback for the tests, from the package registries only.
#
#   scripts/ensure-kafka.sh [start]   fetch if needed, start if not running, apply the ACL
#                                     plan; prints the connection settings (KEY=value lines)
#   scripts/ensure-kafka.sh stop      stop the broker this script started
#   scripts/ensure-kafka.sh status    running or not (exit 0 / 3), and the settings
#   scripts/ensure-kafka.sh env       the connection settings only
#   scripts/ensure-kafka.sh lib       fetch if needed; print the directory of Kafka's jars
#
# The broker is org.apache.kafka:kafka_2.13 at the version pinned in scripts/kafka/pom.xml,
# with its runtime dependencies and kafka-tools, copied from Maven Central by Maven into
# $SGX_KAFKA_HOME (default ~/.cache/sgx-kafka/<version>; never the repository). It needs
# Java 17+ and Maven. Once fetched, nothing is downloaded again.
#
# One KRaft node, broker and controller, state in $SGX_KAFKA_RUN (default /var/tmp/sgx-kafka),
# heap $SGX_KAFKA_HEAP (default 384m), listening on 127.0.0.1 only:
#   PLAINTEXT  127.0.0.1:$SGX_KAFKA_PLAINTEXT_PORT (19092)  the quick tests; its principal,
#              ANONYMOUS, is a super user (it is also the broker's own, to its controller)
#   SASL_SSL   localhost:$SGX_KAFKA_SASL_SSL_PORT (19093)   SCRAM-SHA-512 over TLS, with the
#              certificate deploy/scripts/make-certs.sh makes for kafka-1 (it names localhost)
#   CONTROLLER 127.0.0.1:$SGX_KAFKA_CONTROLLER_PORT (19094)
# The StandardAuthorizer is on and allow.everyone.if.no.acl.found off: a SCRAM principal may
# do what deploy/'s plan grants and nothing else. The SCRAM super user sgx-admin is written
# into the storage at format time; as sgx-admin, over SASL_SSL, the operators' own
# deploy/scripts/create-topics-and-acls.sh then creates the plan's topics, SCRAM users (the
# passwords make-certs.sh makes) and ACLs, with Kafka's tools from the same classpath
# (scripts/kafka/bin), again only when the plan or the passwords changed.
#
# Idempotent: a broker of this run directory that answers is used as it is (restarted if
# its configuration changed); a stale pid file is ignored; a port held by anything else is
# an error naming the holder. The broker keeps running after the tests (stop it with
# `stop`); its log is $SGX_KAFKA_RUN/logs/server.log.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
kafka_dir=$repo/scripts/kafka
pom=$kafka_dir/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
home=${SGX_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sgx-kafka/$version}
lib=$home/lib
run=${SGX_KAFKA_RUN:-/var/tmp/sgx-kafka}
plaintext_port=${SGX_KAFKA_PLAINTEXT_PORT:-19092}
sasl_ssl_port=${SGX_KAFKA_SASL_SSL_PORT:-19093}
controller_port=${SGX_KAFKA_CONTROLLER_PORT:-19094}
heap=${SGX_KAFKA_HEAP:-384m}
# 0: no deploy/ plan (topics, SCRAM users, ACLs): a broker the tests make their own topics
# on as the PLAINTEXT super user, and delete them again (tests/kafka_broker.py, flow_kafka)
apply=${SGX_KAFKA_PLAN:-1}
start_timeout=${SGX_KAFKA_START_TIMEOUT:-120}
secrets=$run/secrets
admin_config=$run/sgx-admin.properties
pid_file=$run/kafka.pid
config=$run/server.properties

say() { echo "ensure-kafka: $*" >&2; }
die() { say "$*"; exit 1; }

# -- fetch ------------------------------------------------------------------------------
fetched() { [ -f "$lib/.fetched" ] && [ "$(cat "$lib/.fetched")" = "$(sha256sum <"$pom")" ]; }

fetch() {
  fetched && return 0
  command -v java >/dev/null || die "java is not installed (Kafka $version needs Java 17+)"
  command -v mvn >/dev/null || die "mvn is not installed: Kafka comes from Maven Central by Maven"
  mkdir -p "$home"
  exec 8>"$home/.fetch.lock"
  flock -w 900 8 || die "another fetch into $home is still running"
  if fetched; then exec 8>&-; return 0; fi
  say "fetching Apache Kafka $version and its dependencies from Maven Central into $lib"
  local tmp
  tmp=$(mktemp -d "$home/lib.XXXXXX")
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >"$home/mvn.log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$home/mvn.log" >&2
    die "Maven could not fetch Kafka $version (log: $home/mvn.log)"
  fi
  sha256sum <"$pom" >"$tmp/.fetched"
  rm -rf "$lib"
  mv "$tmp" "$lib"
  exec 8>&-
}

# -- the broker process -----------------------------------------------------------------
# ours PID: PID is a broker started from this run directory's configuration
ours() { [ -n "$1" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "kafka.Kafka $config"; }

running_pid() {
  local pid
  pid=$(cat "$pid_file" 2>/dev/null || true)
  if ours "$pid"; then echo "$pid"; return 0; fi
  [ -e "$pid_file" ] && { say "removing the stale pid file $pid_file (pid ${pid:-none})"; rm -f "$pid_file"; }
  # a broker of this run directory whose pid file went missing: adopt it
  for pid in $(pgrep -f "kafka.Kafka $config" || true); do
    if ours "$pid"; then say "found its broker running without a pid file (pid $pid)"; echo "$pid" >"$pid_file"; echo "$pid"; return 0; fi
  done
  return 1
}

# holder PORT: what listens on 127.0.0.1:PORT (empty if nothing)
holder() { ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n 1; }

answers_plaintext() { python3 "$kafka_dir/answers.py" "127.0.0.1:$plaintext_port"; }
answers_sasl_ssl() { python3 "$kafka_dir/answers.py" "localhost:$sasl_ssl_port" --tls "$secrets/certs/ca.crt"; }
answers() { answers_plaintext && answers_sasl_ssl; }

stop_broker() {
  local pid
  pid=$(running_pid) || return 0
  say "stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do ours "$pid" || break; sleep 0.5; done
  if ours "$pid"; then say "the broker did not stop in 30 s: killing it"; kill -KILL "$pid" || true; sleep 1; fi
  rm -f "$pid_file"
}

# -- configuration ----------------------------------------------------------------------
valid_for_a_day() { openssl x509 -checkend 86400 -noout -in "$1" >/dev/null 2>&1; }

secrets_and_admin() {
  # the dev CA, kafka-1.pem (key + chain, SAN localhost) and a SCRAM password per principal
  # of the plan; existing files are kept, but certificates about to expire are made anew
  # (make-certs.sh's last a year; the new fingerprint in the configuration restarts the broker)
  local cert
  for cert in "$secrets/certs/ca.crt" "$secrets/certs/kafka-1.pem"; do
    if [ -s "$cert" ] && ! valid_for_a_day "$cert"; then
      say "$cert expires within a day: making new certificates"
      rm -rf "$secrets/certs"
    fi
  done
  "$repo/deploy/scripts/make-certs.sh" "$secrets" >/dev/null
  chmod 0700 "$secrets"  # make-certs.sh opens it to the containers' users; here none
  local password_file=$secrets/sasl/sgx-admin.password
  [ -s "$password_file" ] || (umask 077 && openssl rand -hex 24 >"$password_file")
  (
    umask 077
    cat >"$admin_config.new" <<PROPS
# sgx-admin, the super user that applies the ACL plan (scripts/ensure-kafka.sh)
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="sgx-admin" password="$(cat "$password_file")";
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/certs/ca.crt
PROPS
    mv "$admin_config.new" "$admin_config"
  )
}

write_config() {  # FILE
  cat >"$1" <<PROPS
# GENERATED by scripts/ensure-kafka.sh: Apache Kafka $version, one KRaft node for tests
# (JVM: -Xmx$heap ${SGX_KAFKA_JVM_OPTS:-}; a change of anything here restarts the broker)
# kafka-1 $(openssl x509 -noout -fingerprint -sha256 -in "$secrets/certs/kafka-1.pem")
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$plaintext_port,SASL_SSL://127.0.0.1:$sasl_ssl_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$plaintext_port,SASL_SSL://localhost:$sasl_ssl_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT

# SASL_SSL: SCRAM-SHA-512 over TLS; PEM key store and trust store from make-certs.sh
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$secrets/certs/kafka-1.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/certs/ca.crt

# deny by default, as in production (deploy/compose); ANONYMOUS is PLAINTEXT, loopback only
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:sgx-admin
auto.create.topics.enable=false

# one node: every internal topic has one replica; small and quick
log.dirs=$run/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# the tests' consumers use 2 s sessions (tests/conftest.py); Kafka's floor is 6 s
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
PROPS
}

format_storage() {
  [ -s "$run/data/meta.properties" ] && [ "$(cat "$run/version" 2>/dev/null)" = "$version" ] && return 0
  rm -rf "$run/data"
  local cluster_id
  cluster_id=$("$kafka_dir/bin/kafka-storage.sh" random-uuid)
  "$kafka_dir/bin/kafka-storage.sh" format --config "$config" --cluster-id "$cluster_id" \
    --add-scram "SCRAM-SHA-512=[name=sgx-admin,password=$(cat "$secrets/sasl/sgx-admin.password")]" \
    >"$run/logs/format.log" 2>&1 || { cat "$run/logs/format.log" >&2; die "kafka-storage format failed"; }
  echo "$version" >"$run/version"
}

start_broker() {
  local port who
  for port in "$plaintext_port" "$sasl_ssl_port" "$controller_port"; do
    who=$(holder "$port")
    [ -z "$who" ] || die "port $port is in use by $who: stop it, or set SGX_KAFKA_PLAINTEXT_PORT, SGX_KAFKA_SASL_SSL_PORT, SGX_KAFKA_CONTROLLER_PORT"
  done
  format_storage
  say "starting Apache Kafka $version (heap $heap; log $run/logs/server.log)"
  # its own session, stdio on files, the lock not inherited: it outlives this script and
  # holds no pipe of whoever ran it
  # shellcheck disable=SC2086
  setsid java -Xms64m "-Xmx$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k \
    -Djava.awt.headless=true -Dkafka.logs.dir="$run/logs" \
    -Dlog4j2.configurationFile="$kafka_dir/log4j2.properties" ${SGX_KAFKA_JVM_OPTS:-} \
    -cp "$lib/*" kafka.Kafka "$config" </dev/null >"$run/logs/kafka.out" 2>&1 8>&- 9>&- &
  local pid=$!
  # until the forked shell has become java, its command line is this script's
  for _ in $(seq 1 50); do ours "$pid" && break; sleep 0.1; done
  echo "$pid" >"$pid_file"
}

wait_until_answering() {
  local deadline=$((SECONDS + start_timeout))
  until answers; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$run/logs/server.log" "$run/logs/kafka.out" >&2 2>/dev/null || true
      rm -f "$pid_file"
      die "the broker exited while starting (log above; $run/logs)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$run/logs/server.log" >&2 2>/dev/null || true
      die "the broker did not answer on both listeners within ${start_timeout}s"
    fi
    sleep 0.5
  done
}

tools_archive() {
  # the class-data archive scripts/kafka/bin/kafka-run-class.sh maps: the classes one admin
  # tool loads talking SASL_SSL to this broker, dumped at its exit (once per fetch)
  [ -s "$lib/.tools.jsa" ] && return 0
  if KAFKA_OPTS="-XX:ArchiveClassesAtExit=$lib/.tools.jsa.$$" "$kafka_dir/bin/kafka-acls.sh" \
      --bootstrap-server "localhost:$sasl_ssl_port" --command-config "$admin_config" --list \
      >/dev/null 2>&1; then
    mv -f "$lib/.tools.jsa.$$" "$lib/.tools.jsa"
  else
    rm -f "$lib/.tools.jsa.$$"  # the tools run without it, only slower
  fi
}

apply_plan() {
  local script=$repo/deploy/scripts/create-topics-and-acls.sh stamp want
  stamp=$run/plan-applied
  # again after a new format (cluster id), a changed plan or changed passwords
  want=$( (grep '^cluster.id=' "$run/data/meta.properties"; cat "$script" "$secrets"/sasl/*.password) | sha256sum)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  say "applying deploy/'s topic and ACL plan as sgx-admin (create-topics-and-acls.sh)"
  tools_archive
  KAFKA_BIN=$kafka_dir/bin BOOTSTRAP=localhost:$sasl_ssl_port ADMIN_CONFIG=$admin_config \
    SASL_DIR=$secrets/sasl REPLICATION_FACTOR=1 MIN_INSYNC_REPLICAS=1 \
    "$script" >"$run/logs/plan.log" 2>&1 || { tail -n 30 "$run/logs/plan.log" >&2; die "applying the plan failed"; }
  echo "$want" >"$stamp"
}

print_env() {
  cat <<ENV
KAFKA_VERSION=$version
KAFKA_PLAINTEXT=127.0.0.1:$plaintext_port
KAFKA_SASL_SSL=localhost:$sasl_ssl_port
KAFKA_CA_FILE=$secrets/certs/ca.crt
KAFKA_SASL_DIR=$secrets/sasl
KAFKA_ADMIN_CONFIG=$admin_config
KAFKA_RUN=$run
ENV
}

# -- commands ---------------------------------------------------------------------------
lock() {
  mkdir -p "$run/logs"
  exec 9>"$run/.lock"
  flock -w 900 9 || die "another ensure-kafka.sh holds $run/.lock"
}

start() {
  fetch
  export SGX_KAFKA_LIB=$lib  # the tools of scripts/kafka/bin need not look again
  lock
  secrets_and_admin
  local wanted=$config.new pid
  write_config "$wanted"
  if pid=$(running_pid); then
    if cmp -s "$wanted" "$config" && [ "$(cat "$run/version" 2>/dev/null)" = "$version" ]; then
      rm -f "$wanted"
      wait_until_answering
      if [ "$apply" = 1 ]; then apply_plan; fi
      print_env
      return 0
    fi
    say "the running broker's configuration or version changed: restarting it"
    stop_broker
  fi
  mv "$wanted" "$config"
  start_broker
  wait_until_answering
  if [ "$apply" = 1 ]; then apply_plan; fi
  say "Apache Kafka $version answers: PLAINTEXT 127.0.0.1:$plaintext_port, SASL_SSL localhost:$sasl_ssl_port"
  print_env
}

case ${1:-start} in
  start) start ;;
  stop) lock; stop_broker ;;
  status)
    if pid=$(running_pid) && answers; then
      say "running (pid $pid), answering on both listeners"; print_env
    else
      say "not running"; exit 3
    fi
    ;;
  env) print_env ;;
  lib) fetch; echo "$lib" ;;
  *) echo "usage: $0 [start|stop|status|env|lib]" >&2; exit 2 ;;
esac
