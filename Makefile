# Weir: the two commands a newcomer needs are `make run` and `make test` (see README.md).
GO          ?= go
BIN         := bin/weir
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        := ./...
# Benchmarks: BENCH selects them, BENCHTIME sets how long each runs.
BENCH       ?= .
BENCHTIME   ?= 2s
FUZZTIME    ?= 30s

.PHONY: build run test deps unit lint vet fmt bench bench-cluster bench-sources bench-sinks bench-flume bench-compare fuzz soak clean

build:
	$(GO) build -o $(BIN) ./cmd/weir

# Runs an embedded single node (data in ./data/node, client port 127.0.0.1:7420, metrics on
# 127.0.0.1:7421) with a demo flow: generator -> interceptor -> topic "demo" -> printer.
run: build
	./$(BIN) demo --data ./data/node

# Everything CI runs: vet, staticcheck, and every test under the race detector (fuzz targets run
# their seed corpora).
test: deps lint unit

# Debian packages the tests drive as real peers, installed with apt-get where missing: nc
# (netcat-openbsd) for the netcat source, curl for the http source, logger (bsdutils) for syslog,
# kcat for the Kafka protocol listener; a JDK (openjdk-17-jdk-headless) and Maven (maven) for the
# HDFS MiniDFSCluster and Apache Kafka's Java tools (scripts/*/run.sh).
deps:
	@missing=""; \
	command -v nc >/dev/null || missing="$$missing netcat-openbsd"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v logger >/dev/null || missing="$$missing bsdutils"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v javac >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt-get)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q $$missing >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; } || \
		{ echo "could not install$$missing: install them, then run make test again"; exit 1; }; \
	fi

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint: vet
	$(GO) run $(STATICCHECK) $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')

# Benchmarks are not timed tests: run them on a quiet machine and record results with the
# command in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./storage/...

# The cluster benchmarks of issue 4: throughput and latency of three nodes at replication factor
# 3 (scripts/bench-cluster.sh), then failover time over 10 leader kills.
bench-cluster: build
	BIN=$(BIN) ./scripts/bench-cluster.sh 3
	WEIR_FAILOVER_KILLS=10 $(GO) test -count=1 -v -run 'TestClusterFailoverTime' ./cmd/weir/

# The source benchmarks of issue 5: taildir, syslog over UDP and http, each end to end into a
# topic of an embedded node (connectors/source/bench), SOURCE_RECORDS records each.
SOURCE_RECORDS ?= 1000000
bench-sources:
	$(GO) test -run '^$$' -bench . -benchtime $(SOURCE_RECORDS)x ./connectors/source/bench/

# The sink benchmarks: topic (6 partitions, records of 1 KiB) -> HDFS (a MiniDFSCluster, 1 and 3
# members), topic (SINK_RECORDS records) -> file sink end to end (connectors/sink/bench), then the
# file sink alone (1 MiB Writes).
SINK_RECORDS ?= 500000
bench-sinks:
	$(GO) test -run '^$$' -bench TopicToHDFS -benchtime 300000x ./connectors/sink/hdfs/
	$(GO) test -run '^$$' -bench . -benchtime $(SINK_RECORDS)x ./connectors/sink/bench/
	$(GO) test -run '^$$' -bench BenchmarkWrite -benchtime 500x ./connectors/sink/file/

# The comparison of issues 7 and 8 (scripts/benchcompare), one harness for W1 to W6: Weir and
# Apache Kafka 4.4 (KRaft, scripts/kafka-server, fetched from Maven Central) started in turn on
# this machine and driven by the same clients (W1 and W2 produce, W3 consumer fan-out); Weir and
# Apache Flume 1.11.0 (scripts/flume, from Maven Central) through scripts/benchflume (W4 a spike
# over HTTP, W5 tailing files into rolling files, W6 a topic into HDFS, a MiniDFSCluster of
# scripts/hdfs-minicluster). Rewrites its section of docs/benchmarks.md, docs/bench/compare.jsonl
# and the plots in docs/bench/. Needs Java 17 and Maven. BENCH_COMPARE_FLAGS: -quick is a smoke
# test of every workload; -only w1,w6 selects workloads; -flume-args passes flags to
# scripts/benchflume (-w5-mb, -w6-mb, ...).
BENCH_COMPARE_FLAGS ?=
bench-compare:
	$(GO) run ./scripts/benchcompare $(BENCH_COMPARE_FLAGS)

# The workloads against Apache Flume alone (W4, W5, W6): make bench-compare with -only.
# FLUME_ARGS adds flags (-quick for a run of a few minutes).
FLUME_ARGS ?=
bench-flume:
	$(GO) run ./scripts/benchcompare -only w4,w5,w6 $(FLUME_ARGS)

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@for p in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

# soak runs the randomized crash tests with many more seeds than make test does, the cluster
# kill test for 70 s instead of 15, and the other cluster fault tests three times each.
soak:
	WEIR_CRASH_SEEDS=20000 $(GO) test -count=1 -run 'TestCrashAnywhere' ./connectors/sink/file/
	WEIR_CLUSTER_SOAK=70s $(GO) test -count=1 -v -run 'TestClusterKillRandomNodes' ./cmd/weir/
	$(GO) test -count=3 -v -run 'TestClusterMovesReplicas|TestClusterNetworkPartition|TestClusterFlowsMove' ./cmd/weir/

clean:
	rm -rf bin data
