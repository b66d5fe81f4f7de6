// Package flow defines Weir flows in Go and runs them in an embedded node, the way a Flume agent
// runs its configured sources, channels and sinks:
//
//	node, _ := flow.StartNode(flow.NodeConfig{DataDir: "data"})
//	defer node.Close()
//	rt := flow.New(node)
//	rt.Source("gen", seqSource, "events", flow.Intercept(dropEmpty), flow.Partitions(3))
//	rt.Sink("print", loggerSink, flow.FromTopics("events"), flow.Group("printers"))
//	...
//	rt.Stop()
//
// Each source and each sink runs in a supervised actor of the node: a crash restarts it from its
// committed position (sources) or its group's committed offsets (sinks). A source's position is
// committed only after the topic acknowledged its records (acks=all), and a sink's offsets only
// after its Write returned; see package connectors for the delivery guarantee.
//
// In a cluster, every node runs the same program and so defines the same flows; the cluster
// runs each source and each sink on one of the nodes that define it, and moves it to another
// when its node is drained or has been away for longer than the node's --dead-after (it resumes
// there from its committed position or offsets). A source bound to its node's local files
// (Bound) stays on that node and resumes when the node comes back.
//
// Concurrency: a Runtime's methods may be called from any goroutine.
package flow

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/connectors"
)

// Node is an embedded Weir node.
type Node = actors.Node

// NodeConfig configures an embedded node (see actors.NodeConfig).
type NodeConfig = actors.NodeConfig

// StartNode starts an embedded node.
func StartNode(cfg NodeConfig) (*Node, error) { return actors.StartNode(cfg) }

// Runtime runs flows in a node.
type Runtime struct {
	node *Node
	mu   sync.Mutex
	pids map[string]*actor.PID
}

// New returns a runtime for flows in node.
func New(node *Node) *Runtime { return &Runtime{node: node, pids: map[string]*actor.PID{}} }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)

// SourceOption configures a source flow.
type SourceOption interface{ applySource(*sourceOpts) }

// SinkOption configures a sink flow.
type SinkOption interface{ applySink(*sinkOpts) }

type sourceOpts struct {
	cfg        actors.SourceConfig
	partitions int32
	replicas   int32
	bound      bool
}

type sinkOpts struct{ cfg actors.SinkConfig }

type sourceOpt func(*sourceOpts)

func (f sourceOpt) applySource(o *sourceOpts) { f(o) }

type sinkOpt func(*sinkOpts)

func (f sinkOpt) applySink(o *sinkOpts) { f(o) }

// Intercept adds interceptors, applied in order to every record before it leaves the node.
func Intercept(ics ...connectors.Interceptor) SourceOption {
	return sourceOpt(func(o *sourceOpts) { o.cfg.Interceptors = append(o.cfg.Interceptors, ics...) })
}

// Partitions creates the topic with n partitions if it does not exist (default 1).
func Partitions(n int32) SourceOption {
	return sourceOpt(func(o *sourceOpts) { o.partitions = n })
}

// Replicas creates the topic with replication factor n if it does not exist (default 1). In a
// cluster with fewer nodes, the source waits up to 30 s for more to join.
func Replicas(n int32) SourceOption {
	return sourceOpt(func(o *sourceOpts) { o.replicas = n })
}

// Bound keeps the source on the node that defined it first (one reading that node's own files):
// in a cluster it does not move when its node is away, and resumes when the node comes back.
func Bound() SourceOption {
	return sourceOpt(func(o *sourceOpts) { o.bound = true })
}

// AcksLeader answers the source when the leader appended its records instead of when they are
// committed: faster, and on one node as durable (the node's log policy decides).
func AcksLeader() SourceOption {
	return sourceOpt(func(o *sourceOpts) { o.cfg.Acks = wire.AcksLeader })
}

// FromTopics names the topics a sink reads.
func FromTopics(topics ...string) SinkOption {
	return sinkOpt(func(o *sinkOpts) { o.cfg.Topics = append(o.cfg.Topics, topics...) })
}

// FetchBytes bounds one fetch of the sink (default 1 MiB): it is also the most a crash can make
// the sink write twice.
func FetchBytes(n int32) SinkOption {
	return sinkOpt(func(o *sinkOpts) { o.cfg.MaxBytes = n })
}

// Group names the sink's consumer group (default: "sink:" + the flow name).
func Group(g string) SinkOption {
	return sinkOpt(func(o *sinkOpts) { o.cfg.Group = g })
}

// Source runs `src -> interceptors -> topic` under the name flow, creating the topic if needed.
func (rt *Runtime) Source(name string, src connectors.Source, topic string, opts ...SourceOption) error {
	return rt.source(name, src, []string{topic}, nil, opts)
}

// SourceTo runs `src -> interceptors -> selector -> topics` under the name flow: each record
// goes to the topics sel picks for it (package connectors/selector: replicating, or
// multiplexing by a header), and the flow creates every topic sel names that does not exist
// (Partitions and Replicas apply to each). The source's position is committed once every topic
// acknowledged a batch, and kept under sel's first topic (a flow whose first topic changed finds
// it under its other topics).
func (rt *Runtime) SourceTo(name string, src connectors.Source, sel connectors.Selector, opts ...SourceOption) error {
	if sel == nil {
		return fmt.Errorf("flow %s: no selector", name)
	}
	topics := sel.Topics()
	if len(topics) == 0 {
		return fmt.Errorf("flow %s: the selector names no topic", name)
	}
	for i, t := range topics {
		if slices.Contains(topics[:i], t) {
			return fmt.Errorf("flow %s: the selector names topic %q twice", name, t)
		}
	}
	return rt.source(name, src, topics, sel, opts)
}

func (rt *Runtime) source(name string, src connectors.Source, topics []string, sel connectors.Selector, opts []SourceOption) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("flow %q: use 1 to 100 letters, digits, '.', '_' or '-'", name)
	}
	o := sourceOpts{cfg: actors.SourceConfig{Flow: name, Source: src, Topic: topics[0], Selector: sel}, partitions: 1, replicas: 1}
	for _, opt := range opts {
		opt.applySource(&o)
	}
	for _, topic := range topics {
		if _, ok := rt.node.Topic(topic); !ok {
			if err := rt.node.CreateReplicatedTopic(topic, o.partitions, o.replicas, wire.TopicConfig{}); err != nil && !errors.Is(err, wire.ErrTopicExists) {
				return fmt.Errorf("flow %s: topic %s: %w", name, topic, err)
			}
		}
	}
	return rt.spawn("flow/"+name+"/source", actors.NewSourceProps(rt.node, o.cfg), o.bound)
}

// Sink runs `topics -> consumer group -> sink` under the name flow. Several sinks in one group
// share the topics' partitions.
func (rt *Runtime) Sink(name string, sink connectors.Sink, opts ...SinkOption) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("flow %q: use 1 to 100 letters, digits, '.', '_' or '-'", name)
	}
	o := sinkOpts{cfg: actors.SinkConfig{Flow: name, Sink: sink}}
	for _, opt := range opts {
		opt.applySink(&o)
	}
	if len(o.cfg.Topics) == 0 {
		return fmt.Errorf("flow %s: sink reads no topic (use flow.FromTopics)", name)
	}
	// In a cluster a topic created through another node may not have reached this one's table
	// yet: wait for them all, 30 s at most.
	deadline := time.Now()
	if rt.node.Clustered() {
		deadline = deadline.Add(30 * time.Second)
	}
	for _, t := range o.cfg.Topics {
		for {
			if _, ok := rt.node.Topic(t); ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("flow %s: topic %q does not exist", name, t)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if o.cfg.Group == "" {
		o.cfg.Group = "sink:" + name
	}
	return rt.spawn("flow/"+name+"/sink", actors.NewSinkProps(rt.node, o.cfg), false)
}

func (rt *Runtime) spawn(id string, props *actor.Props, bound bool) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if _, ok := rt.pids[id]; ok {
		return fmt.Errorf("%s already runs", id)
	}
	pid, err := rt.node.RunFlow(id, props, bound)
	if err != nil {
		return err
	}
	rt.pids[id] = pid // nil in a cluster: the flow runs where the cluster places it
	return nil
}

// Stop stops every flow of the runtime and waits for them (sinks leave their groups). In a
// cluster, the flows this node ran move to other nodes that define them.
func (rt *Runtime) Stop() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var wg sync.WaitGroup
	for id, pid := range rt.pids {
		if pid != nil {
			rt.node.Stop(pid)
		} else {
			wg.Add(1)
			go func() { defer wg.Done(); rt.node.StopFlow(id) }() // each waits up to 2 s for __meta
		}
		delete(rt.pids, id)
	}
	wg.Wait()
}
