package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// SinkConfig configures a sink runner: topics -> consumer group -> sink.
type SinkConfig struct {
	Flow   string
	Group  string
	Topics []string
	Sink   connectors.Sink
	// MaxBytes bounds one fetch (default 1 MiB); MaxWait is its long-poll wait (default 500 ms).
	MaxBytes int32
	MaxWait  time.Duration
	// Session is the group session timeout (default 10 s); heartbeats go at a third of it.
	Session time.Duration
	// WriteTimeout bounds one Write (default 1 minute).
	WriteTimeout time.Duration
}

type heartbeatTick struct{}

// durableTick asks a staging sink what became durable without a Write (a roll by time): every
// second, and when a connectors.DurableNotifier says so.
type durableTick struct{}

type fetchAgain struct {
	epoch int
	tp    tp
}

// sinkRunner is a consumer-group member that writes what it reads to a sink. For each assigned
// partition it fetches, writes, commits, and fetches again: a batch is committed only after the
// sink's Write returned, so after a crash at most the batch between Write and commit is written
// again.
type sinkRunner struct {
	n   *Node
	cfg SinkConfig

	epoch      int // bumped on every (re)join; continuations of an older epoch are dropped
	member     string
	generation int32
	pos        map[tp]int64
	hb         *ticker
	joining    bool
	// A sink that is not a staging sink: per partition, the offset after a Write that returned
	// and whose commit is on its way. Stopping commits it, so that a stop does not write again.
	written map[tp]int64

	// A staging sink's offsets are committed as it reports them durable.
	staging   connectors.StagingSink
	committed map[tp]int64 // per assigned partition, the offset committed last
	reported  map[tp]int64 // per assigned partition, the durable offset the sink reported last
	durable   *ticker
	replays   int // ErrReplays in a row, for the backoff

	// A connectors.Borrower's memory is reused: per partition, the batches of its last fetch
	// if it filled at least a quarter of them (the next fetch reads into them; see recycle), and
	// the messages of the last Write. A buffer is in spare or in one fetch on its way, never
	// both; one whose fetch got no answer is left to the GC, as the partition may still read
	// into it.
	borrower bool
	spare    map[tp][]byte
	msgs     []connectors.Message
}

// NewSinkProps returns the props of a sink runner on node n.
func NewSinkProps(n *Node, cfg SinkConfig) *actor.Props {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 500 * time.Millisecond
	}
	if cfg.Session <= 0 {
		cfg.Session = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	return actor.PropsFromProducer(func() actor.Actor { return &sinkRunner{n: n, cfg: cfg} })
}

func (s *sinkRunner) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if dn, ok := s.cfg.Sink.(connectors.DurableNotifier); ok {
			self, system := ctx.Self(), ctx.ActorSystem()
			dn.NotifyDurable(func() { system.Root.Send(self, durableTick{}) })
		}
		octx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.cfg.Sink.Open(octx)
		cancel()
		if err != nil {
			panic(fmt.Errorf("flow %s: sink open: %w", s.cfg.Flow, err))
		}
		_, s.borrower = s.cfg.Sink.(connectors.Borrower)
		s.hb = startTicker(ctx.ActorSystem(), ctx.Self(), s.cfg.Session/3, heartbeatTick{})
		if st, ok := s.cfg.Sink.(connectors.StagingSink); ok {
			s.staging = st
			s.durable = startTicker(ctx.ActorSystem(), ctx.Self(), time.Second, durableTick{})
		}
		s.join(ctx)
	case *actor.Stopping, *actor.Restarting:
		s.epoch = nextEpoch()
		s.hb.stop()
		if s.durable != nil {
			s.durable.stop()
		}
		// Close first: a staging sink's Close makes what it staged durable, which must be done
		// before another member can be given its partitions.
		if err := s.cfg.Sink.Close(); err != nil {
			s.n.logger.Warn("sink close", "flow", s.cfg.Flow, "err", err)
		}
		s.commitWritten()
		if pid := s.n.cachedCoordinator(s.cfg.Group); s.member != "" && pid != nil {
			// Leave at once so the others need not wait for the session to expire. Only a
			// coordinator already known: finding one may ask this node's root, which may be
			// the one stopping this actor (and waiting for it).
			ctx.Request(pid, &LeaveGroup{wire.LeaveGroupRequest{Group: s.cfg.Group, MemberID: s.member}})
		}
	case heartbeatTick:
		s.heartbeat(ctx)
	case replayAll:
		if m.epoch == s.epoch {
			for k := range s.pos {
				s.fetch(ctx, k)
			}
		}
	case durableTick:
		if s.member != "" && !s.joining {
			s.commitDurable(ctx)
		}
	case fetchAgain:
		if m.epoch == s.epoch {
			s.fetch(ctx, m.tp)
		}
	case *rejoin:
		if m.epoch == s.epoch {
			s.join(ctx)
		}
	}
}

func (s *sinkRunner) coordinator() *actor.PID {
	pid, err := s.n.coordinatorFor(s.cfg.Group)
	if err != nil {
		panic(err)
	}
	return pid
}

// join (re)joins the group; its answer assigns partitions, whose committed offsets are read
// before fetching starts.
func (s *sinkRunner) join(ctx actor.Context) {
	s.epoch = nextEpoch()
	s.joining = true
	s.written = nil // a commit of the generation left is refused
	if s.staging != nil {
		// What it staged is read again from the committed offsets, by it or by the member that
		// has the partition after this rebalance; dropped before joining, so before any other
		// member is given the partition (the coordinator waits for the known members to join
		// again).
		if err := s.staging.Reset(); err != nil {
			panic(fmt.Errorf("flow %s: sink reset: %w", s.cfg.Flow, err))
		}
	}
	epoch := s.epoch
	f := ctx.RequestFuture(s.coordinator(), &JoinGroup{wire.JoinGroupRequest{Group: s.cfg.Group, MemberID: s.member,
		Topics: s.cfg.Topics, SessionTimeoutMs: int32(s.cfg.Session / time.Millisecond)}}, 30*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		r, ok := res.(*wire.JoinGroupResponse)
		if !ok || r.Err != nil {
			if err != nil {
				s.n.forgetCoordinator(s.cfg.Group) // it may have stopped: find it again
			}
			s.n.logger.Info("sink join failed; retrying", "flow", s.cfg.Flow, "group", s.cfg.Group, "err", err, "reply", res)
			s.retryJoin(ctx)
			return
		}
		s.member, s.generation = r.MemberID, r.Generation
		s.start(ctx, epoch, r.Assigned)
	})
}

func (s *sinkRunner) retryJoin(ctx actor.Context) {
	self, system := ctx.Self(), ctx.ActorSystem()
	epoch := s.epoch
	time.AfterFunc(200*time.Millisecond, func() { system.Root.Send(self, &rejoin{epoch: epoch}) })
}

type rejoin struct{ epoch int }

// start reads the committed offsets of the assigned partitions and starts fetching them.
func (s *sinkRunner) start(ctx actor.Context, epoch int, parts []wire.TopicPartitions) {
	s.joining = false
	s.pos = map[tp]int64{}
	s.committed, s.reported = map[tp]int64{}, map[tp]int64{}
	s.spare = map[tp][]byte{}
	if len(parts) == 0 {
		return
	}
	f := ctx.RequestFuture(s.n.internalPID("offsets"), &FetchOffsets{Group: s.cfg.Group, Partitions: parts}, 10*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		r, ok := res.(*wire.FetchCommitResponse)
		if !ok || r.Err != nil {
			panic(fmt.Errorf("flow %s: read committed offsets: %v %v", s.cfg.Flow, err, res))
		}
		committed := map[tp]int64{}
		for _, o := range r.Offsets {
			committed[tp{o.Topic, o.Partition}] = o.Offset
		}
		for _, tps := range parts {
			for _, p := range tps.Partitions {
				k := tp{tps.Topic, p}
				off, ok := committed[k]
				if !ok {
					off = -1 // no commit yet: from the earliest offset
				}
				s.pos[k] = off
				s.committed[k] = off
				s.fetch(ctx, k)
			}
		}
		s.n.logger.Info("sink assigned", "flow", s.cfg.Flow, "group", s.cfg.Group, "generation", s.generation, "partitions", fmt.Sprint(s.pos))
	})
}

func (s *sinkRunner) fetch(ctx actor.Context, k tp) {
	pid, err := s.n.Partition(k.topic, k.partition)
	if err != nil {
		panic(fmt.Errorf("flow %s: %w", s.cfg.Flow, err))
	}
	epoch := s.epoch
	if s.pos[k] < 0 {
		f := ctx.RequestFuture(pid, &ListOffsets{Spec: wire.OffsetEarliest}, 10*time.Second)
		reenter(ctx, f, func(res any, err error) {
			if epoch != s.epoch {
				return
			}
			if r, ok := res.(*wire.ListOffsetsResponse); ok && r.Err == nil {
				s.pos[k] = r.Offset
				s.fetch(ctx, k)
				return
			}
			s.later(ctx, k)
		})
		return
	}
	from := s.pos[k]
	into := s.spare[k]
	delete(s.spare, k)
	f := ctx.RequestFuture(pid, &Fetch{Offset: from, MaxBytes: s.cfg.MaxBytes, MaxWaitMs: int32(s.cfg.MaxWait / time.Millisecond), Into: into}, s.cfg.MaxWait+10*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		r, ok := res.(*wire.FetchResponse)
		if !ok || r.Err != nil {
			s.n.logger.Debug("sink fetch failed", "flow", s.cfg.Flow, "partition", k, "err", err, "reply", res)
			s.later(ctx, k)
			return
		}
		var reuse []connectors.Message
		if s.borrower {
			reuse = s.msgs
		}
		msgs, next, derr := decodeMessages(k, from, r.Batches, reuse)
		if derr != nil {
			panic(fmt.Errorf("flow %s: %s/%d at %d: %w", s.cfg.Flow, k.topic, k.partition, from, derr))
		}
		if len(msgs) == 0 {
			if next > from { // only control batches: move past them
				s.pos[k] = next
			}
			s.recycle(k, r.Batches, msgs)
			s.fetch(ctx, k)
			return
		}
		s.n.fault("sink")("write")
		wctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
		werr := s.cfg.Sink.Write(wctx, msgs)
		cancel()
		if werr != nil && s.staging != nil && errors.Is(werr, connectors.ErrReplay) {
			s.replay(ctx, werr)
			return
		}
		if werr != nil {
			// Restart: the sink reopens and the partition resumes from the committed offset.
			panic(fmt.Errorf("flow %s: sink write: %w", s.cfg.Flow, werr))
		}
		s.recycle(k, r.Batches, msgs) // Write has returned
		if s.staging != nil {
			s.replays = 0
			s.pos[k] = next
			s.n.metrics.SinkRecords(s.cfg.Flow, len(msgs))
			s.fetch(ctx, k)
			s.commitDurable(ctx)
			return
		}
		if s.written == nil {
			s.written = map[tp]int64{}
		}
		s.written[k] = next
		s.commit(ctx, k, next, len(msgs))
	})
}

// commitWritten commits, and waits for, what Writes that returned wrote past the committed
// offsets: a stopping runner's commits in flight may not outlive it (its node may close next).
func (s *sinkRunner) commitWritten() {
	pid := s.n.cachedCoordinator(s.cfg.Group)
	if len(s.written) == 0 || s.member == "" || pid == nil {
		return
	}
	offs := make([]wire.PartitionOffset, 0, len(s.written))
	for k, next := range s.written {
		offs = append(offs, wire.PartitionOffset{Topic: k.topic, Partition: k.partition, Offset: next})
	}
	s.written = nil
	res, err := s.n.system.Root.RequestFuture(pid, &CommitGroup{wire.CommitRequest{Group: s.cfg.Group, MemberID: s.member, Generation: s.generation,
		Offsets: offs}}, 3*time.Second).Result()
	if e := commitAnswer(res, err); e != nil {
		s.n.logger.Info("sink commit at stop failed; what it wrote since its last commit will be written again", "flow", s.cfg.Flow, "err", e)
	}
}

// commitDurable commits what a staging sink reports durable, for the partitions assigned.
func (s *sinkRunner) commitDurable(ctx actor.Context) {
	durable, err := s.staging.Durable()
	if err != nil {
		if errors.Is(err, connectors.ErrReplay) {
			s.replay(ctx, err)
			return
		}
		panic(fmt.Errorf("flow %s: sink: %w", s.cfg.Flow, err))
	}
	var offs []wire.PartitionOffset
	for _, o := range durable {
		k := tp{o.Topic, o.Partition}
		if _, ok := s.committed[k]; ok && o.Offset > s.reported[k] {
			s.reported[k] = o.Offset
		}
		if c, ok := s.committed[k]; ok && o.Offset > c {
			offs = append(offs, wire.PartitionOffset{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset})
		}
	}
	if len(offs) == 0 {
		return
	}
	s.commitOffsets(ctx, offs, func(e *wire.Error) {
		if e != nil {
			// A timeout: the next report (after a Write, or the tick's, every second) commits
			// them. A refusal: rejoin.
			s.n.logger.Info("sink commit of durable offsets failed", "flow", s.cfg.Flow, "err", e)
			if !errors.Is(e, wire.ErrTimeout) {
				s.join(ctx)
			}
			return
		}
		for _, o := range offs {
			k := tp{o.Topic, o.Partition}
			if o.Offset > s.committed[k] {
				s.committed[k] = o.Offset
			}
		}
	})
}

// commitOffsets commits offs for the group and calls done with the refusal (a timeout when no
// answer came), or nil, unless the runner has moved to another epoch meanwhile.
func (s *sinkRunner) commitOffsets(ctx actor.Context, offs []wire.PartitionOffset, done func(*wire.Error)) {
	epoch := s.epoch
	s.n.fault("sink")("commit")
	f := ctx.RequestFuture(s.coordinator(), &CommitGroup{wire.CommitRequest{Group: s.cfg.Group, MemberID: s.member, Generation: s.generation,
		Offsets: offs}}, 10*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		done(commitAnswer(res, err))
	})
}

// commitAnswer is the refusal in the coordinator's answer to a commit, a timeout when none came,
// or nil.
func commitAnswer(res any, err error) *wire.Error {
	switch r := res.(type) {
	case *ProduceReply:
		return r.Err
	case *wire.AdminResponse:
		return r.Err
	default:
		return wire.Errorf(wire.CodeTimeout, "commit: %v", err)
	}
}

// commit stores the offset after what the sink wrote, then fetches on.
func (s *sinkRunner) commit(ctx actor.Context, k tp, next int64, n int) {
	s.commitOffsets(ctx, []wire.PartitionOffset{{Topic: k.topic, Partition: k.partition, Offset: next}}, func(e *wire.Error) {
		if e != nil {
			// A stale member rejoins; what it wrote past the committed offset is written again
			// by whoever owns the partition next (the bound on repeats).
			s.n.logger.Info("sink commit refused; rejoining", "flow", s.cfg.Flow, "err", e)
			if errors.Is(e, wire.ErrTimeout) {
				s.later(ctx, k)
				return
			}
			s.join(ctx)
			return
		}
		if s.written[k] <= next {
			delete(s.written, k)
		}
		s.pos[k] = next
		s.n.metrics.SinkRecords(s.cfg.Flow, n)
		s.fetch(ctx, k)
	})
}

type replayAll struct{ epoch int }

// replay handles a staging sink's ErrReplay: fetches in flight are dropped, the sink is reset,
// and every partition is read again from its committed offset after a backoff that grows with
// repeated replays (100 ms to 5 s).
func (s *sinkRunner) replay(ctx actor.Context, why error) {
	s.epoch = nextEpoch()
	s.replays++
	wait := min(100*time.Millisecond<<min(s.replays-1, 6), 5*time.Second)
	s.n.logger.Warn("sink abandoned what it staged; reading it again", "flow", s.cfg.Flow, "err", why, "wait", wait)
	if err := s.staging.Reset(); err != nil {
		panic(fmt.Errorf("flow %s: sink reset: %w", s.cfg.Flow, err))
	}
	for k, c := range s.committed {
		// From what the sink reported durable, if its commit is still on its way; -1 (no
		// commit, nothing reported) reads from the earliest offset again.
		s.pos[k] = c
		if r, ok := s.reported[k]; ok && r > c {
			s.pos[k] = r
		}
	}
	self, system, epoch := ctx.Self(), ctx.ActorSystem(), s.epoch
	time.AfterFunc(wait, func() { system.Root.Send(self, replayAll{epoch: epoch}) })
	// A replay may come from losing a partition to another member (the HDFS sink is fenced
	// off): ask the coordinator now, so that a member whose generation is over rejoins instead
	// of taking the partition back at each replay.
	s.heartbeat(ctx)
}

func (s *sinkRunner) later(ctx actor.Context, k tp) {
	self, system, epoch := ctx.Self(), ctx.ActorSystem(), s.epoch
	time.AfterFunc(100*time.Millisecond, func() { system.Root.Send(self, fetchAgain{epoch: epoch, tp: k}) })
}

func (s *sinkRunner) heartbeat(ctx actor.Context) {
	if s.member == "" || s.joining {
		return
	}
	member, gen := s.member, s.generation
	f := ctx.RequestFuture(s.coordinator(), &Heartbeat{wire.HeartbeatRequest{Group: s.cfg.Group, MemberID: s.member, Generation: s.generation}}, 5*time.Second)
	reenter(ctx, f, func(res any, err error) {
		// An answer about a membership the runner has left since (it joined again) is moot;
		// a replay in between (a new epoch) does not make it so.
		if member != s.member || gen != s.generation || s.joining {
			return
		}
		if r, ok := res.(*wire.AdminResponse); ok && r.Err != nil {
			s.n.logger.Info("sink rejoining", "flow", s.cfg.Flow, "group", s.cfg.Group, "reason", r.Err)
			s.join(ctx)
		} else if err != nil {
			// No answer: the coordinator may have stopped (it follows __offsets' leader). The
			// next heartbeat finds it again; a new one answers that the member is unknown.
			s.n.forgetCoordinator(s.cfg.Group)
		}
	})
}

// recycle keeps, for a Borrower, the memory of a fetch of k that Write is done with: the batches
// for k's next fetch to read into, but only while fetches fill at least a quarter of them (a
// partition catching up, or a busy one). A partition at its end, whose fetches read a batch or
// two, lets them go and its next fetch reads into memory of its own size: else every partition
// with a trickle of records would hold the largest fetch it ever read (MaxBytes, 1 MiB by
// default, or a larger first batch) for as long as the runner has it. What a partition keeps
// is thus at most four times what its last fetch read.
func (s *sinkRunner) recycle(k tp, batches []byte, msgs []connectors.Message) {
	if !s.borrower {
		return
	}
	if s.spare != nil && cap(batches) > 0 && len(batches) >= cap(batches)/4 {
		s.spare[k] = batches[:0]
	}
	s.msgs = msgs[:0]
}

// decodeMessages turns fetched batches into messages at or after from, appended to msgs[:0]
// (which may be nil), and returns the offset after the last batch.
func decodeMessages(k tp, from int64, b []byte, msgs []connectors.Message) ([]connectors.Message, int64, error) {
	if n := countRecords(b, from); cap(msgs) < n {
		msgs = make([]connectors.Message, 0, n)
	}
	msgs = msgs[:0]
	next, err := storage.DecodeBatches(b, from, func(off int64, r storage.Record) error {
		msgs = append(msgs, connectors.Message{Topic: k.topic, Partition: k.partition, Offset: off, Record: r})
		return nil
	})
	if err != nil {
		return nil, from, err
	}
	return msgs, next, nil
}

// countRecords is the number of records at or after from in batches b, as their headers say (up
// to the first header it cannot parse, which decoding reports).
func countRecords(b []byte, from int64) int {
	n := 0
	for p := 0; p < len(b); {
		h, err := storage.ParseHeader(b[p:])
		if err != nil {
			break
		}
		if h.Kind == storage.KindRecords && h.NextOffset() > from {
			n += int(h.NextOffset() - max(h.BaseOffset, from))
		}
		p += h.Size()
	}
	return n
}
