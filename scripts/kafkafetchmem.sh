#!/usr/bin/env bash
# What a weir node's Kafka listener costs when GROUPS kcat consumer groups read the same topic
# at once: one node (--sync never), RECORDS records of 100 B produced into 6 partitions, then
# GROUPS `kcat -G` groups started together, each reading every record to the end. Prints one
# line: the node's peak RSS during the reads (VmHWM, reset after producing), its CPU seconds
# (user+sys) and the bytes it allocated (go_memstats_alloc_bytes_total) during the reads, and
# the records delivered.
#
# Usage: scripts/kafkafetchmem.sh WEIR_BINARY [GROUPS [RECORDS]]
# Compare builds by running this for each in turn, alternating (the machine is shared).
set -euo pipefail
bin=$1
groups=${2:-10}
records=${3:-1000000}
command -v kcat >/dev/null || { echo "kafkafetchmem: kcat is needed (apt-get install kcat)" >&2; exit 2; }

port() { # a port outside the ephemeral range, free now
	local lo hi p
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	while :; do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
	done
}
dir=$(mktemp -d)
client=$(port) http=$(port) kafka=$(port)
"$bin" node --data "$dir" --listen 127.0.0.1:$client --http 127.0.0.1:$http --kafka 127.0.0.1:$kafka --sync never >"$dir.log" 2>&1 &
node=$!
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$dir" "$dir.log"' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$client) 2>/dev/null && break; sleep 0.1; done
"$bin" bench produce --server 127.0.0.1:$client --topic fm --partitions 6 --records "$records" --record-size 100 --acks all >/dev/null 2>&1

alloc() { curl -s "http://127.0.0.1:$http/metrics" | awk '$1 == "go_memstats_alloc_bytes_total" { printf "%.0f\n", $2 }'; }
cpu() { awk '{ print $14 + $15 }' "/proc/$node/stat"; }
echo 5 >"/proc/$node/clear_refs" # the peak RSS starts again from now
a0=$(alloc) c0=$(cpu) t0=$(date +%s.%N)
pids=()
for g in $(seq "$groups"); do
	kcat -b 127.0.0.1:$kafka -G "g$g" -o beginning -e -q -f '%o\n' fm 2>/dev/null | wc -l >"$dir.g$g" &
	pids+=($!)
done
wait "${pids[@]}"
t1=$(date +%s.%N) a1=$(alloc) c1=$(cpu)
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$node/status")
delivered=$(cat "$dir".g* | awk '{ s += $1 } END { print s }')
rm -f "$dir".g*
tck=$(getconf CLK_TCK)
awk -v b="$bin" -v g="$groups" -v d="$delivered" -v h="$hwm" -v c0="$c0" -v c1="$c1" -v tck="$tck" -v a0="$a0" -v a1="$a1" -v t0="$t0" -v t1="$t1" 'BEGIN {
	printf "%s groups=%d delivered=%d peak_rss_mib=%.0f node_cpu_s=%.2f allocated_gb=%.2f wall_s=%.1f\n", b, g, d, h / 1024, (c1 - c0) / tck, (a1 - a0) / 1e9, t1 - t0 }'
