package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// NodeConfig configures a node.
type NodeConfig struct {
	// DataDir holds every partition's log: DataDir/meta, DataDir/offsets, DataDir/topics/...
	DataDir string
	// ClientAddr is where the client port listens ("127.0.0.1:7420"; port 0 picks one; empty:
	// no client port, for a node embedded in a program that uses it in-process).
	ClientAddr string
	// KafkaAddr is where the Kafka protocol listener listens (empty: none; see docs/kafka.md),
	// KafkaAdvertise the host:port Kafka clients are told to connect to (default: the listener's
	// address, which must then name a host, and in a cluster a port), and KafkaSecurity its TLS
	// and SASL/PLAIN users.
	KafkaAddr      string
	KafkaAdvertise string
	KafkaSecurity  KafkaSecurity
	// KafkaFetchMemory bounds the bytes that the Kafka listener's fetches read and hold in
	// their answers until written, over all connections (DefaultKafkaFetchMemory if 0 or
	// less): a fetch reads less, or waits, when the rest is in use (docs/kafka.md).
	KafkaFetchMemory int
	// HTTPAddr serves /metrics (Prometheus text) and /healthz; empty: none.
	HTTPAddr string
	// Profiling also serves Go's runtime profiles under /debug/pprof/ at HTTPAddr (off by
	// default: they reveal the program's internals to whoever can reach the port).
	Profiling bool
	// NodeID names the node in metadata; "node-1" by default.
	NodeID string
	// Log is the template of every partition's log config; Sync defaults to SyncAlways.
	Log storage.Config
	// Supervisor bounds actor restarts.
	Supervisor SupervisorConfig
	// Replica tunes partition replicas (Topic, Partition, Dir, Log and state machines are set
	// per partition).
	Replica ReplicaConfig
	// Server tunes the client port.
	Server ServerConfig
	// Coordinator tunes consumer-group coordinators.
	Coordinator CoordinatorConfig
	// OffsetsCheckpointRecords is how many commits __offsets takes between checkpoints of its
	// state, after which its log before the checkpoint is deleted: 100,000 by default, a
	// negative value never.
	OffsetsCheckpointRecords int64
	// Logger receives the node's logs; discarded if nil.
	Logger *slog.Logger
	// Faults, if set, is called with the actor kind and a point name at fault-injection points
	// (tests make it panic there).
	Faults func(kind, point string)
	// Cluster, if set, makes the node a member of a cluster (docs/cluster.md); nil: the node
	// runs alone.
	Cluster *ClusterConfig
}

// rootName is the node's root supervisor actor; every other actor is its child, with an id
// like "node/partition/orders/0".
const rootName = "node"

// Node is one Weir node: an actor system under a root supervisor, with the __meta and __offsets
// partitions, the topics' partitions, group coordinators and flows, a client port and an HTTP
// port for metrics.
type Node struct {
	cfg     NodeConfig
	system  *actor.ActorSystem
	root    *actor.PID
	metrics *Metrics
	sup     *supervisor
	logger  *slog.Logger
	server  *Server
	kafka   *kafkaListener
	http    *http.Server
	httpLn  net.Listener
	httpWG  sync.WaitGroup

	mu     sync.RWMutex
	topics map[string]*topicEntry
	groups map[string]knownCoordinator // by group (coordinatorFor)
	// idleStops are closed when the root stops the coordinator of their group for being idle
	// (one per coordinator this node's root runs): see Server.group.
	idleStops map[string]chan struct{}
	ready     chan struct{} // closed when __meta has replayed and its topics are spawned
	once      sync.Once

	closeOnce sync.Once // Close's work runs once; later and concurrent calls wait for it
	// actorsDone is closed once Close has stopped every actor: a request still waiting for an
	// answer then waits in vain (one that reached an actor as it stopped is dropped unanswered).
	actorsDone chan struct{}
	// awaiting are the futures await waits on without a goroutine of its own; Close answers
	// them nodeClosed once the actors stopped. closedAwaits is set then.
	awaitMu      sync.Mutex
	awaiting     map[*actor.Future]struct{}
	closedAwaits bool

	// rc sends and requests from outside actors; in a cluster it wraps messages bound for other
	// nodes (the system's own Root must stay plain: protoactor's remote sends through it).
	rc      *actor.RootContext
	raftID  uint64        // this node's id in raft groups (1 when alone)
	cluster *clusterState // nil when alone
	// flowDefs: the flow actors this node defines, by actor name (flows.go; cluster only).
	flowDefs map[string]flowDef
}

type topicEntry struct {
	meta TopicMeta
	pids []*actor.PID
}

// StartNode starts a node and waits until its topics are open.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("node: DataDir is empty")
	}
	if err := cfg.checkKafkaAddrs(); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-1"
	}
	if cfg.KafkaFetchMemory <= 0 {
		cfg.KafkaFetchMemory = DefaultKafkaFetchMemory
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Supervisor.MaxRestarts == 0 {
		cfg.Supervisor = DefaultSupervisorConfig()
	}
	if cfg.Log.SegmentBytes == 0 {
		cfg.Log = storage.DefaultConfig()
	}
	if err := cfg.Log.Validate(); err != nil {
		return nil, fmt.Errorf("node: log config: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "topics"), 0o755); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var err error
	n := &Node{
		cfg:     cfg,
		metrics: NewMetrics(),
		logger:  cfg.Logger,
		topics:  map[string]*topicEntry{},
		ready:   make(chan struct{}),

		actorsDone: make(chan struct{}),
	}
	if n.raftID, err = loadNodeID(cfg.DataDir, cfg.Cluster != nil); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.sup = newSupervisor(cfg.Supervisor, cfg.Logger, n.metrics)
	n.system = actor.NewActorSystem(actor.WithDeveloperSupervisionLogging(os.Getenv("WEIR_DEBUG_SUPERVISION") != ""), actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return cfg.Logger.With("lib", "protoactor")
	}))
	n.rc = n.system.Root
	if cfg.Cluster != nil {
		n.rc = actor.NewRootContext(n.system, nil, wrapRemote)
		if err := n.startCluster(); err != nil {
			n.system.Shutdown()
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	root, err := n.system.Root.SpawnNamed(withRemote(actor.PropsFromProducer(func() actor.Actor { return &rootActor{n: n} },
		actor.WithSupervisor(n.sup))), rootName)
	if err != nil {
		n.stopCluster()
		n.stopRemote()
		return nil, fmt.Errorf("node: %w", err)
	}
	n.root = root
	select {
	case <-n.ready:
	case <-time.After(30 * time.Second):
		n.system.Root.StopFuture(root).Wait()
		n.stopCluster()
		n.stopRemote()
		return nil, errors.New("node: __meta did not start within 30 s (see the log)")
	}
	if cfg.ClientAddr != "" {
		s, err := newServer(n, cfg.ClientAddr, cfg.Server)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.server = s
	}
	if cfg.KafkaAddr != "" {
		k, err := newKafkaListener(n, cfg.KafkaAddr, cfg.Server, cfg.KafkaSecurity, cfg.KafkaFetchMemory)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.kafka = k
	}
	if cfg.HTTPAddr != "" {
		if err := n.startHTTP(cfg.HTTPAddr); err != nil {
			n.Close()
			return nil, err
		}
	}
	cfg.Logger.Info("node started", "id", cfg.NodeID, "data", cfg.DataDir, "client", n.ClientAddr(), "http", n.HTTPAddr())
	return n, nil
}

// ClientAddr is the client port's address ("" if none).
func (n *Node) ClientAddr() string {
	if n.server == nil {
		return ""
	}
	return n.server.Addr()
}

// KafkaAddr is the Kafka protocol listener's address ("" if none).
func (n *Node) KafkaAddr() string {
	if n.kafka == nil {
		return ""
	}
	return n.kafka.Addr()
}

// HTTPAddr is the metrics port's address ("" if none).
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Metrics returns the node's metrics.
func (n *Node) Metrics() *Metrics { return n.metrics }

// System is the node's actor system (flows spawn their actors in it).
func (n *Node) System() *actor.ActorSystem { return n.system }

// Root is the root supervisor's PID.
func (n *Node) Root() *actor.PID { return n.root }

// Logger is the node's logger.
func (n *Node) Logger() *slog.Logger { return n.logger }

// Close stops the client and HTTP ports, then every actor (closing every log), and waits. It
// may be called more than once and from several goroutines: every call returns once the node
// is closed.
func (n *Node) Close() error {
	n.closeOnce.Do(n.close)
	return nil
}

// close stops taking requests, then stops the actors, which answers the requests they hold
// (a long-polling fetch, a join waiting for a rebalance) at once, and only then waits for the
// client port's goroutines, which wait for those answers.
func (n *Node) close() {
	if n.server != nil {
		n.server.stop()
	}
	if n.kafka != nil {
		n.kafka.stop()
	}
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.http.Shutdown(ctx)
		cancel()
		n.httpWG.Wait()
	}
	n.stopCluster()
	if n.root != nil {
		_ = n.system.Root.StopFuture(n.root).Wait()
	}
	if n.actorsDone != nil {
		close(n.actorsDone)
	}
	n.awaitMu.Lock()
	n.closedAwaits = true
	for f := range n.awaiting {
		n.system.Root.Send(f.PID(), nodeClosed{})
	}
	n.awaiting = nil
	n.awaitMu.Unlock()
	if n.server != nil {
		n.server.wait()
	}
	if n.kafka != nil {
		n.kafka.wait()
	}
	n.stopRemote()
	n.system.Shutdown()
}

func (n *Node) startHTTP(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: http: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		failed := n.sup.Failed()
		if len(failed) == 0 {
			fmt.Fprintln(w, "ok")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		ids := make([]string, 0, len(failed))
		for id := range failed {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Fprintf(w, "failed %s: %s\n", id, failed[id])
		}
	})
	if n.cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	n.httpLn = ln
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.httpWG.Add(1)
	go func() {
		defer n.httpWG.Done()
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http", "err", err)
		}
	}()
	return nil
}

// Partition returns the PID of a partition's replica on this node.
func (n *Node) Partition(topic string, p int32) (*actor.PID, error) {
	switch topic {
	case MetaTopic:
		return n.internalPID("meta"), nil
	case OffsetsTopic:
		return n.internalPID("offsets"), nil
	}
	n.mu.RLock()
	t, ok := n.topics[topic]
	n.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("topic %q: %w", topic, errUnknownTopic)
	}
	if p < 0 || p >= t.meta.Partitions {
		return nil, fmt.Errorf("topic %q has %d partitions, not %d: %w", topic, t.meta.Partitions, p, errUnknownPartition)
	}
	if n.cluster == nil {
		if t.pids[p] == nil { // its spawn failed (logged)
			return nil, fmt.Errorf("topic %q partition %d is not running: %w", topic, p, errNoReplica)
		}
		return t.pids[p], nil
	}
	// In a cluster: the leader's replica if this node knows it, else this node's replica
	// (which forwards to its leader), else a live replica elsewhere (which forwards).
	name := fmt.Sprintf("%s/partition/%s/%d", rootName, topic, p)
	if t.pids[p] != nil {
		if lead := n.leaderOf(partitionGroup(topic, p)); lead != 0 && lead != n.raftID {
			if addr := n.peerAddr(lead); addr != "" {
				return actor.NewPID(addr, name), nil
			}
		}
		return t.pids[p], nil
	}
	for _, id := range t.meta.replicasOf(p) {
		if addr := n.peerAddr(id); addr != "" {
			return actor.NewPID(addr, name), nil
		}
	}
	return nil, fmt.Errorf("topic %q partition %d: no replica is on a live node: %w", topic, p, errNoReplica)
}

// GroupLag is how many committed records of topic lie beyond group's committed offsets, summed
// over its partitions (a partition where the group committed nothing counts from its log start):
// zero once a consumer group, or a flow's sink (group "sink:<flow>"), has committed everything
// the topic holds.
func (n *Node) GroupLag(group, topic string) (int64, error) {
	meta, ok := n.Topic(topic)
	if !ok {
		return 0, fmt.Errorf("topic %q does not exist", topic)
	}
	return n.metrics.groupLag(group, topic, meta.Partitions)
}

// Topic returns a topic's metadata.
func (n *Node) Topic(name string) (TopicMeta, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	t, ok := n.topics[name]
	if !ok {
		return TopicMeta{}, false
	}
	return t.meta, true
}

// TopicNames lists the topics, sorted.
func (n *Node) TopicNames() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, 0, len(n.topics))
	for name := range n.topics {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

var (
	errUnknownTopic     = errors.New("unknown topic")
	errUnknownPartition = errors.New("unknown partition")
	errNoReplica        = errors.New("partition unavailable")
)

func (n *Node) childPID(name string) *actor.PID {
	return actor.NewPID(n.system.Address(), rootName+"/"+name)
}

func (n *Node) fault(kind string) func(string) {
	return func(point string) {
		if n.cfg.Faults != nil {
			n.cfg.Faults(kind, point)
		}
	}
}

// replicaConfig is the config of one partition replica on this node.
func (n *Node) replicaConfig(topic string, p int32, dir string) ReplicaConfig {
	c := n.cfg.Replica
	c.Topic, c.Partition, c.Dir = topic, p, dir
	c.Log = n.cfg.Log
	c.Metrics = n.metrics
	c.Logger = n.logger
	c.Faults = n.fault("partition")
	n.clusterReplica(&c)
	return c
}

// props adds what a node's actors need to talk across nodes, when the node is in a cluster.
func (n *Node) props(p *actor.Props) *actor.Props {
	if n.cluster == nil {
		return p
	}
	return withRemote(p)
}

// defaultRetentionEvery is how often a partition applies its topic's retention when the node
// sets no period (NodeConfig.Replica.RetentionEvery).
const defaultRetentionEvery = time.Minute

// topicReplicaConfig is replicaConfig with the topic's own settings over the node's: retention
// (wire.TopicConfig). A topic that sets a retention age rolls its segments at that age at the
// latest, since retention deletes only sealed segments.
func (n *Node) topicReplicaConfig(tm TopicMeta, p int32, dir string) ReplicaConfig {
	c := n.replicaConfig(tm.Name, p, dir)
	switch tc := tm.Config; {
	case tc.RetentionMs > 0:
		c.Log.RetentionAge = time.Duration(tc.RetentionMs) * time.Millisecond
		every := c.RetentionEvery
		if every == 0 {
			every = defaultRetentionEvery
		}
		// At the retention age at the latest, but not more often than retention runs (a tiny
		// age would roll a segment per append); never later than the node's segment age.
		if age := max(c.Log.RetentionAge, every); c.Log.SegmentAge == 0 || c.Log.SegmentAge > age {
			c.Log.SegmentAge = age
		}
	case tc.RetentionMs == wire.RetentionUnlimited:
		c.Log.RetentionAge = 0
	}
	switch tc := tm.Config; {
	case tc.RetentionBytes > 0:
		c.Log.RetentionBytes = tc.RetentionBytes
	case tc.RetentionBytes == wire.RetentionUnlimited:
		c.Log.RetentionBytes = 0
	}
	if (c.Log.RetentionAge > 0 || c.Log.RetentionBytes > 0) && c.RetentionEvery == 0 {
		c.RetentionEvery = defaultRetentionEvery
	}
	return c
}

// CreateTopicWithConfig is CreateTopic with the topic's own settings (wire.TopicConfig).
func (n *Node) CreateTopicWithConfig(name string, partitions int32, cfg wire.TopicConfig) error {
	return n.CreateReplicatedTopic(name, partitions, 1, cfg)
}

// CreateReplicatedTopic is CreateTopicWithConfig with a replication factor. In a cluster that
// has fewer nodes than replicas it waits up to 30 s for more to join (flows create their topics
// as every node of a cluster starts).
func (n *Node) CreateReplicatedTopic(name string, partitions, replicas int32, cfg wire.TopicConfig) error {
	if e := n.topicCommand(&CreateTopic{Name: name, Partitions: partitions, Replicas: replicas, Config: cfg}, name, true, true, 30*time.Second); e != nil {
		return e
	}
	return nil
}

// rootActor is the root supervisor. It owns the internal partitions and spawns and stops the
// topics' partitions as the topic table in __meta changes.
type rootActor struct {
	n            *Node
	running      map[string]*topicEntry
	coordinators map[string]bool // groups whose coordinator this root spawned
	// generations are the last generations of groups whose coordinator stopped for being idle
	// (with a generation), for their next coordinator.
	generations  map[string]int32
	gcDone       bool
	ticker       *ticker
	orphanChecks map[string]bool       // partitions ("topic/p") being checked (rebalance.go)
	dropping     map[string]bool       // partitions whose replica here is stopped for a second check
	flowTable    []FlowMeta            // the flows as __meta last placed them
	flowPIDs     map[string]*actor.PID // the flow actors __meta placed here, running
	stopping     map[string]bool       // flow actors the root stops (by PID id)
	withdrawn    map[string]bool       // flows this node gave up (flows.go)
	confirming   bool                  // a request for the __meta leader's flow table is out
}

func (a *rootActor) Receive(ctx actor.Context) {
	n := a.n
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.running = map[string]*topicEntry{}
		a.coordinators = map[string]bool{}
		a.orphanChecks = map[string]bool{}
		a.dropping = map[string]bool{}
		a.flowPIDs = map[string]*actor.PID{}
		a.stopping = map[string]bool{}
		a.withdrawn = map[string]bool{}
		if n.cluster != nil {
			a.ticker = startTicker(ctx.ActorSystem(), ctx.Self(), rootTickEvery, rootTick{})
		}
		meta := n.replicaConfig(MetaTopic, 0, filepath.Join(n.cfg.DataDir, "meta"))
		meta.Log.Sync = storage.SyncAlways
		meta.Log.RetentionBytes, meta.Log.RetentionAge = 0, 0 // the state is rebuilt from all of it
		meta.Faults = n.fault("meta")
		self := ctx.Self()
		system := ctx.ActorSystem()
		meta.NewStateMachine = func() StateMachine {
			ms := newMetaState(1, func(t Topics) { system.Root.Send(self, &t) })
			if n.cluster != nil {
				ms.nodes = n.placementNodes
			}
			return ms
		}
		// Only a node with no one to join (no --join, no remembered peers) starts a cluster: a
		// node that joined once must never bootstrap a second __meta of its own.
		joining := n.cluster != nil && n.cluster.joining
		meta.Join = joining
		if _, err := ctx.SpawnNamed(n.props(NewReplicaProps(meta)), "meta"); err != nil {
			panic(err)
		}
		offs := n.replicaConfig(OffsetsTopic, 0, filepath.Join(n.cfg.DataDir, "offsets"))
		offs.Log.Sync = storage.SyncAlways
		// Checkpoints, not retention, shorten __offsets; small segments let them free space.
		offs.Log.RetentionBytes, offs.Log.RetentionAge = 0, 0
		if offs.Log.SegmentBytes <= 0 || offs.Log.SegmentBytes > 16<<20 {
			offs.Log.SegmentBytes = 16 << 20
		}
		switch offs.CheckpointRecords = n.cfg.OffsetsCheckpointRecords; {
		case offs.CheckpointRecords == 0:
			offs.CheckpointRecords = 100_000
		case offs.CheckpointRecords < 0:
			offs.CheckpointRecords = 0
		}
		offs.Faults = n.fault("offsets")
		offs.NewStateMachine = func() StateMachine {
			st := newOffsetsState(n.metrics.groupOffsets, n.metrics.forgetGroupTopic)
			st.forgetGroup = n.metrics.forgetGroup
			return st
		}
		offs.Join = joining
		if _, err := ctx.SpawnNamed(n.props(NewReplicaProps(offs)), "offsets"); err != nil {
			panic(err)
		}
	case *actor.Stopping, *actor.Restarting:
		a.ticker.stop()
	case *Topics:
		a.reconcile(ctx, m)
		a.flowTable = m.Flows
		a.reconcileFlows(ctx)
	case flowsChanged:
		a.reconcileFlows(ctx)
		if ctx.Sender() != nil {
			ctx.Respond(&ProduceReply{})
		}
	case *flowsConfirmed:
		a.startConfirmed(ctx, m)
	case *actor.Terminated:
		a.flowTerminated(ctx, m.Who)
	case rootTick:
		a.tick(ctx)
		a.reconcileFlows(ctx)
	case *dropReplica:
		a.drop(ctx, m)
	case *dropChecked:
		a.dropped(ctx, m)
	case *checkRemoved:
		if run, ok := a.running[m.Topic]; ok && run.meta.ID == m.TopicID && int(m.Partition) < len(run.pids) {
			a.checkOrphan(ctx, run, m.Partition)
		}
	case *orphanChecked:
		delete(a.orphanChecks, m.key)
	case *spawnRequest:
		n.sup.forget(rootName + "/" + m.Name)
		pid, err := ctx.SpawnNamed(n.props(m.Props), m.Name)
		if err != nil && errors.Is(err, actor.ErrNameExists) {
			err = fmt.Errorf("actor %q already runs", m.Name)
		}
		ctx.Respond(&spawnReply{PID: pid, Err: err})
	case *EnsureCoordinator:
		if m.Group == "" {
			ctx.Respond(&ProduceReply{Err: wire.Errorf(wire.CodeInvalidRequest, "empty group name")})
			return
		}
		name := "group/" + m.Group
		if !a.coordinators[m.Group] {
			n.sup.forget(rootName + "/" + name)
			if _, err := ctx.SpawnNamed(n.props(newCoordinatorProps(n, m.Group, n.cfg.Coordinator, a.generations[m.Group])), name); err != nil {
				// ErrNameExists: a coordinator that stopped itself has not finished stopping.
				ctx.Respond(&ProduceReply{Err: wire.Errorf(wire.CodeUnavailable, "group %s: %v", m.Group, err)})
				return
			}
			a.coordinators[m.Group] = true
			n.mu.Lock()
			if n.idleStops == nil {
				n.idleStops = map[string]chan struct{}{}
			}
			n.idleStops[m.Group] = make(chan struct{})
			n.mu.Unlock()
		}
		ctx.Respond(&ProduceReply{})
	case *stopRequest:
		ctx.StopFuture(m.PID).Wait()
		ctx.Respond(&spawnReply{})
	case *coordinatorStopped:
		delete(a.coordinators, m.group)
		n.coordinatorGone(m.group)
	case *coordinatorIdle:
		if !a.coordinators[m.group] {
			ctx.Poison(m.pid) // not the group's coordinator (any more): it must not linger retiring
			return
		}
		// Stopped before the next request for the group is handled here, so that the name is
		// free for the coordinator that request starts. Poisoned, not stopped: a stop goes
		// ahead of the requests in its mailbox, which the actor system then drops without a
		// dead letter (one from another node waited out its whole timeout); the poison comes
		// after them, so each is answered first (a join with REBALANCE_IN_PROGRESS: a retiring
		// coordinator takes no member).
		delete(a.coordinators, m.group)
		ctx.PoisonFuture(m.pid).Wait()
		// A request that reached it between the poison and the stop was dropped: senders on
		// this node learn here that it stopped (Server.group sends them again).
		n.coordinatorGone(m.group)
		if m.generation > 0 {
			if a.generations == nil {
				a.generations = map[string]int32{}
			}
			a.generations[m.group] = m.generation
		}
		n.forgetCoordinator(m.group)
		if n.kafka != nil {
			n.kafka.assigned.forgetGroup(m.group)
		}
	case *ListCoordinators:
		resp := &GroupList{}
		for g := range a.coordinators {
			resp.Groups = append(resp.Groups, g)
		}
		sort.Strings(resp.Groups)
		ctx.Respond(resp)
	case *DescribeGroup:
		if !a.coordinators[m.Group] {
			ctx.Respond(&GroupDescription{Group: m.Group})
			return
		}
		ctx.Forward(actor.NewPID(ctx.Self().Address, ctx.Self().Id+"/group/"+m.Group))
	}
}

// spawnRequest asks the root to spawn a child (a flow actor, a group coordinator).
type spawnRequest struct {
	Name  string
	Props *actor.Props
}

type spawnReply struct {
	PID *actor.PID
	Err error
}

type stopRequest struct{ PID *actor.PID }

// Spawn starts an actor under the root supervisor, named name (its id becomes "node/"+name).
func (n *Node) Spawn(name string, props *actor.Props) (*actor.PID, error) {
	res, err := n.system.Root.RequestFuture(n.root, &spawnRequest{Name: name, Props: props}, 10*time.Second).Result()
	if err != nil {
		return nil, err
	}
	r := res.(*spawnReply)
	return r.PID, r.Err
}

// Stop stops an actor spawned with Spawn and waits for it.
func (n *Node) Stop(pid *actor.PID) {
	_, _ = n.system.Root.RequestFuture(n.root, &stopRequest{PID: pid}, 30*time.Second).Result()
}

// reconcile makes the running partitions match the topic table.
func (a *rootActor) reconcile(ctx actor.Context, t *Topics) {
	n := a.n
	want := map[string]TopicMeta{}
	for _, tm := range t.Topics {
		want[tm.Name] = tm
	}
	for name, run := range a.running {
		if tm, ok := want[name]; ok && tm.ID == run.meta.ID {
			if !reflect.DeepEqual(tm, run.meta) {
				a.running[name] = a.updateTopic(ctx, run, tm)
			}
			continue
		}
		for p, pid := range run.pids {
			if pid != nil {
				ctx.StopFuture(pid).Wait()
				n.metrics.deletePartition(name, int32(p))
			}
		}
		dir := filepath.Join(n.cfg.DataDir, "topics", run.meta.Dir())
		if err := os.RemoveAll(dir); err != nil {
			n.logger.Error("delete topic data", "topic", name, "dir", dir, "err", err)
		}
		delete(a.running, name)
		n.logger.Info("topic deleted", "topic", name)
		a.deleteOffsets(ctx, name)
	}
	for name, tm := range want {
		if _, ok := a.running[name]; ok {
			continue
		}
		run := &topicEntry{meta: tm, pids: make([]*actor.PID, tm.Partitions)}
		for p := int32(0); p < tm.Partitions; p++ {
			if !slices.Contains(tm.replicasOf(p), n.raftID) && !n.hasReplicaData(tm, p) {
				continue // another node's partition
			}
			pid, err := a.spawnReplica(ctx, tm, p)
			if err != nil {
				n.logger.Error("spawn partition", "topic", name, "partition", p, "err", err)
				continue
			}
			run.pids[p] = pid
		}
		a.running[name] = run
		n.logger.Info("topic open", "topic", name, "partitions", tm.Partitions)
	}
	if !a.gcDone {
		a.gcDone = true
		a.collectGarbage(want, t.End)
	}
	n.mu.Lock()
	n.topics = make(map[string]*topicEntry, len(a.running))
	for name, run := range a.running {
		n.topics[name] = run
	}
	n.mu.Unlock()
	n.once.Do(func() { close(n.ready) })
}

// deleteOffsets has __offsets delete the groups' committed offsets of a deleted topic. It is
// sent before the partitions of a topic created again under the name are spawned, so it is
// ahead of their commits in __offsets' mailbox; __offsets takes it even at its in-flight limit
// (inFlightExempt). The root does not wait for it: it must go on supervising (and restarting
// __offsets, should it fail). If it is lost (__offsets restarting, the node dying before it is
// committed), the offsets stay: a known gap (docs/runtime.md).
func (a *rootActor) deleteOffsets(ctx actor.Context, topic string) {
	f := ctx.RequestFuture(a.n.internalPID("offsets"), &DeleteTopicOffsets{Topic: topic}, 10*time.Second)
	logger := a.n.logger
	go func() {
		res, err := resultOf(f)
		if r, ok := res.(*ProduceReply); ok && r.Err != nil {
			err = r.Err
		}
		if err != nil {
			logger.Warn("the committed offsets of a deleted topic stay", "topic", topic, "err", err)
		}
	}()
}

// collectGarbage removes topic directories that no topic owns: left by a delete that crashed
// before removing them. Only directories of topics created before end (the __meta offset the
// table is complete up to) are judged: a newer one belongs to a command not yet applied.
func (a *rootActor) collectGarbage(want map[string]TopicMeta, end int64) {
	n := a.n
	keep := map[string]bool{}
	for _, tm := range want {
		keep[tm.Dir()] = true
	}
	dir := filepath.Join(n.cfg.DataDir, "topics")
	ents, err := os.ReadDir(dir)
	if err != nil {
		n.logger.Warn("topic directories", "err", err)
		return
	}
	for _, e := range ents {
		i := strings.LastIndexByte(e.Name(), '.')
		if !e.IsDir() || keep[e.Name()] || i < 0 {
			continue
		}
		if id, err := strconv.ParseInt(e.Name()[i+1:], 10, 64); err != nil || id >= end {
			continue
		}
		n.logger.Info("removing data of a deleted topic", "dir", e.Name())
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			n.logger.Warn("remove", "dir", e.Name(), "err", err)
		}
	}
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// CreateTopic creates a topic with the given partitions (one replica on one node) and returns
// once this node serves it. errors.Is(err, wire.ErrTopicExists) tells an existing topic.
func (n *Node) CreateTopic(name string, partitions int32) error {
	return n.CreateTopicWithConfig(name, partitions, wire.TopicConfig{})
}

// DeleteTopic deletes a topic and its data.
func (n *Node) DeleteTopic(name string) error {
	if e := n.topicCommand(&DeleteTopic{Name: name}, name, false, false, 30*time.Second); e != nil {
		return e
	}
	return nil
}

// topicCommand sends a topic command to __meta and waits until the topic table on this node
// shows its effect, so that a topic may be used as soon as its creation is answered. With
// waitNodes a creation that finds too few nodes is retried until timeout: flows create their
// topics as their program starts on every node; a user's request is answered at once.
func (n *Node) topicCommand(msg any, name string, create, waitNodes bool, timeout time.Duration) *wire.Error {
	// In a cluster __meta's leader may be elsewhere, or changing: ask again while it is not
	// known or moves.
	start := time.Now()
	for tries := 0; ; tries++ {
		res, err := resultOf(n.rc.RequestFuture(n.internalPID("meta"), msg, min(timeout, 5*time.Second)))
		var e *wire.Error
		if r, ok := res.(*ProduceReply); ok {
			e = r.Err
		} else if err != nil {
			e = wire.Errorf(wire.CodeTimeout, "__meta: %v", err)
		} else {
			return wire.Errorf(wire.CodeUnknown, "unexpected answer %T", res)
		}
		if e == nil {
			break
		}
		if tries > 0 && (e.Code == wire.CodeTopicExists || e.Code == wire.CodeUnknownTopic) {
			// An earlier try that timed out or lost its leader may have been committed.
			e.Msg += " (an earlier attempt of this command may have been carried out)"
			return e
		}
		retry := e.Code == wire.CodeUnavailable || (n.cluster != nil && (e.Code == wire.CodeNotLeader || e.Code == wire.CodeTimeout || (waitNodes && e.Code == wire.CodeNotEnoughNodes)))
		if !retry || time.Since(start) > timeout {
			return e
		}
		time.Sleep(100 * time.Millisecond)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, ok := n.Topic(name); ok == create {
			return nil
		}
	}
	return wire.Errorf(wire.CodeTimeout, "topic %q: committed, but not yet in effect on this node", name)
}

// checkKafkaAddrs refuses a Kafka listener whose address clients could not be told: one on every
// interface (0.0.0.0, ::, no host), or in a cluster one on a port picked at start, without
// KafkaAdvertise.
func (c *NodeConfig) checkKafkaAddrs() error {
	if c.KafkaAddr == "" {
		if c.KafkaAdvertise != "" {
			return errors.New("node: KafkaAdvertise without KafkaAddr")
		}
		return nil
	}
	if c.KafkaAdvertise != "" {
		h, p, err := net.SplitHostPort(c.KafkaAdvertise)
		if ip := net.ParseIP(h); err != nil || h == "" || p == "0" || p == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("node: Kafka advertised address %q: want HOST:PORT that clients can reach", c.KafkaAdvertise)
		}
		return nil
	}
	h, p, err := net.SplitHostPort(c.KafkaAddr)
	if err != nil {
		return fmt.Errorf("node: Kafka address %q: %v", c.KafkaAddr, err)
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("node: the Kafka listener %q is on every interface: give the address clients reach it at (--kafka-advertise HOST:PORT)", c.KafkaAddr)
	}
	if c.Cluster != nil && p == "0" {
		return fmt.Errorf("node: the Kafka listener %q has no fixed port, which the other nodes must be told: give one, or --kafka-advertise", c.KafkaAddr)
	}
	return nil
}
