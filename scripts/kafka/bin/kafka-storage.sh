#!/usr/bin/env bash
# Kafka's kafka-storage.sh, on the classpath scripts/ensure-kafka.sh fetched.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
