#!/usr/bin/env bash
# scripts/kafka-server/run.sh [NODES] [-- COMMAND ARGS...]: runs an Apache Kafka cluster in KRaft
# mode on 127.0.0.1 (Maven Central: org.apache.kafka:kafka_2.13, version in pom.xml), for the
# comparisons in docs/benchmarks.md.
#
# NODES (1 or 3, default 1) processes each act as broker and controller (process.roles
# broker,controller), with a data directory of their own formatted by Kafka's StorageTool. Node i
# listens for clients on 127.0.0.1:$((KAFKA_PORT + 10*(i-1))) and for its controller quorum on the
# next port (KAFKA_PORT defaults to 19092). Once every node has started, the bootstrap address
# (HOST:PORT,...) is printed alone on standard output; progress goes to standard error. Then:
#   - with no COMMAND, the cluster serves until this script gets SIGINT or SIGTERM, or a node dies;
#   - with -- COMMAND ARGS, COMMAND runs with KAFKA_BOOTSTRAP set to that address, and its exit
#     code is this script's.
# Either way, and on any exit, every node is stopped (SIGTERM, then SIGKILL after 20 s) and the
# data directory is removed (KAFKA_KEEP=1 keeps it and says where).
#
# Settings are Kafka's defaults but for what a test cluster needs: internal topics with a
# replication factor of NODES, no delay before the first group rebalance. Nothing is fsynced per
# write (log.flush.* unset, as in a Kafka release's config): like `weir node --sync never`, an
# acknowledged record is in the page cache of its replicas, not yet on their disks.
# KAFKA_HEAP (default "-Xms1g -Xmx1g") is each node's heap; KAFKA_LOG (default info) the level of
# the nodes' logs, in DIR/nI/server.log. Needs Java 17 and Maven; the first run fetches the jars
# into ${WEIR_CACHE:-~/.cache/weir}/kafka-server/ (one fetch at a time, under a lock).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in java mvn; do
	if ! command -v "$tool" >/dev/null; then
		echo "kafka-server: $tool is missing: install a JDK 17 (java) and Maven to run Apache Kafka" >&2
		exit 3
	fi
done
nodes=1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
	nodes=$1
	shift
fi
if [ "$nodes" != 1 ] && [ "$nodes" != 3 ]; then
	echo "usage: $0 [1|3] [-- COMMAND ARGS...]" >&2
	exit 2
fi
if [ $# -gt 0 ]; then
	if [ "$1" != "--" ] || [ $# -lt 2 ]; then
		echo "usage: $0 [1|3] [-- COMMAND ARGS...]" >&2
		exit 2
	fi
	shift
fi
port=${KAFKA_PORT:-19092}
heap=${KAFKA_HEAP:--Xms1g -Xmx1g}

cache=${WEIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}/kafka-server
mkdir -p "$cache"
stamp=$(sha256sum <"$here/pom.xml" | cut -c1-16)
if [ ! -f "$cache/$stamp/classpath" ]; then
	# One fetch at a time: two clusters may start at once.
	exec 9>"$cache/build.lock"
	flock 9
	if [ ! -f "$cache/$stamp/classpath" ]; then
		rm -rf "$cache/$stamp.tmp" && mkdir -p "$cache/$stamp.tmp"
		(cd "$here" && mvn -q -B -f pom.xml dependency:build-classpath -Dmdep.outputFile="$cache/$stamp.tmp/classpath" >&2) ||
			{ echo "kafka-server: Maven could not fetch org.apache.kafka:kafka_2.13" >&2; exit 3; }
		rm -rf "${cache:?}/$stamp" && mv "$cache/$stamp.tmp" "$cache/$stamp"
	fi
	exec 9>&-
fi
cp=$(cat "$cache/$stamp/classpath")

dir=$(mktemp -d "${TMPDIR:-/tmp}/weir-kafka.XXXXXX")
pids=()
stopping=0
# shellcheck disable=SC2317 # run by the EXIT trap, which shellcheck does not follow here
stop() {
	local code=$?
	[ "$stopping" = 1 ] && return
	stopping=1
	trap - INT TERM
	if [ ${#pids[@]} -gt 0 ]; then
		echo "kafka-server: stopping ${#pids[@]} node(s)" >&2
		kill -TERM "${pids[@]}" 2>/dev/null || true
		for _ in $(seq 1 200); do
			local alive=0
			for p in "${pids[@]}"; do
				if kill -0 "$p" 2>/dev/null; then alive=1; fi
			done
			[ "$alive" = 0 ] && break
			sleep 0.1
		done
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	if [ "${KAFKA_KEEP:-0}" = 1 ]; then
		echo "kafka-server: kept $dir" >&2
	else
		rm -rf "$dir"
	fi
	exit "$code"
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# One JVM per node, with the G1 settings kafka-server-start.sh gives it. The nodes log through
# slf4j-simple (in pom.xml instead of a release's log4j2 setup) to their server.log.
read -r -a heap_opts <<<"$heap"
jvm=(java "${heap_opts[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
	-XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
	-Dorg.slf4j.simpleLogger.defaultLogLevel="${KAFKA_LOG:-info}"
	-Dorg.slf4j.simpleLogger.logFile=System.out -Dorg.slf4j.simpleLogger.showDateTime=true
	-cp "$cp")

voters="" bootstrap=""
for i in $(seq 1 "$nodes"); do
	b=$((port + 10 * (i - 1)))
	voters="${voters:+$voters,}$i@127.0.0.1:$((b + 1))"
	bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:$b"
done
cluster_id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
for i in $(seq 1 "$nodes"); do
	b=$((port + 10 * (i - 1)))
	mkdir -p "$dir/n$i"
	cat >"$dir/n$i/server.properties" <<-EOF
		process.roles=broker,controller
		node.id=$i
		controller.quorum.voters=$voters
		listeners=PLAINTEXT://127.0.0.1:$b,CONTROLLER://127.0.0.1:$((b + 1))
		advertised.listeners=PLAINTEXT://127.0.0.1:$b
		controller.listener.names=CONTROLLER
		inter.broker.listener.name=PLAINTEXT
		listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
		log.dirs=$dir/n$i/data
		offsets.topic.replication.factor=$nodes
		share.coordinator.state.topic.replication.factor=$nodes
		transaction.state.log.replication.factor=$nodes
		transaction.state.log.min.isr=1
		group.initial.rebalance.delay.ms=0
	EOF
	"${jvm[@]}" kafka.tools.StorageTool format --cluster-id "$cluster_id" \
		--config "$dir/n$i/server.properties" >"$dir/n$i/format.log" 2>&1 ||
		{ echo "kafka-server: formatting node $i failed:" >&2; cat "$dir/n$i/format.log" >&2; exit 1; }
done
for i in $(seq 1 "$nodes"); do
	"${jvm[@]}" kafka.Kafka "$dir/n$i/server.properties" >"$dir/n$i/server.log" 2>&1 &
	pids+=("$!")
done
echo "kafka-server: $nodes node(s) starting in $dir (pids ${pids[*]})" >&2

# A node is serving once it has logged that it started (the broker is then unfenced).
deadline=$((SECONDS + 120))
for i in $(seq 1 "$nodes"); do
	until grep -q 'Kafka Server started' "$dir/n$i/server.log" 2>/dev/null; do
		if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
			echo "kafka-server: node $i exited while starting; its log:" >&2
			tail -n 40 "$dir/n$i/server.log" >&2
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "kafka-server: node $i did not start within 120 s; its log ends:" >&2
			tail -n 40 "$dir/n$i/server.log" >&2
			exit 1
		fi
		sleep 0.2
	done
done
echo "kafka-server: serving at $bootstrap" >&2
echo "$bootstrap"

if [ $# -gt 0 ]; then
	set +e
	KAFKA_BOOTSTRAP=$bootstrap "$@"
	code=$?
	set -e
	exit "$code"
fi
# Serve until signalled (the traps exit) or until a node dies.
set +e
wait -n "${pids[@]}"
echo "kafka-server: a node exited on its own (code $?); see $dir/n*/server.log" >&2
exit 1
