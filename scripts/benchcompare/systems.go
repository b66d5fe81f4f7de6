//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	kafkaToolsScript  = "scripts/kafka-tools/run.sh"
	kafkaServerScript = "scripts/kafka-server/run.sh"
	// kafkaVersion is the version in scripts/kafka-server/pom.xml and scripts/kafka-tools/pom.xml.
	kafkaVersion = "4.4.0"
	// defaultWeirPort: node i of Weir listens on -weir-port+10*(i-1) and the three ports after
	// it (client, cluster, gossip, Kafka); Apache Kafka on -kafka-port on (scripts/kafka-server's
	// KAFKA_PORT, 19092 by default).
	defaultWeirPort  = 17700
	defaultKafkaPort = 19092
	// startLimit bounds a system's start, topic creation included.
	startLimit = 3 * time.Minute
	// stopLimit is how long a stopping server may take before it is killed.
	stopLimit = 30 * time.Second
)

// system is one of the servers compared: how it is named in the tables and how to start it.
type system struct {
	name  string
	weir  bool // Weir's own client is run against it too
	start func(ctx context.Context, h *harness, nodes int) (*cluster, error)
}

// The systems of the produce workloads, in the order a round starts them.
var (
	weirSyncAlways = system{name: "Weir (--sync always)", weir: true, start: func(ctx context.Context, h *harness, nodes int) (*cluster, error) {
		return h.startWeir(ctx, nodes, "always")
	}}
	apacheKafka = system{name: "Apache Kafka " + kafkaVersion, start: func(ctx context.Context, h *harness, nodes int) (*cluster, error) {
		return h.startKafka(ctx, nodes)
	}}
	weirSyncNever = system{name: "Weir (--sync never)", weir: true, start: func(ctx context.Context, h *harness, nodes int) (*cluster, error) {
		return h.startWeir(ctx, nodes, "never")
	}}
)

// cluster is a running system.
type cluster struct {
	// bootstrap is the Kafka protocol address list, HOST:PORT,...
	bootstrap string
	// weirServers is the list for `weir --server` (empty for Apache Kafka).
	weirServers string
	// servers returns the pids of the server processes (the JVMs, for Apache Kafka).
	servers func() []int
	stop    func() error
}

// startWeir starts nodes `weir node` processes with --sync sync and a Kafka listener each,
// and waits until the Kafka listener reports all of them.
func (h *harness) startWeir(ctx context.Context, nodes int, sync string) (*cluster, error) {
	dir, err := os.MkdirTemp(h.work, "weir-"+sync+".")
	if err != nil {
		return nil, err
	}
	var cmds []*exec.Cmd
	var kafka, servers []string
	stop := func() error {
		var errs []error
		for _, c := range cmds {
			errs = append(errs, stopProcess(c, syscall.SIGTERM))
		}
		return errors.Join(errs...)
	}
	for i := 1; i <= nodes; i++ {
		base := h.cfg.weirPort + 10*(i-1)
		addr := func(off int) string { return fmt.Sprintf("127.0.0.1:%d", base+off) }
		args := []string{h.weirBin, "node", "--id", fmt.Sprintf("n%d", i), "--data", filepath.Join(dir, fmt.Sprintf("n%d", i)),
			"--listen", addr(1), "--http", "", "--cluster", addr(2), "--gossip", addr(3), "--kafka", addr(4),
			"--sync", sync, "--log-level", "warn"}
		if i > 1 {
			args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", h.cfg.weirPort+3))
		}
		h.note(args)
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
		if err != nil {
			_ = stop()
			return nil, err
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		err = h.procs.start(cmd)
		logf.Close()
		if err != nil {
			_ = stop()
			return nil, err
		}
		cmds = append(cmds, cmd)
		kafka, servers = append(kafka, addr(4)), append(servers, addr(1))
		if i == 1 && nodes > 1 {
			time.Sleep(time.Second) // the first node forms the cluster the others join
		}
	}
	c := &cluster{
		bootstrap:   strings.Join(kafka, ","),
		weirServers: strings.Join(servers, ","),
		servers: func() []int {
			var pids []int
			for _, cmd := range cmds {
				pids = append(pids, cmd.Process.Pid)
			}
			return pids
		},
		stop: stop,
	}
	if err := waitBrokers(ctx, c.bootstrap, nodes); err != nil {
		_ = stop()
		return nil, fmt.Errorf("weir --sync %s: %w (logs in %s)", sync, err, dir)
	}
	return c, nil
}

// startKafka starts scripts/kafka-server/run.sh with nodes nodes and reads the bootstrap
// address it prints once they serve.
func (h *harness) startKafka(ctx context.Context, nodes int) (*cluster, error) {
	args := []string{kafkaServerScript, fmt.Sprint(nodes)}
	h.note(args)
	logPath := filepath.Join(h.work, fmt.Sprintf("kafka-server-%d.%d.log", nodes, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = h.root
	cmd.Env = append(os.Environ(), "TMPDIR="+h.work, fmt.Sprintf("KAFKA_PORT=%d", h.cfg.kafkaPort))
	cmd.Stderr = logf
	line := &firstLine{ch: make(chan string, 1)}
	cmd.Stdout = line
	if err := h.procs.start(cmd); err != nil {
		return nil, err
	}
	// The script's pid is the one to signal: it stops the JVMs it started.
	stop := func() error { return stopProcess(cmd, syscall.SIGTERM) }
	var bootstrap string
	select {
	case bootstrap = <-line.ch:
	case <-time.After(startLimit):
	case <-ctx.Done():
	}
	if bootstrap == "" {
		_ = stop()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s %d did not print its address (its log: %s)", kafkaServerScript, nodes, logPath)
	}
	c := &cluster{
		bootstrap: bootstrap,
		servers:   func() []int { return children(cmd.Process.Pid) },
		stop:      stop,
	}
	if err := waitBrokers(ctx, bootstrap, nodes); err != nil {
		_ = stop()
		return nil, fmt.Errorf("apache kafka: %w", err)
	}
	return c, nil
}

// firstLine is a process's standard output that hands its first line to ch and drops the rest.
type firstLine struct {
	ch   chan string
	buf  []byte
	sent bool
}

func (w *firstLine) Write(p []byte) (int, error) {
	if !w.sent {
		w.buf = append(w.buf, p...)
		if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
			w.ch <- strings.TrimSpace(string(w.buf[:i]))
			w.sent, w.buf = true, nil
		}
	}
	return len(p), nil
}

// stopProcess sends sig to cmd's process, waits for it up to stopLimit, then kills it.
func stopProcess(cmd *exec.Cmd, sig syscall.Signal) error {
	_ = cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil // a server stopped by a signal exits non-zero; that is expected here
		}
		return err
	case <-time.After(stopLimit):
		for _, c := range children(cmd.Process.Pid) {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within %v: killed", cmd.Path, stopLimit)
	}
}

// kafkaClient opens a franz-go client on a Kafka protocol address list.
func kafkaClient(bootstrap string) (*kgo.Client, error) {
	return kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
}

// waitBrokers waits until a Metadata request to bootstrap lists n brokers.
func waitBrokers(ctx context.Context, bootstrap string, n int) error {
	cl, err := kafkaClient(bootstrap)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, startLimit)
	defer cancel()
	seen := 0
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(rctx, cl)
		rcancel()
		if err == nil {
			seen = len(resp.Brokers)
			if seen >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d brokers seen at %s: %w (last error: %v)", seen, n, bootstrap, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createTopic creates topic with partitions partitions of rf replicas through the Kafka
// protocol (both systems serve CreateTopics) and waits until every partition has a leader and
// its whole replica set in sync.
func createTopic(ctx context.Context, bootstrap, topic string, partitions int32, rf int16) error {
	cl, err := kafkaClient(bootstrap)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, startLimit)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30_000
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = topic, partitions, rf
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	for {
		ready, why := topicReady(ctx, cl, topic, partitions, rf)
		if ready {
			time.Sleep(time.Second) // let the new leaders settle, as scripts/bench-cluster.sh does
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s not ready: %s: %w", topic, why, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// topicReady reports whether every partition of topic has a leader and rf replicas in sync
// (a system that reports no ISR is taken at its leaders), or why not.
func topicReady(ctx context.Context, cl *kgo.Client, topic string, partitions int32, rf int16) (bool, string) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, cl)
	if err != nil {
		return false, err.Error()
	}
	if len(resp.Topics) != 1 {
		return false, fmt.Sprintf("%d topics in the answer", len(resp.Topics))
	}
	mt := resp.Topics[0]
	if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
		return false, err.Error()
	}
	if int32(len(mt.Partitions)) != partitions {
		return false, fmt.Sprintf("%d of %d partitions", len(mt.Partitions), partitions)
	}
	for _, p := range mt.Partitions {
		if p.Leader < 0 || p.ErrorCode != 0 {
			return false, fmt.Sprintf("partition %d: leader %d, error %d", p.Partition, p.Leader, p.ErrorCode)
		}
		if len(p.ISR) > 0 && len(p.ISR) < int(rf) {
			return false, fmt.Sprintf("partition %d: %d of %d replicas in sync", p.Partition, len(p.ISR), rf)
		}
	}
	return true, ""
}
