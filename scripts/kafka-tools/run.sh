#!/usr/bin/env bash
# scripts/kafka-tools/run.sh CLASS ARGS...: fetches (once) Apache Kafka's Java tools
# (Maven Central: org.apache.kafka:kafka-tools, see pom.xml) and runs java CLASS ARGS with them, e.g.
#   run.sh org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:9092 --topic t
#   run.sh org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server ... --from-beginning
#   run.sh org.apache.kafka.tools.ProducerPerformance --topic t --num-records 1000 ...
#   run.sh org.apache.kafka.tools.ConsumerPerformance --bootstrap-server ... --topic t --messages 1000
# Logging goes through slf4j-simple to standard error at WARN; KAFKA_TOOLS_LOG=debug (or info,
# trace) shows the clients' own logs, requests and versions included. Needs Java 17 and Maven.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in java mvn; do
	if ! command -v "$tool" >/dev/null; then
		echo "kafka-tools: $tool is missing: install a JDK 17 (java) and Maven to run Kafka's Java tools" >&2
		exit 3
	fi
done
if [ $# -lt 1 ]; then
	echo "usage: $0 CLASS ARGS... (e.g. org.apache.kafka.tools.ConsoleProducer)" >&2
	exit 2
fi
cache=${WEIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}/kafka-tools
mkdir -p "$cache"
stamp=$(sha256sum <"$here/pom.xml" | cut -c1-16)
if [ ! -f "$cache/$stamp/classpath" ]; then
	# One fetch at a time: several tests may start tools at once.
	exec 9>"$cache/build.lock"
	flock 9
	if [ ! -f "$cache/$stamp/classpath" ]; then
		rm -rf "$cache/$stamp.tmp" && mkdir -p "$cache/$stamp.tmp"
		(cd "$here" && mvn -q -B -f pom.xml dependency:build-classpath -Dmdep.outputFile="$cache/$stamp.tmp/classpath" >&2) ||
			{ echo "kafka-tools: Maven could not fetch org.apache.kafka:kafka-tools" >&2; exit 3; }
		rm -rf "${cache:?}/$stamp" && mv "$cache/$stamp.tmp" "$cache/$stamp"
	fi
	exec 9>&-
fi
class=$1
shift
exec java -Xmx512m \
	-Dorg.slf4j.simpleLogger.defaultLogLevel="${KAFKA_TOOLS_LOG:-warn}" \
	-Dorg.slf4j.simpleLogger.logFile=System.err \
	-cp "$(cat "$cache/$stamp/classpath")" "$class" "$@"
