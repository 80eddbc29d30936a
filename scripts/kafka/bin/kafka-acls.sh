#!/usr/bin/env bash
# Kafka's kafka-acls.sh, on the classpath scripts/ensure-kafka.sh fetched.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.AclCommand "$@"
