//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"
)

// workload is one comparison: run does all of it (starting and stopping each system) and adds
// its rows to the harness's results. A new workload (fan-out, a spike with Apache Flume, files,
// HDFS) is a function of this type added to workloads, with its own spec and, when it needs
// one, its own system (Flume: a start function like startKafka) and client (a runner like
// runProducerPerf); the report and the plots group rows by workload id.
type workload struct {
	id    string
	title string
	// setup says, for the report, what the workload's servers and topics are.
	setup string
	// consume: the rows are consumer fan-out rows (groups, no acks or latency), reported and
	// plotted as such.
	consume bool
	// flume: measured by scripts/benchflume against Apache Flume (flume.go); its subsection
	// and figures are benchflume's.
	flume bool
	run   func(ctx context.Context, h *harness) error
}

// workloads are run in this order.
var workloads = []workload{
	{
		id:    "W1",
		title: "one node, 100-byte records, acks=1 and acks=all, 1 and 4 producers",
		setup: "one node; a fresh topic of 6 partitions per measurement",
		run: func(ctx context.Context, h *harness) error {
			return h.produceComparison(ctx, produceSpec{workload: "W1", nodes: 1, partitions: 6, rf: 1,
				acks: []string{"1", "all"}, producers: []int{1, 4}})
		},
	},
	{
		id:    "W2",
		title: "three nodes on this machine, replication factor 3, acks=all, 1 and 4 producers",
		setup: "three nodes on 127.0.0.1; a fresh topic of 6 partitions with replication factor 3 per measurement; clients given all three addresses",
		run: func(ctx context.Context, h *harness) error {
			return h.produceComparison(ctx, produceSpec{workload: "W2", nodes: 3, partitions: 6, rf: 3,
				acks: []string{"all"}, producers: []int{1, 4}})
		},
	},
	{
		id:      "W3",
		title:   "one node, consumer fan-out: 1 and 10 consumer groups on a 6-partition topic, saturated and tailing",
		setup:   "saturated mode: one node; a topic of 6 partitions filled once per system (ProducerPerformance, acks=1, not reported), then read whole by 1 group, then by 10 groups at once, each group with one consumer and a name of its own, from the earliest offset, as fast as they can; no warm-up (the fill is one), -warmup does not apply",
		consume: true,
		run: func(ctx context.Context, h *harness) error {
			saturated, tailing, err := w3Modes(h.cfg.w3Modes)
			if err != nil {
				return err
			}
			if saturated {
				if err := h.fanOutComparison(ctx, fanOutSpec{workload: "W3", partitions: 6, groups: []int{1, 10}}); err != nil {
					return err
				}
			}
			if tailing {
				return h.tailComparison(ctx, tailSpec{workload: "W3", partitions: 6, groups: []int{0, 1, 10},
					rate: h.cfg.w3Rate, duration: h.cfg.w3Duration})
			}
			return nil
		},
	},
	{
		id:    "W4",
		title: "a spike at ten times the consumer's rate, Weir against Apache Flume (HTTP in, HTTP out)",
		flume: true,
		run:   func(ctx context.Context, h *harness) error { return h.flumeWorkload(ctx, "W4") },
	},
	{
		id:    "W5",
		title: "tailing files into rolling files, Weir against Apache Flume",
		flume: true,
		run:   func(ctx context.Context, h *harness) error { return h.flumeWorkload(ctx, "W5") },
	},
	{
		id:    "W6",
		title: "topic to HDFS (a MiniDFSCluster), Weir's HDFS sink against Apache Flume's",
		flume: true,
		run:   func(ctx context.Context, h *harness) error { return h.flumeWorkload(ctx, "W6") },
	},
}

// produceSpec is a producer throughput and latency comparison: every system is started with
// nodes nodes, and every combination of acks and producers is measured on a fresh topic.
type produceSpec struct {
	workload   string
	nodes      int
	partitions int32
	rf         int16
	acks       []string
	producers  []int
}

// produceComparison runs spec against Weir (--sync always), Apache Kafka and Weir (--sync
// never), in that order, h.cfg.rounds times. Against each system it runs ProducerPerformance
// for every case, then, on Weir, `weir bench produce` for every case. A failed measurement is
// a row with its error; a system that does not start ends the workload.
func (h *harness) produceComparison(ctx context.Context, spec produceSpec) error {
	systems := []system{weirSyncAlways, apacheKafka, weirSyncNever}
	for round := 1; round <= h.cfg.rounds; round++ {
		for _, sys := range systems {
			if err := h.produceAgainst(ctx, spec, round, sys); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *harness) produceAgainst(ctx context.Context, spec produceSpec, round int, sys system) error {
	if err := ctx.Err(); err != nil { // interrupted: start nothing more
		return err
	}
	h.progress("%s round %d: starting %s, %d node(s)", spec.workload, round, sys.name, spec.nodes)
	c, err := sys.start(ctx, h, spec.nodes)
	if err != nil {
		return fmt.Errorf("%s: %w", sys.name, err)
	}
	if err := h.warmUp(ctx, c, spec, round); err != nil {
		_ = c.stop()
		return fmt.Errorf("warming up %s: %w", sys.name, err)
	}
	clients := []string{clientProducerPerf}
	if sys.weir {
		clients = append(clients, clientWeirBench)
	}
	for _, client := range clients {
		for _, acks := range spec.acks {
			for _, producers := range spec.producers {
				if ctx.Err() != nil {
					_ = c.stop()
					return ctx.Err()
				}
				r := h.measureOne(ctx, c, spec, round, sys, client, acks, producers)
				h.results = append(h.results, r)
			}
		}
	}
	h.progress("%s round %d: stopping %s", spec.workload, round, sys.name)
	if err := c.stop(); err != nil {
		return fmt.Errorf("stopping %s: %w", sys.name, err)
	}
	if left := h.procs.alive(); len(left) > 0 {
		return fmt.Errorf("after stopping %s, processes still run: %v", sys.name, left)
	}
	return ctx.Err()
}

// warmUp sends h.cfg.warmup records with one ProducerPerformance (acks=1) to a topic of its
// own, not measured, so that the first measurement of a freshly started JVM does not also pay
// for its just-in-time compilation (Weir's nodes get the same, for the same conditions).
func (h *harness) warmUp(ctx context.Context, c *cluster, spec produceSpec, round int) error {
	if h.cfg.warmup <= 0 {
		return nil
	}
	topic := fmt.Sprintf("%s-r%d-warmup", strings.ToLower(spec.workload), round)
	if err := createTopic(ctx, c.bootstrap, topic, spec.partitions, spec.rf); err != nil {
		return err
	}
	m, err := h.runProducerPerf(ctx, c, topic, "1", 1, h.cfg.warmup)
	if err != nil {
		return err
	}
	h.progress("  warm-up (not reported): %.0f records/s", m.recordsPerSec)
	return nil
}

// measureOne creates a topic and runs one client on it while sampling the servers.
func (h *harness) measureOne(ctx context.Context, c *cluster, spec produceSpec, round int, sys system, client, acks string, producers int) result {
	r := result{workload: spec.workload, round: round, system: sys.name, client: client, acks: acks, producers: producers}
	short := map[string]string{clientProducerPerf: "pp", clientWeirBench: "wb"}[client]
	topic := fmt.Sprintf("%s-r%d-%s-acks%s-p%d", strings.ToLower(spec.workload), round, short, acks, producers)
	if err := createTopic(ctx, c.bootstrap, topic, spec.partitions, spec.rf); err != nil {
		r.err = err.Error()
		h.progress("  %s: %v", topic, err)
		return r
	}
	s := startSampler(c.servers())
	var m measure
	var err error
	switch client {
	case clientProducerPerf:
		m, err = h.runProducerPerf(ctx, c, topic, acks, producers, h.cfg.records)
	case clientWeirBench:
		m, r.cdf, err = h.runWeirBench(ctx, c, topic, acks, producers, h.cfg.records)
	}
	r.usage = s.stop()
	if err != nil {
		r.err = err.Error()
		h.progress("  %s %s acks=%s producers=%d: %v", sys.name, client, acks, producers, err)
		return r
	}
	r.measure = m
	if r.cdf == nil {
		r.cdf = percentileCDF(m)
	}
	h.progress("  %s %s acks=%s producers=%d: %.0f records/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms, RSS %d MiB, CPU %.1f s",
		sys.name, client, acks, producers, m.recordsPerSec, m.p50, m.p99, m.max, r.peakRSS>>20, r.cpu.Seconds())
	return r
}
