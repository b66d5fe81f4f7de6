#!/usr/bin/env bash
# scripts/flume/run.sh CONF AGENT [ARGS...]: fetches (once) Apache Flume 1.11.0 from Maven Central
# (see pom.xml: the node, the file channel, the TAILDIR source and the HTTP sink) and runs the
# agent AGENT of the properties file CONF in the foreground:
#   java -Xmx$FLUME_HEAP ... org.apache.flume.node.Application -f CONF -n AGENT --no-reload-conf ARGS
# The heap limit is set explicitly: -Xmx$FLUME_HEAP (default 1g), so a run's memory does not
# depend on the machine's size (the JVM's default is a quarter of it); the initial heap is left
# to the JVM, so the process's resident memory shows how much of the heap it came to use. FLUME_JAVA_OPTS adds JVM options (for example
# -Dflume.monitoring.type=http -Dflume.monitoring.port=34545 for the counters as JSON).
# Logging is log4j2 to standard error at WARN (log4j2.xml); FLUME_LOG=info (or debug) shows more.
# `run.sh --fetch` only fetches, and prints the classpath file. Needs Java 17 and Maven; exit code
# 3 and a message when either is missing or the fetch fails. The java process replaces this
# script (exec), so its pid is the agent's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in java mvn; do
	if ! command -v "$tool" >/dev/null; then
		echo "flume: $tool is missing: install a JDK 17 (java) and Maven to run Apache Flume" >&2
		exit 3
	fi
done
if [ $# -lt 1 ] || { [ "$1" != --fetch ] && [ $# -lt 2 ]; }; then
	echo "usage: $0 CONF AGENT [ARGS...] | $0 --fetch" >&2
	exit 2
fi
cache=${WEIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}/flume
mkdir -p "$cache"
stamp=$(cat "$here/pom.xml" "$here/log4j2.xml" | sha256sum | cut -c1-16)
if [ ! -f "$cache/$stamp/classpath" ]; then
	# One fetch at a time: several runs may start agents at once.
	exec 9>"$cache/build.lock"
	flock 9
	if [ ! -f "$cache/$stamp/classpath" ]; then
		rm -rf "$cache/$stamp.tmp" && mkdir -p "$cache/$stamp.tmp"
		(cd "$here" && mvn -q -B -f pom.xml dependency:build-classpath -Dmdep.outputFile="$cache/$stamp.tmp/classpath" >&2) ||
			{ echo "flume: Maven could not fetch org.apache.flume:flume-ng-node 1.11.0" >&2; exit 3; }
		cp "$here/log4j2.xml" "$cache/$stamp.tmp/log4j2.xml"
		rm -rf "${cache:?}/$stamp" && mv "$cache/$stamp.tmp" "$cache/$stamp"
	fi
	exec 9>&-
fi
if [ "$1" = --fetch ]; then
	echo "$cache/$stamp/classpath"
	exit 0
fi
conf=$1 agent=$2
shift 2
heap=${FLUME_HEAP:-1g}
# shellcheck disable=SC2086 # FLUME_JAVA_OPTS is a list of options
exec java -Xmx"$heap" \
	-Dlog4j.configurationFile="$cache/$stamp/log4j2.xml" \
	-Dweir.flume.level="${FLUME_LOG:-warn}" \
	${FLUME_JAVA_OPTS:-} \
	-cp "$(cat "$cache/$stamp/classpath")" org.apache.flume.node.Application \
	-f "$conf" -n "$agent" --no-reload-conf "$@"
