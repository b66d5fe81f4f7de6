package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// SourceConfig configures a source runner: source -> interceptors -> topic, or topics.
type SourceConfig struct {
	// Flow names the flow; the source's position is committed in __offsets under the group
	// "source:"+Flow, as topic Topic's partition -1.
	Flow         string
	Source       connectors.Source
	Interceptors []connectors.Interceptor
	Topic        string
	// Selector, if set, routes each record to its topics (Topic must be the first of them);
	// otherwise every record goes to Topic.
	Selector connectors.Selector
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
	epoch int
	to    topicPart
}

// topicPart names a partition of a topic.
type topicPart struct {
	topic     string
	partition int32
}

// sourceRunner runs one source. It reads a batch, sends it to the topics' partitions, and when
// every partition acknowledged, commits the source's position and reads the next: one batch in
// flight, which is the bound on records read again after a crash.
type sourceRunner struct {
	n   *Node
	cfg SourceConfig

	pids      map[string][]*actor.PID // by topic, by partition
	rr        int32
	epoch     int
	pending   map[topicPart][]byte // batches not yet acknowledged
	tries     map[topicPart]int
	pos       []byte
	committed []byte // the position committed last (or found at start)
	// committing: the position after acknowledged batches is on its way to __offsets; a stop
	// commits it again and waits, so that its node closing next does not lose it.
	committing bool
	inflight   map[topicPart]*actor.Future // produces of pending batches awaiting their answer
	count      int
	done       bool
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
		s.epoch = nextEpoch()
		if !s.committing && len(s.pending) > 0 && len(s.inflight) == len(s.pending) {
			// Every pending batch is on its way: if each is acknowledged, the position after
			// them is committed below instead of reading them again at the next start.
			acked := true
			for _, f := range s.inflight {
				res, err := f.Result()
				if e, ok := res.(*Envelope); ok && err == nil {
					res, err = Unwrap(e)
				}
				if r, ok := res.(*ProduceReply); !ok || err != nil || r.Err != nil {
					acked = false
				}
			}
			s.committing = acked
		}
		if s.committing {
			res, err := s.n.system.Root.RequestFuture(s.n.internalPID("offsets"), s.commitRequest(), 3*time.Second).Result()
			if r, ok := res.(*ProduceReply); !ok || r.Err != nil {
				s.n.logger.Info("source commit at stop failed; its last acknowledged batch will be read again", "flow", s.cfg.Flow, "err", err, "reply", res)
			}
		}
		if err := s.cfg.Source.Close(); err != nil {
			s.n.logger.Warn("source close", "flow", s.cfg.Flow, "err", err)
		}
	case pull:
		s.pull(ctx)
	case retryProduce:
		if _, ok := s.pending[m.to]; ok && m.epoch == s.epoch {
			s.send(ctx, m.to)
		}
	}
}

func (s *sourceRunner) start(ctx actor.Context) error {
	s.epoch = nextEpoch()
	topics := []string{s.cfg.Topic}
	if s.cfg.Selector != nil {
		topics = s.cfg.Selector.Topics()
	}
	for i, t := range topics {
		if slices.Contains(topics[:i], t) {
			return fmt.Errorf("the selector names topic %q twice", t)
		}
	}
	s.pids = map[string][]*actor.PID{}
	for _, t := range topics {
		tm, ok := s.n.Topic(t)
		if !ok {
			return fmt.Errorf("topic %q does not exist", t)
		}
		for p := range tm.Partitions {
			pid, err := s.n.Partition(t, p)
			if err != nil {
				return err
			}
			s.pids[t] = append(s.pids[t], pid)
		}
	}
	// The position is committed under Topic; a flow whose selector's first topic changed (a
	// route added, or a flow that had one topic given a selector) finds it under another.
	ask := []wire.TopicPartitions{{Topic: s.cfg.Topic, Partitions: []int32{-1}}}
	for _, t := range topics {
		if t != s.cfg.Topic {
			ask = append(ask, wire.TopicPartitions{Topic: t, Partitions: []int32{-1}})
		}
	}
	res, err := resultOf(ctx.RequestFuture(s.n.internalPID("offsets"), &FetchOffsets{Group: SourceGroup(s.cfg.Flow),
		Partitions: ask}, 10*time.Second))
	if err != nil {
		return fmt.Errorf("read committed position: %w", err)
	}
	var pos []byte
	if r, ok := res.(*wire.FetchCommitResponse); ok {
		found := map[string][]byte{}
		for _, o := range r.Offsets {
			if len(o.Metadata) > 0 {
				found[o.Topic] = o.Metadata
			}
		}
		for _, tp := range ask {
			if p, ok := found[tp.Topic]; ok {
				pos = p
				break
			}
		}
	}
	s.committed = pos
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
	// Interceptors, the selector, then partitioning: a key picks its partition by
	// wire.PartitionForKey; keyless records go to one partition per batch and topic, round
	// robin.
	byPart := map[topicPart][]storage.Record{}
	rr := s.rr
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
		topics := []string{s.cfg.Topic}
		if s.cfg.Selector != nil {
			topics = s.cfg.Selector.Select(r)
		}
		for _, t := range topics {
			pids, ok := s.pids[t]
			if !ok {
				panic(fmt.Errorf("flow %s: the selector chose topic %q, which is not among its Topics() %v", s.cfg.Flow, t, s.cfg.Selector.Topics()))
			}
			np := int32(len(pids))
			p := int32(uint32(rr) % uint32(np))
			if len(r.Key) > 0 {
				p = wire.PartitionForKey(r.Key, np)
			}
			k := topicPart{t, p}
			byPart[k] = append(byPart[k], r)
		}
		if len(topics) > 0 {
			kept++
		}
	}
	s.count = len(recs)
	if kept == 0 {
		// Nothing to produce: commit the position if it moved (records all filtered out, or a
		// source that moved without records, such as a file source started at the end of its
		// files), else read again.
		if len(recs) > 0 || pos != nil && !bytes.Equal(pos, s.committed) {
			s.commit(ctx)
		} else {
			ctx.Send(ctx.Self(), pull{})
		}
		return
	}
	s.pending = map[topicPart][]byte{}
	s.tries = map[topicPart]int{}
	s.inflight = map[topicPart]*actor.Future{}
	for k, rs := range byPart {
		b, err := storage.EncodeBatch(rs)
		if err != nil {
			panic(fmt.Errorf("flow %s: encode: %w", s.cfg.Flow, err))
		}
		s.pending[k] = b
	}
	for k := range s.pending {
		s.send(ctx, k)
	}
}

// send produces the pending batch of partition k and handles the answer.
func (s *sourceRunner) send(ctx actor.Context, k topicPart) {
	b := s.pending[k]
	epoch := s.epoch
	pid := s.pids[k.topic][k.partition]
	if s.n.cluster != nil { // the leader moves: ask where it is now
		if cur, err := s.n.Partition(k.topic, k.partition); err == nil {
			pid = cur
		}
	}
	f := ctx.RequestFuture(pid, &Produce{Batch: b, Acks: s.cfg.Acks, Deadline: time.Now().Add(10 * time.Second).UnixMilli()}, 11*time.Second)
	if s.inflight == nil {
		s.inflight = map[topicPart]*actor.Future{}
	}
	s.inflight[k] = f
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		delete(s.inflight, k)
		var e *wire.Error
		switch r := res.(type) {
		case *ProduceReply:
			e = r.Err
		default:
			e = wire.Errorf(wire.CodeTimeout, "no answer: %v", err)
		}
		if e == nil {
			delete(s.pending, k)
			if len(s.pending) == 0 {
				s.commit(ctx)
			}
			return
		}
		if !e.Code.Retriable() {
			panic(fmt.Errorf("flow %s: produce to %s/%d: %w", s.cfg.Flow, k.topic, k.partition, e))
		}
		s.tries[k]++
		wait := min(10*time.Millisecond<<min(s.tries[k], 8), 2*time.Second)
		s.n.logger.Debug("source produce retry", "flow", s.cfg.Flow, "topic", k.topic, "partition", k.partition, "err", e, "wait", wait)
		self, system := ctx.Self(), ctx.ActorSystem()
		time.AfterFunc(wait, func() { system.Root.Send(self, retryProduce{epoch: epoch, to: k}) })
	})
}

// commit stores the position after the acknowledged batch, then reads the next.
func (s *sourceRunner) commit(ctx actor.Context) {
	epoch := s.epoch
	s.committing = true
	f := ctx.RequestFuture(s.n.internalPID("offsets"), s.commitRequest(), 10*time.Second)
	reenter(ctx, f, func(res any, err error) {
		if epoch != s.epoch {
			return
		}
		s.committing = false
		r, ok := res.(*ProduceReply)
		if !ok || r.Err != nil {
			panic(fmt.Errorf("flow %s: commit source position: %v %v", s.cfg.Flow, err, r))
		}
		s.committed = s.pos
		s.n.metrics.SourceRecords(s.cfg.Flow, s.count)
		if a, ok := s.cfg.Source.(connectors.Acker); ok {
			a.Acked(s.pos)
		}
		s.pending = nil
		ctx.Send(ctx.Self(), pull{})
	})
}

// commitRequest commits the source's position.
func (s *sourceRunner) commitRequest() *CommitOffsets {
	return &CommitOffsets{Group: SourceGroup(s.cfg.Flow), Offsets: []wire.PartitionOffset{{Topic: s.cfg.Topic, Partition: -1, Metadata: s.pos}}}
}

// runEpochs numbers the runs of source and sink runners across the process: a timer or a
// reply of an earlier run (of this actor, or of one defined before it under the same name,
// which gets the same PID) carries a number no later run has.
var runEpochs atomic.Int64

func nextEpoch() int { return int(runEpochs.Add(1)) }
