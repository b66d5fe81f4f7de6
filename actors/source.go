package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// SourceConfig configures a source runner: source -> interceptors -> topic.
type SourceConfig struct {
	// Flow names the flow; the source's position is committed in __offsets under the group
	// "source:"+Flow.
	Flow         string
	Source       connectors.Source
	Interceptors []connectors.Interceptor
	Topic        string
	// Acks is AcksAll unless set to AcksLeader (AcksNone is refused: positions commit only after
	// acknowledgement).
	Acks wire.Acks
	// ReadWait bounds one Read, so that the actor stays responsive (default 200 ms).
	ReadWait time.Duration
}

// SourceGroup is the __offsets group under which a flow's source position is committed.
func SourceGroup(flow string) string { return "source:" + flow }

type pull struct{}

type retryProduce struct {
	epoch     int
	partition int32
}

// sourceRunner runs one source. It reads a batch, sends it to the topic's partitions, and when
// every partition acknowledged, commits the source's position and reads the next: one batch in
// flight, which is the bound on records read again after a crash.
type sourceRunner struct {
	n   *Node
	cfg SourceConfig

	pids    []*actor.PID
	rr      int32
	epoch   int
	pending map[int32][]byte // batches not yet acknowledged, by partition
	tries   map[int32]int
	pos     []byte
	count   int
	done    bool
}

// NewSourceProps returns the props of a source runner on node n.
func NewSourceProps(n *Node, cfg SourceConfig) *actor.Props {
	if cfg.ReadWait <= 0 {
		cfg.ReadWait = 200 * time.Millisecond
	}
	if cfg.Acks != wire.AcksLeader {
		cfg.Acks = wire.AcksAll
	}
	return actor.PropsFromProducer(func() actor.Actor { return &sourceRunner{n: n, cfg: cfg} })
}

func (s *sourceRunner) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if err := s.start(ctx); err != nil {
			panic(fmt.Errorf("flow %s: source: %w", s.cfg.Flow, err))
		}
	case *actor.Stopping, *actor.Restarting:
		s.epoch++
		if err := s.cfg.Source.Close(); err != nil {
			s.n.logger.Warn("source close", "flow", s.cfg.Flow, "err", err)
		}
	case pull:
		s.pull(ctx)
	case retryProduce:
		if m.epoch == s.epoch {
			s.send(ctx, m.partition)
		}
	}
}

func (s *sourceRunner) start(ctx actor.Context) error {
	s.epoch++
	tm, ok := s.n.Topic(s.cfg.Topic)
	if !ok {
		return fmt.Errorf("topic %q does not exist", s.cfg.Topic)
	}
	s.pids = s.pids[:0]
	for p := range tm.Partitions {
		pid, err := s.n.Partition(s.cfg.Topic, p)
		if err != nil {
			return err
		}
		s.pids = append(s.pids, pid)
	}
	res, err := resultOf(ctx.RequestFuture(s.n.internalPID("offsets"), &FetchOffsets{Group: SourceGroup(s.cfg.Flow),
		Partitions: []wire.TopicPartitions{{Topic: s.cfg.Topic, Partitions: []int32{-1}}}}, 10*time.Second))
	if err != nil {
		return fmt.Errorf("read committed position: %w", err)
	}
	var pos []byte
	if r, ok := res.(*wire.FetchCommitResponse); ok && len(r.Offsets) == 1 {
		pos = r.Offsets[0].Metadata
	}
	octx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.cfg.Source.Open(octx, pos); err != nil {
		return fmt.Errorf("open at position %x: %w", pos, err)
	}
	s.n.logger.Info("source started", "flow", s.cfg.Flow, "topic", s.cfg.Topic, "position", fmt.Sprintf("%x", pos))
	ctx.Send(ctx.Self(), pull{})
	return nil
}

func (s *sourceRunner) pull(ctx actor.Context) {
	if s.done || len(s.pending) > 0 {
		return
	}
	n := s.n
	n.fault("source")("read")
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReadWait)
	recs, pos, err := s.cfg.Source.Read(rctx)
	cancel()
	if errors.Is(err, io.EOF) {
		s.done = true
		n.logger.Info("source finished", "flow", s.cfg.Flow)
		return
	}
	if err != nil {
		panic(fmt.Errorf("flow %s: source read: %w", s.cfg.Flow, err))
	}
	s.pos = pos
	// Interceptors, then partitioning: a key picks its partition by wire.PartitionForKey;
	// keyless records go to one partition per batch, round robin.
	byPart := map[int32][]storage.Record{}
	np := int32(len(s.pids))
	rr := s.rr % np
	s.rr++
	kept := 0
	for _, r := range recs {
		ok := true
		for _, ic := range s.cfg.Interceptors {
			if r, ok = ic.Intercept(r); !ok {
				break
			}
		}
		if !ok {
			continue
		}
		p := rr
		if len(r.Key) > 0 {
			p = wire.PartitionForKey(r.Key, np)
		}
		byPart[p] = append(byPart[p], r)
		kept++
	}
	s.count = len(recs)
	if kept == 0 {
		if len(recs) > 0 {
			s.commit(ctx)
		} else {
			ctx.Send(ctx.Self(), pull{})
		}
		return
	}
	s.pending = map[int32][]byte{}
	s.tries = map[int32]int{}
	for p, rs := range byPart {
		b, err := storage.EncodeBatch(rs)
		if err != nil {
			panic(fmt.Errorf("flow %s: encode: %w", s.cfg.Flow, err))
		}
		s.pending[p] = b
	}
	for p := range s.pending {
		s.send(ctx, p)
	}
}

// send produces the pending batch of partition p and handles the answer.
func (s *sourceRunner) send(ctx actor.Context, p int32) {
	b := s.pending[p]
	epoch := s.epoch
	pid := s.pids[p]
	if s.n.cluster != nil { // the leader moves: ask where it is now
		if cur, err := s.n.Partition(s.cfg.Topic, p); err == nil {
			pid = cur
		}
	}
	f := ctx.RequestFuture(pid, &Produce{Batch: b, Acks: s.cfg.Acks, Deadline: time.Now().Add(10 * time.Second).UnixMilli()}, 11*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		var e *wire.Error
		switch r := res.(type) {
		case *ProduceReply:
			e = r.Err
		default:
			e = wire.Errorf(wire.CodeTimeout, "no answer: %v", err)
		}
		if e == nil {
			delete(s.pending, p)
			if len(s.pending) == 0 {
				s.commit(ctx)
			}
			return
		}
		if !e.Code.Retriable() {
			panic(fmt.Errorf("flow %s: produce to %s/%d: %w", s.cfg.Flow, s.cfg.Topic, p, e))
		}
		s.tries[p]++
		wait := min(10*time.Millisecond<<min(s.tries[p], 8), 2*time.Second)
		s.n.logger.Debug("source produce retry", "flow", s.cfg.Flow, "partition", p, "err", e, "wait", wait)
		self, system := ctx.Self(), ctx.ActorSystem()
		time.AfterFunc(wait, func() { system.Root.Send(self, retryProduce{epoch: epoch, partition: p}) })
	})
}

// commit stores the position after the acknowledged batch, then reads the next.
func (s *sourceRunner) commit(ctx actor.Context) {
	epoch := s.epoch
	f := ctx.RequestFuture(s.n.internalPID("offsets"), &CommitOffsets{Group: SourceGroup(s.cfg.Flow),
		Offsets: []wire.PartitionOffset{{Topic: s.cfg.Topic, Partition: -1, Metadata: s.pos}}}, 10*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		r, ok := res.(*ProduceReply)
		if !ok || r.Err != nil {
			panic(fmt.Errorf("flow %s: commit source position: %v %v", s.cfg.Flow, err, r))
		}
		s.n.metrics.SourceRecords(s.cfg.Flow, s.count)
		s.pending = nil
		ctx.Send(ctx.Self(), pull{})
	})
}
