package actors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// produce checks a batch and proposes it.
func (r *replica) produce(ctx actor.Context, m *Produce) {
	reply := func(e *wire.Error) {
		if m.Acks != wire.AcksNone && ctx.Sender() != nil {
			ctx.Respond(&ProduceReply{BaseOffset: -1, Err: e})
		}
	}
	if r.rn == nil {
		reply(wire.Errorf(wire.CodeUnavailable, "partition %s is not running", r.cfg.Group()))
		return
	}
	h, err := storage.ParseBatch(m.Batch)
	switch {
	case err != nil:
		reply(wire.Errorf(wire.CodeCorruptBatch, "partition %s: %v", r.cfg.Group(), err))
		return
	case h.Kind != storage.KindRecords || h.Size() != len(m.Batch) || h.Count == 0:
		reply(wire.Errorf(wire.CodeCorruptBatch, "partition %s: want exactly one non-empty records batch", r.cfg.Group()))
		return
	}
	r.fault("produce")
	if m.Deadline > 0 && time.Now().UnixMilli() > m.Deadline {
		// Its sender stopped waiting: it may have sent it again already.
		reply(wire.Errorf(wire.CodeTimeout, "partition %s: the request reached the leader after its deadline", r.cfg.Group()))
		return
	}
	if idempotent(h) && r.sm == nil {
		replyOffset := func(base int64) {
			if m.Acks != wire.AcksNone && ctx.Sender() != nil {
				ctx.Respond(&ProduceReply{BaseOffset: base})
			}
		}
		if !r.checkSequence(h, reply, replyOffset) {
			return
		}
		if r.propose(ctx, m.Batch, m.Acks, ctx.Sender(), m.Deadline, false) {
			r.producers.proposed(h)
		}
		return
	}
	r.propose(ctx, m.Batch, m.Acks, ctx.Sender(), m.Deadline, false)
}

// propose hands a checked batch to raft and reports whether raft took it. Only the leader
// accepts proposals: raft could forward them, but the producer must learn the leader to send its
// next batches there. An exempt proposal is taken even at the in-flight limit.
func (r *replica) propose(ctx actor.Context, batch []byte, acks wire.Acks, replyTo *actor.PID, deadline int64, exempt bool) bool {
	fail := func(e *wire.Error) {
		if acks != wire.AcksNone && replyTo != nil {
			ctx.Send(replyTo, &ProduceReply{BaseOffset: -1, Err: e})
		}
	}
	if r.lead != r.cfg.ID {
		fail(wire.Errorf(wire.CodeNotLeader, "partition %s: leader is %d", r.cfg.Group(), r.lead))
		return false
	}
	if !exempt && r.full(len(batch)) {
		r.cfg.Metrics.overloaded(r.cfg.Topic)
		fail(wire.Errorf(wire.CodeOverloaded, "partition %s: %d bytes in flight", r.cfg.Group(), r.pending))
		return false
	}
	if err := r.submit(ctx, &proposal{data: batch, acks: acks, replyTo: replyTo, deadline: deadline}); err != nil {
		code := wire.CodeUnavailable
		if errors.Is(err, raft.ErrProposalDropped) {
			code = wire.CodeOverloaded
		}
		fail(wire.Errorf(code, "partition %s: %v", r.cfg.Group(), err))
		return false
	}
	return true
}

// full reports whether a proposal of n bytes would exceed the in-flight limit (one proposal
// always fits).
func (r *replica) full(n int) bool {
	return r.pending > 0 && r.pending+n > r.cfg.MaxPendingBytes
}

// submit hands a proposal to raft and tracks it until its answer.
func (r *replica) submit(ctx actor.Context, p *proposal) error {
	if err := r.rn.Propose(p.data); err != nil {
		return err
	}
	h, _ := storage.ParseHeader(p.data)
	p.records = int(h.Count)
	r.unsaved = append(r.unsaved, p)
	r.pending += len(p.data)
	r.queueReady(ctx)
	return nil
}

// queueReady makes the actor process raft's Ready after the messages already in its mailbox, so
// that the proposals they carry share one write (and one fsync).
func (r *replica) queueReady(ctx actor.Context) {
	if !r.readyQueued {
		r.readyQueued = true
		ctx.Send(ctx.Self(), processReady{})
	}
}

// step feeds a raft message from another replica.
func (r *replica) step(ctx actor.Context, m *RaftMessage) {
	if r.rn == nil {
		return
	}
	var msg pb.Message
	if err := proto.Unmarshal(m.Data, &msg); err != nil {
		r.cfg.Logger.Warn("bad raft message", "group", r.cfg.Group(), "err", err)
		return
	}
	if err := r.rn.Step(&msg); err != nil {
		r.cfg.Logger.Debug("raft step", "group", r.cfg.Group(), "err", err)
	}
	r.queueReady(ctx)
}

// handleReady carries out raft's Ready until there is none: persist, send, apply, answer.
func (r *replica) handleReady(ctx actor.Context) {
	for r.rn != nil && r.rn.HasReady() {
		rd := r.rn.Ready()
		r.fault("ready")
		if rd.SoftState != nil && (rd.SoftState.Lead != r.lead || r.term != r.rn.BasicStatus().HardState.GetTerm()) {
			r.leaderChanged(ctx, rd.SoftState.Lead)
		}
		if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
			if err := r.log.ApplySnapshot(rd.Snapshot); err != nil {
				panic(fmt.Errorf("partition %s: apply snapshot: %w", r.cfg.Group(), err))
			}
			r.applied = rd.Snapshot.GetMetadata().GetIndex()
			r.hw, _ = r.log.CommittedOffset(r.applied)
			cs := rd.Snapshot.GetMetadata().GetConfState()
			r.voters = append(append([]uint64(nil), cs.GetVoters()...), cs.GetVotersOutgoing()...)
			r.learners = append(append([]uint64(nil), cs.GetLearners()...), cs.GetLearnersNext()...)
			r.resetStateMachine()
			// The batches the snapshot stands for were never seen here: their producers are
			// forgotten (their next batches are taken whatever their sequence).
			r.producers = producerTable{}
		}
		last, _ := r.log.LastIndex()
		end := r.log.EndOffset()
		if err := r.log.SaveEntries(rd.Entries); err != nil {
			// The log refuses further writes after a failed write or sync; restarting the actor
			// reopens it, and recovery keeps what is durable.
			panic(fmt.Errorf("partition %s: save entries: %w", r.cfg.Group(), err))
		}
		if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
			if err := r.log.SetHardState(rd.HardState); err != nil {
				panic(fmt.Errorf("partition %s: hard state: %w", r.cfg.Group(), err))
			}
		}
		if len(rd.Entries) > 0 {
			r.matchProposals(ctx, rd.Entries, last, end)
		}
		if len(rd.Messages) > 0 && r.cfg.Transport != nil {
			for _, id := range r.cfg.Transport.Send(ctx, r.cfg.Group(), rd.Messages) {
				r.rn.ReportUnreachable(id)
			}
			// A snapshot is only a position (storage.Log.Snapshot): it is complete once sent.
			// If it is lost, the follower's next answer makes the leader send it again.
			for _, m := range rd.Messages {
				if m.GetType() == pb.MessageType_MsgSnap {
					r.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFinish)
				}
			}
		}
		if len(rd.CommittedEntries) > 0 {
			r.apply(ctx, rd.CommittedEntries)
		}
		r.rn.Advance(rd)
		r.campaignAlone()
	}
}

// campaignAlone makes a single voter elect itself at once instead of after an election timeout
// (raft refuses while conf changes are committed but unapplied, so it is tried after each
// Ready).
func (r *replica) campaignAlone() {
	if r.lead != 0 || len(r.voters) != 1 || r.voters[0] != r.cfg.ID {
		return
	}
	if st := r.rn.BasicStatus(); st.RaftState == raft.StateFollower {
		_ = r.rn.Campaign()
	}
}

// leaderChanged notes a new leader or term; proposals of the old term get NotLeader (they may
// still commit under the new leader: the producer's retry is made safe by idempotence).
func (r *replica) leaderChanged(ctx actor.Context, lead uint64) {
	st := r.rn.BasicStatus()
	r.cfg.Logger.Info("partition leader", "group", r.cfg.Group(), "leader", lead, "term", st.HardState.GetTerm(), "self", r.cfg.ID)
	if r.lead == r.cfg.ID && lead != r.cfg.ID {
		r.failPending(ctx, wire.Errorf(wire.CodeNotLeader, "partition %s lost leadership", r.cfg.Group()))
		if r.cpInFlight {
			r.abandonCheckpoint("lost leadership")
		}
	}
	r.lead, r.term = lead, st.HardState.GetTerm()
	r.cfg.Metrics.leading(r.cfg.Topic, r.cfg.Partition, lead == r.cfg.ID)
	r.leaderReady = false
	r.producers.leaderChanged()
	r.confPendingUntil = time.Time{}
	if r.cfg.OnLeader != nil {
		r.cfg.OnLeader(lead)
	}
	if lead != r.cfg.ID {
		for _, f := range r.parked {
			ctx.Send(f.replyTo, &wire.FetchResponse{HighWatermark: r.hw, Err: wire.Errorf(wire.CodeNotLeader, "partition %s: leader is %d", r.cfg.Group(), lead)})
		}
		r.parked = nil
	}
}

// matchProposals finds this leader's proposals among the entries just saved and answers
// acks=leader. The entries of the leader's term that carry data are its proposals, in the order
// proposed (proposals are never forwarded: followers refuse them), so they match the queue in
// order; the batch header, which holds the CRC of the body, confirms each match.
func (r *replica) matchProposals(ctx actor.Context, ents []*pb.Entry, lastBefore uint64, end int64) {
	if len(r.unsaved) == 0 {
		return
	}
	contiguous := ents[0].GetIndex() == lastBefore+1
	off := end
	for _, e := range ents {
		n := int64(0)
		if e.GetType() == pb.EntryType_EntryNormal && len(e.Data) > 0 {
			if h, err := storage.ParseHeader(e.Data); err == nil {
				n = int64(h.Count)
			}
		}
		if len(r.unsaved) > 0 && e.GetTerm() == r.term && storage.SameBatch(e.Data, r.unsaved[0].data) {
			p := r.unsaved[0]
			r.unsaved = r.unsaved[1:]
			p.index = e.GetIndex()
			p.base = off
			if !contiguous {
				next, err := r.log.CommittedOffset(p.index)
				if err != nil {
					panic(fmt.Errorf("partition %s: offset of entry %d: %w", r.cfg.Group(), p.index, err))
				}
				p.base = next - n
			}
			switch p.acks {
			case wire.AcksAll:
				r.uncommit = append(r.uncommit, p)
			default:
				r.answer(ctx, p, nil)
			}
		}
		off += n
	}
	// Whatever was not found was not appended; raft appends a leader's proposals at once, so
	// this happens only when leadership changed in between.
	for _, p := range r.unsaved {
		r.answer(ctx, p, wire.Errorf(wire.CodeNotLeader, "partition %s: proposal not appended", r.cfg.Group()))
	}
	r.unsaved = r.unsaved[:0]
}

// answer replies to a proposal and releases its bytes.
func (r *replica) answer(ctx actor.Context, p *proposal, e *wire.Error) {
	r.pending -= len(p.data)
	if p.checkpoint != 0 {
		r.checkpointAnswered(ctx, p, e)
	}
	if e == nil {
		r.cfg.Metrics.recordsIn(r.cfg.Topic, p.records, len(p.data))
	}
	if p.acks == wire.AcksNone || p.replyTo == nil {
		return
	}
	if e != nil {
		ctx.Send(p.replyTo, &ProduceReply{BaseOffset: -1, Err: e})
		return
	}
	ctx.Send(p.replyTo, &ProduceReply{BaseOffset: p.base})
}

// failPending answers every proposal in flight with e.
func (r *replica) failPending(ctx actor.Context, e *wire.Error) {
	for _, p := range r.unsaved {
		r.answer(ctx, p, e)
	}
	for _, p := range r.uncommit {
		r.answer(ctx, p, e)
	}
	r.unsaved, r.uncommit = nil, nil
	r.pending = 0
}

// apply applies committed entries: configuration changes to raft, records to the state machine
// of an internal partition; then the high watermark moves and waiting requests are answered.
func (r *replica) apply(ctx actor.Context, ents []*pb.Entry) {
	var smResults map[uint64]*wire.Error
	off := r.hw // the offset of the next committed record
	for _, e := range ents {
		r.fault("apply")
		if e.GetTerm() == r.term && r.lead == r.cfg.ID {
			r.leaderReady = true
		}
		switch e.GetType() {
		case pb.EntryType_EntryNormal:
			if r.sm == nil && len(e.Data) > 0 {
				if h, err := storage.ParseHeader(e.Data); err == nil && h.Kind == storage.KindRecords {
					if idempotent(h) {
						r.producers.applied(h, off, e.GetIndex())
					}
					off += int64(h.Count)
				}
			}
			if r.sm != nil && len(e.Data) > 0 {
				next, err := r.log.CommittedOffset(e.GetIndex())
				if err != nil {
					panic(fmt.Errorf("partition %s: offset of entry %d: %w", r.cfg.Group(), e.GetIndex(), err))
				}
				h, _ := storage.ParseHeader(e.Data)
				res, err := r.applyBatch(e.Data, next-int64(h.Count), 0)
				if err != nil {
					panic(fmt.Errorf("partition %s: apply entry %d: %w", r.cfg.Group(), e.GetIndex(), err))
				}
				if res != nil {
					if smResults == nil {
						smResults = map[uint64]*wire.Error{}
					}
					smResults[e.GetIndex()] = res
				}
			}
		case pb.EntryType_EntryConfChange:
			var cc pb.ConfChange
			if err := proto.Unmarshal(e.Data, &cc); err != nil {
				panic(fmt.Errorf("partition %s: conf change %d: %w", r.cfg.Group(), e.GetIndex(), err))
			}
			r.applyConfState(e.GetIndex(), r.rn.ApplyConfChange(&cc))
		case pb.EntryType_EntryConfChangeV2:
			var cc pb.ConfChangeV2
			if err := proto.Unmarshal(e.Data, &cc); err != nil {
				panic(fmt.Errorf("partition %s: conf change %d: %w", r.cfg.Group(), e.GetIndex(), err))
			}
			r.applyConfState(e.GetIndex(), r.rn.ApplyConfChange(&cc))
		}
	}
	last := ents[len(ents)-1].GetIndex()
	r.applied = last
	r.log.SetApplied(last)
	hw, err := r.log.CommittedOffset(last)
	if err != nil {
		panic(fmt.Errorf("partition %s: high watermark at %d: %w", r.cfg.Group(), last, err))
	}
	if r.sm == nil && off != hw {
		r.cfg.Logger.Error("applied records do not end at the high watermark", "group", r.cfg.Group(), "counted", off, "hw", hw)
	}
	r.hw = hw
	n := 0
	for _, p := range r.uncommit {
		if p.index > last {
			break
		}
		r.answer(ctx, p, smResults[p.index])
		n++
	}
	r.uncommit = r.uncommit[n:]
	r.serveParked(ctx)
	r.cfg.Metrics.partitionOffsets(r.cfg.Topic, r.cfg.Partition, r.log.StartOffset(), r.hw, r.log.EndOffset())
}

func (r *replica) applyConfState(index uint64, cs *pb.ConfState) {
	r.voters = append(append([]uint64(nil), cs.GetVoters()...), cs.GetVotersOutgoing()...)
	r.learners = append(append([]uint64(nil), cs.GetLearners()...), cs.GetLearnersNext()...)
	if err := r.log.SetConfState(index, cs); err != nil {
		panic(fmt.Errorf("partition %s: conf state: %w", r.cfg.Group(), err))
	}
	r.confPendingUntil = time.Time{}
	r.cfg.Logger.Info("configuration", "group", r.cfg.Group(), "voters", r.voters, "learners", r.learners, "self", r.cfg.ID)
	in := slices.Contains(r.voters, r.cfg.ID) || slices.Contains(r.learners, r.cfg.ID)
	if in {
		r.member = true
	}
	if r.member && !in && !r.removed {
		r.removed = true
		if r.cfg.OnRemoved != nil {
			r.cfg.OnRemoved()
		}
	}
}

// fetch serves committed batches, or parks the request until there are some or it times out.
func (r *replica) fetch(ctx actor.Context, m *Fetch) {
	if e := r.readable(); e != nil {
		ctx.Respond(&wire.FetchResponse{HighWatermark: r.hw, Err: e})
		return
	}
	// A new leader learns the commit index only once it commits an entry of its own term, so
	// for a moment its high watermark may be below the one its predecessor served: a consumer's
	// position there is valid (every committed entry is in the new leader's log), and is
	// answered as caught up, not out of range, which would have the consumer reset its position
	// (to the latest offset, skipping records, or to the earliest). Only positions beyond the
	// log's end are out of range.
	start, end := r.log.StartOffset(), r.log.EndOffset()
	switch fetchPlanFor(m.Offset, start, r.hw, end, m.MaxWaitMs > 0) {
	case fetchOutOfRange:
		ctx.Respond(&wire.FetchResponse{HighWatermark: r.hw, StartOffset: start,
			Err: wire.Errorf(wire.CodeOffsetOutOfRange, "partition %s: offset %d not in [%d, %d]", r.cfg.Group(), m.Offset, start, max(r.hw, end))})
	case fetchPark:
		r.parked = append(r.parked, parkedFetch{req: m, replyTo: ctx.Sender(), deadline: time.Now().Add(time.Duration(m.MaxWaitMs) * time.Millisecond)})
	case fetchEmpty:
		ctx.Respond(&wire.FetchResponse{HighWatermark: r.hw, StartOffset: start})
	default:
		ctx.Respond(r.read(m))
	}
}

// fetchPlan is what a leader does with a fetch.
type fetchPlan int

const (
	fetchRead       fetchPlan = iota // committed records at the offset: read them
	fetchPark                        // none yet: wait for some (or the fetch's deadline)
	fetchEmpty                       // none yet, and the fetch does not wait: answer empty
	fetchOutOfRange                  // the offset is not in the log
)

// fetchPlanFor decides a fetch at off on a log holding [start, end) with high watermark hw.
// Offsets from hw to the log's end are waited for, not out of range: see fetch.
func fetchPlanFor(off, start, hw, end int64, wait bool) fetchPlan {
	switch {
	case off < start || off > max(hw, end):
		return fetchOutOfRange
	case off < hw:
		return fetchRead
	case wait:
		return fetchPark
	}
	return fetchEmpty
}

func (r *replica) readable() *wire.Error {
	switch {
	case r.rn == nil:
		return wire.Errorf(wire.CodeUnavailable, "partition %s is not running", r.cfg.Group())
	case r.lead != r.cfg.ID:
		return wire.Errorf(wire.CodeNotLeader, "partition %s: leader is %d", r.cfg.Group(), r.lead)
	}
	return nil
}

// read reads committed batches for a fetch.
func (r *replica) read(m *Fetch) *wire.FetchResponse {
	r.fault("fetch")
	maxBytes := int(m.MaxBytes)
	if maxBytes <= 0 || maxBytes > r.cfg.MaxFetchBytes {
		maxBytes = r.cfg.MaxFetchBytes
	}
	resp := &wire.FetchResponse{HighWatermark: r.hw, StartOffset: r.log.StartOffset()}
	b, err := r.log.Read(m.Into[:0], m.Offset, maxBytes, r.hw)
	if err != nil {
		code := wire.CodeStorage
		if errors.Is(err, storage.ErrOffsetOutOfRange) {
			code = wire.CodeOffsetOutOfRange
		}
		resp.Err = wire.Errorf(code, "partition %s: %v", r.cfg.Group(), err)
		return resp
	}
	resp.Batches = b
	if r.cfg.Metrics != nil {
		n := 0
		for p := 0; p < len(b); {
			h, err := storage.ParseHeader(b[p:])
			if err != nil {
				break
			}
			if h.NextOffset() > m.Offset {
				n += int(h.NextOffset() - max(h.BaseOffset, m.Offset))
			}
			p += h.Size()
		}
		r.cfg.Metrics.recordsOut(r.cfg.Topic, n, len(b))
	}
	return resp
}

// withdraw answers, empty, the parked fetches of the waiter m names (a Kafka fetch that was
// answered through another partition).
func (r *replica) withdraw(ctx actor.Context, m *WithdrawFetch) {
	kept := r.parked[:0]
	for _, f := range r.parked {
		if f.replyTo.Address == m.Address && f.replyTo.Id == m.ID {
			ctx.Send(f.replyTo, &wire.FetchResponse{HighWatermark: r.hw, StartOffset: r.log.StartOffset()})
			continue
		}
		kept = append(kept, f)
	}
	clear(r.parked[len(kept):])
	r.parked = kept
}

// serveParked answers parked fetches that new data or their deadline has released.
func (r *replica) serveParked(ctx actor.Context) {
	if len(r.parked) == 0 {
		return
	}
	now := time.Now()
	kept := r.parked[:0]
	for _, f := range r.parked {
		switch {
		case f.req.Offset < r.hw:
			ctx.Send(f.replyTo, r.read(f.req))
		case !now.Before(f.deadline):
			ctx.Send(f.replyTo, &wire.FetchResponse{HighWatermark: r.hw, StartOffset: r.log.StartOffset()})
		default:
			kept = append(kept, f)
		}
	}
	clear(r.parked[len(kept):])
	r.parked = kept
}

// onTick drives raft's clock, expires parked fetches and acks=all proposals past their deadline,
// and runs retention now and then.
func (r *replica) onTick(ctx actor.Context) {
	if r.rn == nil {
		return
	}
	r.rn.Tick()
	r.serveParked(ctx)
	now := time.Now()
	r.campaignAlone()
	if len(r.uncommit) > 0 {
		ms := now.UnixMilli()
		kept := r.uncommit[:0]
		for _, p := range r.uncommit {
			if p.deadline > 0 && ms > p.deadline {
				r.answer(ctx, p, wire.Errorf(wire.CodeTimeout, "partition %s: not committed in time (it may still be)", r.cfg.Group()))
				continue
			}
			kept = append(kept, p)
		}
		r.uncommit = kept
	}
	if r.cfg.RetentionEvery > 0 && now.Sub(r.lastRetention) >= r.cfg.RetentionEvery {
		r.lastRetention = now
		if n, err := r.log.ApplyRetention(); err != nil {
			r.cfg.Logger.Warn("retention", "group", r.cfg.Group(), "err", err)
		} else if n > 0 {
			r.cfg.Logger.Info("retention deleted segments", "group", r.cfg.Group(), "segments", n, "start", r.log.StartOffset())
		}
	}
	r.maybeCheckpoint(ctx)
	r.driveMembership(ctx)
	r.queueReady(ctx)
}

// maybeCheckpoint takes a checkpoint of the state machine (see Checkpointer) when it is due
// and none of this leader's proposals is in flight, so that everything before the checkpoint in
// the log is in it, and proposes its batches (the rest of them, on later calls, as the
// in-flight limit allows; other proposals may come in between).
func (r *replica) maybeCheckpoint(ctx actor.Context) {
	cp, ok := r.sm.(Checkpointer)
	if !ok || r.cfg.CheckpointRecords <= 0 || r.lead != r.cfg.ID {
		return
	}
	if r.cpInFlight {
		r.proposeCheckpoint(ctx)
		return
	}
	since := r.hw - r.cpBase
	if since < max(r.cfg.CheckpointRecords, r.cpMinSince) || len(r.unsaved) > 0 || len(r.uncommit) > 0 || r.hw != r.log.EndOffset() {
		return
	}
	batches, n, err := cp.Checkpoint(r.hw)
	switch {
	case err != nil:
		r.cfg.Logger.Warn("checkpoint not taken", "group", r.cfg.Group(), "err", err)
		r.cpMinSince = since + r.cfg.CheckpointRecords // try again later, not every tick
		return
	case len(batches) == 0:
		return
	case int64(n)*2 > since:
		r.cpMinSince = int64(n) * 2
		return
	}
	r.cpInFlight, r.cpRest, r.cpProposed = true, batches, 0
	r.proposeCheckpoint(ctx)
}

// proposeCheckpoint proposes the checkpoint's batches still to propose, as many as the
// in-flight limit takes now.
func (r *replica) proposeCheckpoint(ctx actor.Context) {
	for len(r.cpRest) > 0 && !r.full(len(r.cpRest[0])) {
		p := &proposal{data: r.cpRest[0], acks: wire.AcksAll}
		if r.cpProposed == 0 {
			p.checkpoint |= cpFirst
		}
		if len(r.cpRest) == 1 {
			p.checkpoint |= cpLast
		}
		if err := r.submit(ctx, p); errors.Is(err, raft.ErrProposalDropped) {
			return // raft's own limit on uncommitted entries: go on later
		} else if err != nil {
			r.abandonCheckpoint(err)
			return
		}
		r.cpRest, r.cpProposed = r.cpRest[1:], r.cpProposed+1
	}
}

// abandonCheckpoint gives up the checkpoint in flight. The batches already proposed are applied
// like any records (they hold state that later commits override).
func (r *replica) abandonCheckpoint(cause any) {
	for _, ps := range [][]*proposal{r.unsaved, r.uncommit} {
		for _, p := range ps {
			p.checkpoint = 0
		}
	}
	r.cpInFlight, r.cpRest = false, nil
	r.cfg.Logger.Warn("checkpoint abandoned", "group", r.cfg.Group(), "cause", cause)
}

// checkpointAnswered follows a checkpoint's batches to their commit; after the last one, the
// log before the checkpoint goes.
func (r *replica) checkpointAnswered(ctx actor.Context, p *proposal, e *wire.Error) {
	if e != nil {
		r.abandonCheckpoint(e)
		return
	}
	if p.checkpoint&cpFirst != 0 {
		r.cpStart = p.base
	}
	if p.checkpoint&cpLast == 0 {
		return
	}
	r.cpInFlight = false
	r.cpBase = r.cpStart
	// The followers learn where the checkpoint begins from a marker record after it, and
	// delete their log before it when they apply the marker, as this leader does now.
	r.propose(ctx, checkpointMarker(r.cpStart), wire.AcksAll, nil, 0, true)
	r.deleteBeforeCheckpoint(r.cpStart)
}

// checkpointMarkKey is the key of the record that follows a committed checkpoint: its value is
// the offset where the checkpoint begins (8 bytes, big-endian). The replica consumes it; the
// state machine never sees it.
const checkpointMarkKey = "\x00weir/checkpoint"

func checkpointMarker(start int64) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(start))
	b, err := storage.EncodeBatch([]storage.Record{{Key: []byte(checkpointMarkKey), Value: v, Timestamp: nowMillis()}})
	if err != nil {
		panic(err)
	}
	return b
}

// deleteBeforeCheckpoint deletes the log before a committed checkpoint that begins at start
// (whole segments only).
func (r *replica) deleteBeforeCheckpoint(start int64) {
	r.cpBase = max(r.cpBase, start)
	if start <= r.log.StartOffset() {
		return
	}
	if err := r.log.DeleteBefore(start); err != nil {
		r.cfg.Logger.Warn("checkpoint: deleting the log before it", "group", r.cfg.Group(), "err", err)
		return
	}
	r.cfg.Logger.Debug("log deleted before a checkpoint", "group", r.cfg.Group(), "start", r.log.StartOffset())
}

func (r *replica) status() *Status {
	st := &Status{Group: r.cfg.Group(), NodeID: r.cfg.ID, Leader: r.lead, Term: r.term, HighWatermark: r.hw,
		Voters: append([]uint64(nil), r.voters...), Learners: append([]uint64(nil), r.learners...)}
	if r.log == nil {
		st.Err = wire.Errorf(wire.CodeUnavailable, "partition %s is not running", r.cfg.Group())
		return st
	}
	st.StartOffset, st.EndOffset, st.Parked = r.log.StartOffset(), r.log.EndOffset(), len(r.parked)
	return st
}

func (r *replica) listOffsets(m *ListOffsets) *wire.ListOffsetsResponse {
	if e := r.readable(); e != nil {
		return &wire.ListOffsetsResponse{Offset: -1, Err: e}
	}
	switch m.Spec {
	case wire.OffsetEarliest:
		return &wire.ListOffsetsResponse{Offset: r.log.StartOffset()}
	case wire.OffsetLatest:
		return &wire.ListOffsetsResponse{Offset: r.hw}
	case wire.OffsetTimestamp:
		off, found, err := r.log.OffsetForTime(m.Timestamp)
		if err != nil {
			return &wire.ListOffsetsResponse{Offset: -1, Err: wire.Errorf(wire.CodeStorage, "partition %s: %v", r.cfg.Group(), err)}
		}
		if !found || off > r.hw {
			off = r.hw
		}
		return &wire.ListOffsetsResponse{Offset: off}
	}
	return &wire.ListOffsetsResponse{Offset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "offset spec %d", m.Spec)}
}

// resetStateMachine starts an internal partition's state afresh after a snapshot emptied the
// log: the leader's log after the snapshot begins with a checkpoint (Checkpointer), which
// rebuilds the state, so what this replica held before must not linger (offsets of a topic
// deleted meanwhile, say).
func (r *replica) resetStateMachine() {
	if r.sm == nil {
		return
	}
	r.sm = r.cfg.NewStateMachine()
	if rp, ok := r.sm.(interface{ Replayed() }); ok {
		rp.Replayed()
	}
	r.cpBase, r.cpInFlight, r.cpRest, r.cpMinSince = r.log.StartOffset(), false, nil, 0
}
