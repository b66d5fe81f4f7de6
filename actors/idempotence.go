package actors

import (
	"slices"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// Idempotent producers, as in Kafka: a producer stamps each batch with its producer id and the
// sequence number of the batch's first record, counted per partition. Every replica follows the
// sequences of the committed batches (producerTable.applied); the leader also follows the
// batches it proposed that are not yet applied. A batch is appended only if it continues its
// producer's sequence; a batch sent again (a retry after a timeout, a lost answer or a failover)
// is answered with the offset of its first copy instead of being written twice.
//
// Batches of a producer are taken strictly in sequence, from 0: so a sequence number below the
// next expected one was written, and one at or above it was not. A producer not known (never
// seen, or forgotten) is taken only at sequence 0; otherwise it is told to number anew under a
// new id (CodeUnknownProducer), which it does once nothing earlier is outstanding.
//
// The table is rebuilt at start from the headers of the log's newest segments (at least
// producerTailBytes of them): a producer whose last batch is older than that is forgotten, as
// Kafka forgets a producer id once it expires.
const (
	// producerRecent is how many of a producer's last batches are kept to answer a retry with
	// their offsets (Kafka keeps 5 as well; the Go client sends one batch per partition at a time
	// by default).
	producerRecent = 5
	// maxProducers bounds the producers a partition keeps; beyond it the least recently written
	// are forgotten.
	maxProducers = 10000
	// producerTailBytes is how much of the log's end is read at start to rebuild the table.
	producerTailBytes = 256 << 20
)

// seqRange is one batch of an idempotent producer: its sequence numbers and where it went.
type seqRange struct {
	first, last int32
	base        int64  // offset of its first record (applied batches)
	index       uint64 // raft index
}

type producerState struct {
	recent   []seqRange // applied, oldest first, at most producerRecent
	proposed []seqRange // this leader's proposals not yet applied, in order
}

// producerTable is what a replica knows of its idempotent producers.
type producerTable struct {
	m map[int64]*producerState
}

// seqVerdict is what the leader does with a produced batch.
type seqVerdict int

const (
	seqAppend    seqVerdict = iota // new and in sequence: propose it
	seqDuplicate                   // applied already: answer with its offset
	seqInFlight                    // proposed already, not yet applied: the producer retries
	seqOld                         // older than what is kept: written already, offset unknown
	seqGap                         // ahead of the sequence: an earlier batch is missing
	seqUnknown                     // a producer not known here, not at sequence 0
)

func (t *producerTable) get(id int64) *producerState {
	if t.m == nil {
		t.m = map[int64]*producerState{}
	}
	s := t.m[id]
	if s == nil {
		s = &producerState{}
		t.m[id] = s
	}
	return s
}

// check decides about a batch with header h on the leader; for seqDuplicate it also returns the
// offset of the batch's first copy.
func (t *producerTable) check(h storage.Header) (seqVerdict, int64) {
	first, last := h.BaseSequence, h.LastSequence()
	s := t.m[h.ProducerID]
	if s == nil || (len(s.recent) == 0 && len(s.proposed) == 0) {
		// A producer's first batch is at sequence 0. Any other batch of a producer not known
		// here may follow batches that are not in the log, or be a copy of one forgotten: the
		// producer must number anew (under a new id) once nothing earlier is outstanding.
		if first == 0 {
			return seqAppend, 0
		}
		return seqUnknown, 0
	}
	for _, b := range s.recent {
		if b.first == first && b.last == last {
			return seqDuplicate, b.base
		}
	}
	for _, b := range s.proposed {
		if b.first == first && b.last == last {
			return seqInFlight, 0
		}
	}
	var prev seqRange
	if n := len(s.proposed); n > 0 {
		prev = s.proposed[n-1]
	} else {
		prev = s.recent[len(s.recent)-1]
	}
	next := storage.AddSequence(prev.last, 1)
	if first == next {
		return seqAppend, 0
	}
	if storage.SequenceBefore(next, first) {
		return seqGap, 0
	}
	return seqOld, 0
}

// proposed notes a batch the leader proposed.
func (t *producerTable) proposed(h storage.Header) {
	s := t.get(h.ProducerID)
	s.proposed = append(s.proposed, seqRange{first: h.BaseSequence, last: h.LastSequence()})
}

// applied notes a committed batch at offset base and raft index idx.
func (t *producerTable) applied(h storage.Header, base int64, idx uint64) {
	s := t.get(h.ProducerID)
	b := seqRange{first: h.BaseSequence, last: h.LastSequence(), base: base, index: idx}
	if len(s.proposed) > 0 && s.proposed[0].first == b.first && s.proposed[0].last == b.last {
		s.proposed = s.proposed[1:]
	}
	if len(s.recent) == producerRecent {
		s.recent = append(s.recent[:0], s.recent[1:]...)
	}
	s.recent = append(s.recent, b)
	if len(t.m) > 2*maxProducers {
		t.evict()
	}
}

// leaderChanged forgets the proposals of a leader that is no longer one: those not applied by
// now may never be.
func (t *producerTable) leaderChanged() {
	for id, s := range t.m {
		s.proposed = nil
		if len(s.recent) == 0 {
			delete(t.m, id)
		}
	}
}

// evict keeps the maxProducers producers written most recently.
func (t *producerTable) evict() {
	type aged struct {
		id  int64
		idx uint64
	}
	all := make([]aged, 0, len(t.m))
	for id, s := range t.m {
		if len(s.proposed) > 0 {
			continue
		}
		var idx uint64
		if n := len(s.recent); n > 0 {
			idx = s.recent[n-1].index
		}
		all = append(all, aged{id, idx})
	}
	slices.SortFunc(all, func(a, b aged) int {
		switch {
		case a.idx < b.idx:
			return -1
		case a.idx > b.idx:
			return 1
		}
		return 0
	})
	for _, a := range all[:min(max(len(t.m)-maxProducers, 0), len(all))] {
		delete(t.m, a.id)
	}
}

// idempotent reports whether a batch header carries an idempotent producer's stamp.
func idempotent(h storage.Header) bool {
	return h.Kind == storage.KindRecords && h.ProducerID >= 0 && h.BaseSequence >= 0
}

// loadProducers rebuilds the table from the committed batches at the end of the log.
func (r *replica) loadProducers() error {
	r.producers = producerTable{}
	return r.log.TailHeaders(producerTailBytes, func(h storage.Header) bool {
		if h.Index > r.applied {
			return false
		}
		if idempotent(h) {
			r.producers.applied(h, h.BaseOffset, h.Index)
		}
		return true
	})
}

// checkSequence decides whether the leader appends an idempotent producer's batch; if not, it
// answers the request itself and returns false.
func (r *replica) checkSequence(h storage.Header, reply func(*wire.Error), replyOffset func(int64)) bool {
	if !r.leaderReady {
		// The table holds what was applied; until this leader has applied the entries of the
		// terms before its own, a retry of a batch among them would look new.
		if r.lead == r.cfg.ID {
			reply(wire.Errorf(wire.CodeUnavailable, "partition %s: the new leader is applying its log", r.cfg.Group()))
			return false
		}
		return true // propose refuses it: not the leader
	}
	v, base := r.producers.check(h)
	switch v {
	case seqDuplicate:
		r.cfg.Logger.Debug("duplicate batch answered with its first copy's offset", "group", r.cfg.Group(), "producer", h.ProducerID, "sequence", h.BaseSequence, "offset", base)
		replyOffset(base)
		return false
	case seqInFlight:
		reply(wire.Errorf(wire.CodeUnavailable, "partition %s: producer %d's batch at sequence %d is being written", r.cfg.Group(), h.ProducerID, h.BaseSequence))
		return false
	case seqOld:
		reply(wire.Errorf(wire.CodeDuplicateSequence, "partition %s: producer %d's batch at sequence %d was written before", r.cfg.Group(), h.ProducerID, h.BaseSequence))
		return false
	case seqGap:
		reply(wire.Errorf(wire.CodeOutOfOrderSequence, "partition %s: producer %d's batch at sequence %d does not follow its last one", r.cfg.Group(), h.ProducerID, h.BaseSequence))
		return false
	case seqUnknown:
		reply(wire.Errorf(wire.CodeUnknownProducer, "partition %s: producer %d is not known here, and its batch is at sequence %d, not 0", r.cfg.Group(), h.ProducerID, h.BaseSequence))
		return false
	}
	return true
}
