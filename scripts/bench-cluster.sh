#!/bin/sh
# Cluster benchmarks (issue 4, docs/benchmarks.md): three `weir node` processes on 127.0.0.1,
# a topic of 6 partitions with replication factor 3, acks=all, 100-byte records sent through the
# Go client (`weir bench produce`) to all three nodes. Each round measures the peak (a 10-second
# run at full speed) and then the latency at half of that peak (a 10-second run at --rate),
# each on a topic of its own.
#
#   scripts/bench-cluster.sh [ROUNDS]       (make bench-cluster runs it)
#
# BIN (default bin/weir) is the binary; SYNC (default never, as the single-node figures) is
# the nodes' --sync; the nodes' data goes to a temporary directory, removed at the end.
set -eu
BIN=${BIN:-bin/weir}
SYNC=${SYNC:-never}
ROUNDS=${1:-3}
DIR=$(mktemp -d /tmp/weir-bench-cluster.XXXXXX)
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
SERVERS=127.0.0.1:7711,127.0.0.1:7721,127.0.0.1:7731
for i in 1 2 3; do
	join=""
	[ "$i" = 1 ] || join="--join 127.0.0.1:7713"
	"$BIN" node --id "n$i" --data "$DIR/n$i" --listen "127.0.0.1:77${i}1" --http "" \
		--cluster "127.0.0.1:77${i}2" --gossip "127.0.0.1:77${i}3" --sync "$SYNC" $join >"$DIR/n$i.log" 2>&1 &
	PIDS="$PIDS $!"
	[ "$i" = 1 ] && sleep 1
done
sleep 5
echo "# $(date -u +%FT%TZ) $("$BIN" version), 3 nodes, --sync $SYNC, RF 3, acks=all, 100 B records"
for r in $(seq 1 "$ROUNDS"); do
	"$BIN" --server "$SERVERS" topic create "peak$r" --partitions 6 --replicas 3 >/dev/null
	"$BIN" --server "$SERVERS" topic create "half$r" --partitions 6 --replicas 3 >/dev/null
	for t in "peak$r" "half$r"; do # every partition has a leader
		while "$BIN" --server "$SERVERS" topic describe "$t" | grep -q '(none)'; do sleep 0.1; done
	done
	sleep 1
	out=$("$BIN" --server "$SERVERS" bench produce --topic "peak$r" --duration 10s --acks all 2>/dev/null)
	echo "round $r peak: $out"
	rate=$(echo "$out" | sed -n 's/.*records\/s=\([0-9]*\).*/\1/p')
	half=$((rate / 2))
	out=$("$BIN" --server "$SERVERS" bench produce --topic "half$r" --duration 10s --acks all --rate "$half" 2>/dev/null)
	echo "round $r at $half/s: $out"
done
