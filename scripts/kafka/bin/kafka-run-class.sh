#!/usr/bin/env bash
# Runs a class of the Apache Kafka that scripts/ensure-kafka.sh fetches from Maven Central
# (fetching it first if it is not cached): the stand-in for Kafka's own
# bin/kafka-run-class.sh, so that Kafka's command-line tools run with
# KAFKA_BIN=scripts/kafka/bin, as deploy/scripts/create-topics-and-acls.sh expects them.
#   kafka-run-class.sh CLASS [ARGS...]
# KAFKA_HEAP_OPTS (default -Xmx256m) and KAFKA_OPTS are added to the JVM's options;
# SGX_KAFKA_LIB names the jars' directory (ensure-kafka.sh sets it for the tools it runs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=${SGX_KAFKA_LIB:-$("$here/../../ensure-kafka.sh" lib)}
# A tool runs for about a second, most of it the JVM starting: the quick JIT, one GC thread,
# and, once ensure-kafka.sh has made it, an application class-data archive of the admin
# tools' classes (a third of a second less a run; create-topics-and-acls.sh runs a
# hundred). JVM logging is off: a stale archive (another JDK) is skipped without a warning
# on stdout.
archive=$lib/.tools.jsa
cds=()
[ -s "$archive" ] && cds=("-XX:SharedArchiveFile=$archive")
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
  "${cds[@]}" -Xlog:disable -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$here/../tools-log4j2.properties" \
  ${KAFKA_OPTS:-} -cp "$lib/*" "$@"
