package actors

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// ReplicaConfig configures one partition replica: a raft group member that owns a log.
type ReplicaConfig struct {
	// Topic and Partition name the partition; Group, "topic/partition", names its raft group.
	Topic     string
	Partition int32
	// Dir holds the log; Log configures it (its Logger and Now are filled in if unset).
	Dir string
	Log storage.Config
	// ID is this replica's raft id; Peers are the voters an empty log is bootstrapped with.
	ID    uint64
	Peers []uint64
	// TickInterval is how often the actor ticks: raft ticks, fetch deadlines, produce timeouts.
	// A leader is elected after ElectionTicks ticks without one.
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// MaxPendingBytes bounds the batches proposed but not yet answered; beyond it Produce is
	// refused with wire.ErrOverloaded and the producer backs off.
	MaxPendingBytes int
	// MaxFetchBytes caps one fetch response.
	MaxFetchBytes int
	// RetentionEvery is how often retention runs (0: never).
	RetentionEvery time.Duration
	// NewStateMachine, for internal partitions (__meta, __offsets), makes the state that the
	// partition's records build; it is rebuilt from the log at every start.
	NewStateMachine func() StateMachine
	// CheckpointRecords, for a state machine that is a Checkpointer, is how many records are
	// applied between checkpoints, after which the log before the checkpoint is deleted (whole
	// segments only). 0: never.
	CheckpointRecords int64
	// Transport carries raft messages to the other replicas (nil on a single voter).
	Transport Transport
	// Join: an empty log is not bootstrapped with Peers; the replica waits for the group's
	// leader to add it (a replica placed on a node after the group began, or __meta and
	// __offsets on a node that joins a cluster).
	Join bool
	// PeerAddr gives a node's remote address ("" if unknown): produce, fetch and list-offsets
	// requests that reach a follower are forwarded there, to the leader's replica.
	PeerAddr func(id uint64) string
	// OnLeader, if set, is told each new leader (0: none known) and the voters.
	OnLeader func(lead uint64)
	// OnRemoved, if set, is called once the replica has applied a configuration that no longer
	// includes it: the node may then stop it and delete its data.
	OnRemoved func()
	Metrics   *Metrics
	Logger    *slog.Logger
	// Faults, if set, is called at named points of the actor's work so that tests can inject
	// panics there ("produce", "ready", "apply", "fetch").
	Faults func(point string)
}

// Group is the partition's raft group name.
func (c *ReplicaConfig) Group() string { return partitionGroup(c.Topic, c.Partition) }

// partitionGroup is the raft group name of a topic's partition: "topic/partition".
func partitionGroup(topic string, p int32) string { return fmt.Sprintf("%s/%d", topic, p) }

func (c *ReplicaConfig) defaults() {
	if c.TickInterval <= 0 {
		c.TickInterval = 50 * time.Millisecond
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 20
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 2
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 64 << 20
	}
	if c.MaxFetchBytes <= 0 {
		c.MaxFetchBytes = 4 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ID == 0 {
		c.ID = 1
	}
	if len(c.Peers) == 0 {
		c.Peers = []uint64{c.ID}
	}
}

// Transport sends raft messages to the replicas of other nodes. Send returns the ids of the
// peers it knows to be unreachable (not live members), which raft then probes gently.
type Transport interface {
	Send(ctx actor.Context, group string, msgs []*pb.Message) (unreachable []uint64)
}

// StateMachine is the state an internal partition's records build, such as the topic table of
// __meta or the committed offsets of __offsets. The replica applies every committed records
// batch to it, and rebuilds it from the log when it starts.
type StateMachine interface {
	// Apply applies one committed record at offset. Its error (nil for success) answers the
	// proposal that carried it, if that was proposed on this node.
	Apply(offset int64, rec storage.Record) *wire.Error
	// Handle takes a message the replica does not know. It returns a batch to propose (the
	// reply, a *ProduceReply, follows when it is applied), or a reply to send at once, or
	// neither for a message it does not know either.
	Handle(msg any) (propose []byte, reply any)
}

// Checkpointer is a state machine whose log can be shortened: Checkpoint returns batches of
// records that rebuild its state as of asOf (the offset after the last record applied) when
// applied after any prefix of the log, also when records appended after asOf are interleaved
// with them; nothing when the state is empty. The replica takes a checkpoint when
// CheckpointRecords records were applied since the last one began (and at least twice as many
// as the checkpoint holds, so that checkpoints do not follow each other), at a moment when none
// of its own proposals is in flight, and proposes its batches as the in-flight limit allows;
// once the last is committed, the log before the first is deleted.
type Checkpointer interface {
	Checkpoint(asOf int64) (batches [][]byte, records int, err error)
}

// proposal is a produce request between Propose and its answer.
type proposal struct {
	data     []byte
	acks     wire.Acks
	replyTo  *actor.PID
	deadline int64
	index    uint64
	base     int64
	records  int
	// checkpoint marks the batches of a checkpoint: cpFirst the first, cpLast the last.
	checkpoint uint8
}

const (
	cpFirst = 1 << iota
	cpLast
)

// parkedFetch is a fetch waiting for new data.
type parkedFetch struct {
	req      *Fetch
	replyTo  *actor.PID
	deadline time.Time
}

// replica is the actor. All of its state is owned by its Receive; it starts no goroutines (the
// tick timer belongs to protoactor's scheduler and is cancelled when the actor stops).
type replica struct {
	cfg ReplicaConfig
	log *storage.Log
	rn  *raft.RawNode
	sm  StateMachine

	lead     uint64
	term     uint64
	voters   []uint64
	learners []uint64
	target   *SetMembers // the membership the leader moves the group to, one change at a time
	// confPendingUntil: a configuration change was proposed; the next waits for it to apply
	// or for this time.
	confPendingUntil time.Time
	// member: a configuration with this replica was applied (or loaded); removed: a later one
	// without it. A replica that joins replays the configurations from before it was added,
	// which do not make it removed.
	member, removed bool
	hw              int64 // record offset up to which entries are committed and applied
	applied         uint64
	unsaved         []*proposal // proposed, not yet in a Ready's entries (leader only)
	uncommit        []*proposal // appended, waiting for commit (acks=all)
	pending         int         // bytes of proposals not yet answered
	parked          []parkedFetch
	readyQueued     bool
	stopTick        *ticker
	lastRetention   time.Time
	// Checkpoints (see Checkpointer): cpBase is where the last one began (or the log start),
	// cpStart where the one in flight begins once its first batch is committed.
	cpBase, cpStart int64
	cpInFlight      bool     // a checkpoint's batches are being proposed or committed
	cpRest          [][]byte // its batches not yet proposed, the first first
	cpProposed      int      // how many of its batches were proposed
	cpMinSince      int64    // records since cpBase before the next attempt
	// producers follows idempotent producers' sequences (idempotence.go); leaderReady: this
	// leader has applied an entry of its own term, so everything before it too.
	producers   producerTable
	leaderReady bool
}

// NewReplicaProps returns the props of a partition replica actor.
func NewReplicaProps(cfg ReplicaConfig) *actor.Props {
	cfg.defaults()
	return actor.PropsFromProducer(func() actor.Actor { return &replica{cfg: cfg} })
}

func (r *replica) fault(point string) {
	if r.cfg.Faults != nil {
		r.cfg.Faults(point)
	}
}

func (r *replica) Receive(ctx actor.Context) {
	// A request that crashes the actor is answered before the supervisor restarts it, so that
	// its sender retries at once instead of waiting for a timeout.
	defer func() {
		if p := recover(); p != nil {
			if m, ok := ctx.Message().(*Produce); ok && m.Acks != wire.AcksNone && ctx.Sender() != nil {
				ctx.Respond(&ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeUnavailable, "partition %s failed: %v", r.cfg.Group(), p)})
			}
			panic(p)
		}
	}()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if err := r.start(ctx); err != nil {
			r.close(ctx, wire.ErrUnavailable)
			// A panic hands the failure to the supervisor, which retries with backoff.
			panic(fmt.Errorf("partition %s: start: %w", r.cfg.Group(), err))
		}
	case *actor.Restarting:
		r.close(ctx, wire.Errorf(wire.CodeUnavailable, "partition %s is restarting", r.cfg.Group()))
	case *actor.Stopping:
		r.close(ctx, wire.Errorf(wire.CodeUnavailable, "partition %s is stopping", r.cfg.Group()))
	case *Produce:
		if !r.forward(ctx, &m.Forwarded) {
			r.produce(ctx, m)
		}
	case *Fetch:
		if !r.forward(ctx, &m.Forwarded) {
			r.fetch(ctx, m)
		}
	case *WithdrawFetch:
		if !r.forward(ctx, &m.Forwarded) {
			r.withdraw(ctx, m)
		}
	case *ListOffsets:
		if !r.forward(ctx, &m.Forwarded) {
			ctx.Respond(r.listOffsets(m))
		}
	case *GetStatus:
		ctx.Respond(r.status())
	case *RaftMessage:
		r.step(ctx, m)
	case *SetMembers:
		r.target = m
		r.driveMembership(ctx)
	case *growMembers:
		r.growMembers(ctx, m)
	case tick:
		r.onTick(ctx)
	case processReady:
		r.readyQueued = false
		r.handleReady(ctx)
	default:
		if r.sm == nil || r.rn == nil {
			return
		}
		if lt, ok := m.(*ListTopics); ok && lt.Leader && (r.lead != r.cfg.ID || !r.leaderReady) {
			ctx.Respond(&ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeNotLeader, "%s: not a leader that has applied its term's first entry", r.cfg.Group())})
			return
		}
		batch, reply := r.sm.Handle(m)
		_, exempt := m.(inFlightExempt)
		switch {
		case batch != nil && r.lead == r.cfg.ID && !r.leaderReady:
			// The state the command was checked against may miss entries of earlier terms
			// that are committed but not yet applied here.
			if ctx.Sender() != nil {
				ctx.Respond(&ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeUnavailable, "%s: the new leader is applying its log", r.cfg.Group())})
			}
		case batch != nil:
			r.propose(ctx, batch, wire.AcksAll, ctx.Sender(), time.Now().Add(10*time.Second).UnixMilli(), exempt)
		case reply != nil:
			ctx.Respond(reply)
		}
	}
}

// exemptHeadroom is how many bytes of proposals exempt from the in-flight limit raft takes beyond
// it.
const exemptHeadroom = 1 << 20

func (r *replica) start(ctx actor.Context) error {
	cfg := &r.cfg
	if cfg.Log.Logger == nil {
		cfg.Log.Logger = cfg.Logger
	}
	l, err := storage.Open(cfg.Dir, cfg.Log)
	if err != nil {
		return err
	}
	r.log = l
	hs, cs, err := l.InitialState()
	if err != nil {
		return err
	}
	r.voters = append(cs.GetVoters(), cs.GetVotersOutgoing()...)
	r.learners = append(cs.GetLearners(), cs.GetLearnersNext()...)
	r.member = slices.Contains(r.voters, cfg.ID) || slices.Contains(r.learners, cfg.ID)
	if r.cfg.NewStateMachine != nil {
		r.sm = r.cfg.NewStateMachine()
		if err := r.replay(hs.GetCommit()); err != nil {
			return err
		}

	}
	first, _ := l.FirstIndex()
	r.applied = max(hs.GetCommit(), first-1)
	if r.hw, err = l.CommittedOffset(r.applied); err != nil {
		return fmt.Errorf("high watermark at index %d: %w", r.applied, err)
	}
	r.leaderReady = false
	if r.sm == nil {
		if err := r.loadProducers(); err != nil {
			return fmt.Errorf("reading the producers' last batches: %w", err)
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                       cfg.ID,
		ElectionTick:             cfg.ElectionTicks,
		HeartbeatTick:            cfg.HeartbeatTicks,
		Storage:                  l,
		Applied:                  r.applied,
		MaxSizePerMsg:            1 << 20,
		MaxCommittedSizePerReady: 16 << 20,
		// Room beyond the in-flight limit for the small proposals exempt from it (inFlightExempt).
		MaxUncommittedEntriesSize: uint64(cfg.MaxPendingBytes)*2 + exemptHeadroom,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true, // a leader that removed itself hands over at once
		Logger:                    raftLogger{cfg.Logger.With("group", cfg.Group())},
	})
	if err != nil {
		return err
	}
	r.rn = rn
	campaign := false
	if last, _ := l.LastIndex(); last == 0 && !cfg.Join {
		peers := make([]raft.Peer, len(cfg.Peers))
		for i, id := range cfg.Peers {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return err
		}
		r.voters = append([]uint64(nil), cfg.Peers...)
		// A new group's preferred leader (the first of its peers) campaigns at once, instead of
		// every member waiting out an election timeout (1 to 2 s) before the partition serves.
		campaign = len(cfg.Peers) > 1 && cfg.Peers[0] == cfg.ID
	}
	if last, _ := l.LastIndex(); last > 0 {
		r.campaignAlone() // a restarted single voter leads again at once
	}
	r.stopTick = startTicker(ctx.ActorSystem(), ctx.Self(), cfg.TickInterval, tick{})
	r.lastRetention = time.Now()
	r.cpBase, r.cpInFlight, r.cpRest, r.cpMinSince = l.StartOffset(), false, nil, 0
	r.handleReady(ctx)
	if campaign {
		if err := rn.Campaign(); err != nil {
			cfg.Logger.Debug("first campaign", "group", cfg.Group(), "err", err)
		}
		r.handleReady(ctx)
	}
	// The state machine is complete once replay and the entries a single voter commits again at
	// start are applied; only then does it report its state.
	if rp, ok := r.sm.(interface{ Replayed() }); ok {
		rp.Replayed()
	}
	r.cfg.Metrics.partitionOffsets(cfg.Topic, cfg.Partition, r.log.StartOffset(), r.hw, r.log.EndOffset())
	cfg.Logger.Debug("partition started", "group", cfg.Group(), "hw", r.hw, "end", l.EndOffset(), "applied", r.applied)
	return nil
}

// replay rebuilds the state machine from the committed records in the log.
func (r *replica) replay(commit uint64) error {
	end, err := r.log.CommittedOffset(commit)
	if err != nil {
		return err
	}
	var buf []byte
	for off := r.log.StartOffset(); off < end; {
		buf, err = r.log.Read(buf[:0], off, 1<<20, end)
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			break
		}
		for p := 0; p < len(buf); {
			h, err := storage.ParseHeader(buf[p:])
			if err != nil {
				return err
			}
			if _, err := r.applyBatch(buf[p:p+h.Size()], h.BaseOffset, off); err != nil {
				return err
			}
			off = max(off, h.NextOffset())
			p += h.Size()
		}
	}
	return nil
}

// applyBatch applies the records of a batch whose first record is at offset base, from offset
// from on, to the state machine. (A batch from raft's memory still has the base offset of its
// proposal, not of its place in the log, so the caller passes base.) It returns the first error
// Apply returned (the proposal's answer) and any error decoding the batch.
func (r *replica) applyBatch(batch []byte, base, from int64) (*wire.Error, error) {
	var first *wire.Error
	h, err := storage.ParseHeader(batch)
	if err != nil {
		return nil, err
	}
	_, err = storage.DecodeBatch(batch, func(o int64, rec storage.Record) error {
		off := base + (o - h.BaseOffset)
		if off < from {
			return nil
		}
		if string(rec.Key) == checkpointMarkKey {
			if len(rec.Value) == 8 {
				r.deleteBeforeCheckpoint(min(int64(binary.BigEndian.Uint64(rec.Value)), off))
			}
			return nil
		}
		if e := r.sm.Apply(off, rec); e != nil && first == nil {
			first = e
		}
		return nil
	})
	return first, err
}

// close releases the log and answers every waiting request with err.
func (r *replica) close(ctx actor.Context, err *wire.Error) {
	r.stopTick.stop()
	r.stopTick = nil
	r.failPending(ctx, err)
	for _, f := range r.parked {
		ctx.Send(f.replyTo, &wire.FetchResponse{HighWatermark: r.hw, Err: err})
	}
	r.parked = nil
	r.cfg.Metrics.leading(r.cfg.Topic, r.cfg.Partition, false) // a stopped or restarting replica leads nothing
	if r.log != nil {
		if cerr := r.log.Close(); cerr != nil {
			r.cfg.Logger.Warn("partition close", "group", r.cfg.Group(), "err", cerr)
		}
		r.log = nil
	}
	r.rn = nil
}
