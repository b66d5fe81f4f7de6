#!/usr/bin/env bash
# scripts/hdfs-minicluster/run.sh PORT DATANODES DIR [KEY=VALUE...]: builds (once) and runs a real
# HDFS from Hadoop's MiniDFSCluster (Maven Central: org.apache.hadoop:hadoop-client-minicluster),
# with the NameNode on PORT (0: any) and DATANODES DataNodes, data under DIR, and the Hadoop
# settings KEY=VALUE over the launcher's (MiniHdfs.java). WEIR_HDFS_JAVA_OPTS, if set, is added
# to the JVM's options (a profiler, say). It prints
# "namenode 127.0.0.1:PORT" when the cluster is up and takes commands on standard input (see
# MiniHdfs.java); it stops when its input ends. Needs Java 17 and Maven.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in java javac mvn; do
	if ! command -v "$tool" >/dev/null; then
		echo "hdfs-minicluster: $tool is missing: install a JDK 17 (java, javac) and Maven to run the HDFS tests" >&2
		exit 3
	fi
done
cache=${WEIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}/hdfs-minicluster
mkdir -p "$cache"
stamp=$(cat "$here/pom.xml" "$here/MiniHdfs.java" | sha256sum | cut -c1-16)
if [ ! -f "$cache/$stamp/MiniHdfs.class" ]; then
	# One build at a time: tests in several packages may start clusters at once.
	exec 9>"$cache/build.lock"
	flock 9
	if [ ! -f "$cache/$stamp/MiniHdfs.class" ]; then
		rm -rf "$cache/$stamp.tmp" && mkdir -p "$cache/$stamp.tmp"
		(cd "$here" && mvn -q -B -f pom.xml dependency:build-classpath -Dmdep.outputFile="$cache/$stamp.tmp/classpath" >&2) ||
			{ echo "hdfs-minicluster: Maven could not fetch hadoop-client-minicluster" >&2; exit 3; }
		javac -nowarn -d "$cache/$stamp.tmp" -cp "$(cat "$cache/$stamp.tmp/classpath")" "$here/MiniHdfs.java" >&2
		rm -rf "${cache:?}/$stamp" && mv "$cache/$stamp.tmp" "$cache/$stamp"
	fi
	exec 9>&-
fi
exec java -Xmx1g ${WEIR_HDFS_JAVA_OPTS:-} -Dlog4j.configuration=none -cp "$cache/$stamp:$(cat "$cache/$stamp/classpath")" MiniHdfs "$@"
