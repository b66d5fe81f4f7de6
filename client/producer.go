package client

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

const (
	// maxRequestBytes bounds the batches of one produce request (one batch may exceed it alone).
	maxRequestBytes = 16 << 20
	// metadataMaxAge is how old the partition count of a busy producer may grow before it is
	// looked up again (a topic deleted and created again with more partitions).
	metadataMaxAge = 30 * time.Second
)

// Producer batches records per partition and sends them to one topic. Records are encoded
// into storage batches as they arrive; a batch is sent when it reaches BatchBytes, when its
// Linger has passed, on Flush or on Close, in one request with the other partitions' batches
// ready at that moment. Every method may be called from any goroutine.
type Producer struct {
	c      *Client
	topic  string
	cfg    producerConfig
	budget *budget

	// The intake: callers append *pendingRecord, *flushReq and closeReq to inq in the order they
	// were made. They wake the loop only when it is idle (nothing to wake it by itself within a
	// linger), when the records waiting reach wakeBytes, or for a flush or close; otherwise the
	// loop drains inq when it wakes anyway (an answer, a linger timer, a periodic wake-up at most
	// one linger apart while it is busy). So a busy loop takes many records per wake-up instead
	// of a goroutine switch every few records (254,000 wake-ups a second at 2.1 M records/s
	// before). MaxBufferedBytes bounds inq.
	mu       sync.Mutex
	inq      []any
	inqSince time.Time // when the first record of inq came: its records' batches linger from then
	inqBytes int       // the records' sizes in inq
	idle     bool      // the loop sleeps with nothing to wake it but the intake
	closed   bool
	wake     chan struct{} // capacity 1: inq has news

	events chan any       // *sendResult, *metaResult: answers from the request goroutines
	wg     sync.WaitGroup // the loop goroutine and the request goroutines

	// Owned by the loop goroutine.
	nparts      int32
	meta        metaState
	waiting     []*pendingRecord // produced before the partition count was known
	parts       []*partQueue
	stickyPart  int32  // the partition of keyless records
	stickyBatch *batch // the batch keyless records go to, until it is sealed
	seq         uint64 // the last record's sequence number
	outstanding int    // records produced and not completed
	flushes     []*flushReq
	flushUpTo   uint64 // records up to this sequence number are sent without lingering
	requests    int    // produce requests in flight
	closing     bool
	wakeups     int                     // wake-ups by the intake, for tests
	builders    []*storage.BatchBuilder // free list
	recLists    [][]*pendingRecord      // free list of batches' record lists
}

// pendingRecords recycles pendingRecords: one per record produced is the client's largest
// allocation, and the garbage collections it caused were visible in the produce latency tail.
var pendingRecords = sync.Pool{New: func() any { return new(pendingRecord) }}

type pendingRecord struct {
	rec  storage.Record
	size int
	seq  uint64
	fn   func(offset int64, err error)
}

// batch is one partition's batch: open (records are added) until sealed, then queued, in
// flight, and retried until answered.
type batch struct {
	partition int32
	b         *storage.BatchBuilder
	recs      []*pendingRecord
	bytes     int
	created   time.Time
	sealed    bool
	data      []byte
	attempts  int
	retryAt   time.Time
	pid       int64 // the producer id data is stamped with (0: not stamped)
	seq       int32 // the sequence number of its first record, when stamped
	// afterEarlier: the leader found it ahead of its producer's sequence while batches before
	// it were in flight; it is sent again, without counting a retry, once they are answered.
	afterEarlier bool
	sent         uint64 // the partition's count of batches sent when it was first sent (0: never)
}

// partQueue is one partition's batches. An idempotent producer numbers a partition's records
// from 0 under a producer id of the partition's own (pid), stamped on each batch when it is
// first sent and kept on its retries. The partition's leader takes a producer's batches strictly
// in sequence, so when it answers that a batch does not follow (a batch before it failed for
// good and was not written, or the leader forgot the producer) and no batch before it is still
// outstanding, none of the partition's unanswered batches was written: they are numbered anew
// under a new id.
type partQueue struct {
	batches  []*batch // oldest first; only the last may be open
	inflight int
	pid      int64
	nextSeq  int32
	sent     uint64 // batches sent for the first time
}

// requeue puts a batch to be sent again back in the queue, in the order the batches were first
// sent: ahead of those sent after it and of those never sent. (Answers come back in any order
// with more than one batch in flight.)
func (q *partQueue) requeue(b *batch) {
	i := 0
	for i < len(q.batches) && q.batches[i].sent != 0 && q.batches[i].sent < b.sent {
		i++
	}
	q.batches = slices.Insert(q.batches, i, b)
}

// newProducerID picks a producer id: random, positive, so that producers need not ask a node
// for one (two producers of one partition share an id with odds of about 2^-63 per pair).
func newProducerID() int64 { return rand.Int64N(math.MaxInt64) + 1 }

type metaState struct {
	inflight  bool
	want      bool // a refresh was asked for (unknown topic, not leader)
	attempts  int
	retryAt   time.Time
	fetchedAt time.Time // when the partition count was last learnt
}

type flushReq struct {
	done      chan struct{}
	target    uint64 // the last record's sequence number at the flush
	remaining int
}

type closeReq struct{}

type sendResult struct {
	batches []*batch
	resp    wire.ProduceResponse
	err     error
}

type metaResult struct {
	partitions int32
	err        error
}

// NewProducer returns a producer to topic. Nothing is sent before the first record; the
// topic's partitions are looked up then, and again when a node says the topic is unknown or
// it is not the leader.
func (c *Client) NewProducer(topic string, opts ...ProducerOption) (*Producer, error) {
	cfg := c.cfg.producer()
	for _, o := range opts {
		o.applyProducer(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if topic == "" {
		return nil, errors.New("client: NewProducer: empty topic name")
	}
	p := &Producer{c: c, topic: topic, cfg: cfg, budget: newBudget(cfg.maxBufferedBytes),
		wake: make(chan struct{}, 1), events: make(chan any, 64), stickyPart: -1}
	p.wg.Add(1)
	go p.run()
	return p, nil
}

// Result is the outcome of one record given to Produce.
type Result struct {
	done   chan struct{}
	offset int64
	err    error
}

// Done is closed when the record is acknowledged or has failed.
func (r *Result) Done() <-chan struct{} { return r.done }

// Wait waits for the outcome: the record's offset (-1 with acks=none), or its error. ctx
// bounds only the wait.
func (r *Result) Wait(ctx context.Context) (int64, error) {
	select {
	case <-r.done:
		return r.offset, r.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// Produce is ProduceAsync returning the outcome as a Result.
func (p *Producer) Produce(ctx context.Context, rec storage.Record) *Result {
	r := &Result{done: make(chan struct{})}
	p.ProduceAsync(ctx, rec, func(off int64, err error) {
		r.offset, r.err = off, err
		close(r.done)
	})
	return r
}

// ProduceAsync buffers a record for sending and calls fn exactly once with its offset (-1 with
// acks=none) or its error: at once for a record over MaxRecordBytes (wire.ErrRecordTooLarge),
// after a closed producer or ctx's end while waiting for buffer space; else on the producer's
// goroutine when the record is acknowledged or has failed after its retries. It blocks while
// MaxBufferedBytes are buffered (backpressure); ctx bounds only that wait. A zero Timestamp is
// set to when the first of the records the producer's goroutine takes in together entered the
// buffer: at most a Linger before this record did (after any wait for buffer space). fn may be
// nil. The producer keeps rec's slices until fn is called:
// the caller must not modify them before.
func (p *Producer) ProduceAsync(ctx context.Context, rec storage.Record, fn func(offset int64, err error)) {
	if fn == nil {
		fn = func(int64, error) {}
	}
	size := recordSize(rec)
	if size > p.cfg.maxRecordBytes {
		fn(-1, wrap(wire.ApiProduce, p.topic, -1, wire.Errorf(wire.CodeRecordTooLarge, "record of %d bytes encoded, limit %d", size, p.cfg.maxRecordBytes)))
		return
	}
	if err := p.budget.acquire(ctx, size); err != nil {
		fn(-1, wrap(wire.ApiProduce, p.topic, -1, err))
		return
	}
	r := pendingRecords.Get().(*pendingRecord)
	r.rec, r.size, r.fn = rec, size, fn
	if !p.enqueue(r, false) {
		*r = pendingRecord{}
		pendingRecords.Put(r)
		p.budget.release(size)
		fn(-1, wrap(wire.ApiProduce, p.topic, -1, ErrClosed))
	}
}

// enqueue hands m to the loop, unless the producer is closed; close marks it closed with m.
func (p *Producer) enqueue(m any, close bool) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.closed = close
	p.inq = append(p.inq, m)
	if len(p.inq) == 1 {
		p.inqSince = time.Now()
	}
	signal := true
	if r, ok := m.(*pendingRecord); ok {
		p.inqBytes += r.size
		signal = p.idle || p.inqBytes >= p.wakeBytes()
	}
	if signal {
		p.idle = false
	}
	p.mu.Unlock()
	if signal {
		select {
		case p.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return true
}

// wakeBytes is how many bytes of records in the intake wake a busy loop, so that full batches
// go out without waiting for the next wake-up.
func (p *Producer) wakeBytes() int { return max(min(p.cfg.batchBytes, p.cfg.maxBufferedBytes)/4, 1) }

// Flush sends every buffered record at once and waits until all records produced before it
// are acknowledged or have failed (their callbacks say which).
func (p *Producer) Flush(ctx context.Context) error {
	req := &flushReq{done: make(chan struct{})}
	if !p.enqueue(req, false) {
		return ErrClosed
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends what is buffered, waits until every record is acknowledged or has failed, and
// stops the producer's goroutines. Records produced after Close fail with ErrClosed.
func (p *Producer) Close() error {
	p.enqueue(closeReq{}, true)
	p.budget.close()
	p.wg.Wait()
	return nil
}

// recordSize bounds a record's size in a batch's msgpack body: an array header, a timestamp
// delta of up to 9 bytes, key and value with up to 5 bytes of header each, and the headers map
// (up to 5 bytes of header, and 5 per header key and per header value): 25 bytes of framing
// and 10 per header.
func recordSize(r storage.Record) int {
	n := 1 + 9 + 5 + len(r.Key) + 5 + len(r.Value) + 5
	for k, v := range r.Headers {
		n += 5 + len(k) + 5 + len(v)
	}
	return n
}

// run is the producer's loop goroutine: it owns the batches and every field below Producer.mu.
func (p *Producer) run() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time // when the timer fires; zero when stopped
	var taken []any     // the intake last taken, reused
	now := time.Now()
	for {
		// Take the intake whatever woke the loop: callers do not wake a busy loop for each
		// record (see Producer.inq).
		p.mu.Lock()
		taken, p.inq = p.inq, taken[:0]
		since := p.inqSince
		p.inqBytes = 0
		p.mu.Unlock()
		for _, m := range taken {
			p.take(m, since)
		}
		clear(taken) // the records are referenced from their batches now

		p.dispatch(now)
		p.maybeFetchMeta(now)
		if p.closing && p.outstanding == 0 && p.requests == 0 && !p.meta.inflight {
			return
		}
		wake, ok := p.nextWake(now)
		busy := p.requests > 0 || p.meta.inflight || p.outstanding > 0
		if busy && p.cfg.linger > 0 {
			// Look at the intake at least once a linger while busy.
			if at := now.Add(p.cfg.linger); !ok || at.Before(wake) {
				wake, ok = at, true
			}
		}
		switch {
		case ok && !wake.Equal(armed):
			timer.Reset(max(wake.Sub(now), 0))
			armed = wake
		case !ok && !armed.IsZero():
			timer.Stop()
			armed = time.Time{}
		}
		var tc <-chan time.Time
		if !armed.IsZero() {
			tc = timer.C
		}
		p.mu.Lock()
		if len(p.inq) > 0 {
			p.mu.Unlock()
			now = time.Now()
			continue
		}
		// Idle: nothing would wake the loop within a linger, so the next record must.
		p.idle = !busy || p.cfg.linger == 0
		p.mu.Unlock()
		select {
		case <-p.wake:
			p.wakeups++
			now = time.Now()
		case e := <-p.events:
			now = time.Now()
			switch e := e.(type) {
			case *sendResult:
				p.answered(e, now)
			case *metaResult:
				p.metaAnswered(e, now)
			}
		case <-tc:
			armed = time.Time{}
			now = time.Now()
		}
	}
}

// take handles one message of the intake.
func (p *Producer) take(m any, now time.Time) {
	switch m := m.(type) {
	case *pendingRecord:
		if m.rec.Timestamp == 0 {
			m.rec.Timestamp = now.UnixMilli()
		}
		p.seq++
		m.seq = p.seq
		p.outstanding++
		if p.nparts == 0 {
			p.waiting = append(p.waiting, m)
		} else {
			p.route(m, now)
		}
	case *flushReq:
		p.flushUpTo = p.seq
		if p.outstanding == 0 {
			close(m.done)
		} else {
			m.target, m.remaining = p.seq, p.outstanding
			p.flushes = append(p.flushes, m)
		}
	case closeReq:
		p.closing = true
	}
}

// route puts a record in its partition's batch: by the key's hash, or the sticky partition.
func (p *Producer) route(r *pendingRecord, now time.Time) {
	if r.rec.Key != nil {
		p.add(wire.PartitionForKey(r.rec.Key, p.nparts), r, now)
		return
	}
	if sb := p.stickyBatch; sb != nil && !sb.sealed && sb.b.Len() > 0 && sb.b.Size()+r.size > p.cfg.batchBytes {
		p.seal(sb) // full: move on
	}
	if p.stickyBatch == nil || p.stickyBatch.sealed {
		if p.stickyPart < 0 {
			p.stickyPart = rand.Int32N(p.nparts)
		} else {
			p.stickyPart = (p.stickyPart + 1) % p.nparts
		}
	}
	p.stickyBatch = p.add(p.stickyPart, r, now)
}

// add appends a record to the open batch of a partition, sealing a batch that would grow past
// BatchBytes, and returns the batch it went into.
func (p *Producer) add(part int32, r *pendingRecord, now time.Time) *batch {
	q := p.parts[part]
	var b *batch
	if n := len(q.batches); n > 0 && !q.batches[n-1].sealed {
		b = q.batches[n-1]
	}
	if b != nil && b.b.Size()+r.size > p.cfg.batchBytes {
		p.seal(b)
		b = nil
	}
	if b == nil {
		b = &batch{partition: part, b: p.builder(), recs: p.recList(), created: now}
		q.batches = append(q.batches, b)
	}
	if err := b.b.Add(r.rec); err != nil {
		// Encoding into memory does not fail, and a batch holds at most BatchBytes or one
		// record of at most MaxRecordBytes (recordSize is an upper bound), which fit in
		// storage.MaxBatchSize.
		panic("client: a record within MaxRecordBytes did not fit in a batch: " + err.Error())
	}
	b.recs = append(b.recs, r)
	b.bytes += r.size
	if b.b.Size() >= p.cfg.batchBytes {
		p.seal(b)
	}
	return b
}

func (p *Producer) builder() *storage.BatchBuilder {
	if n := len(p.builders); n > 0 {
		b := p.builders[n-1]
		p.builders = p.builders[:n-1]
		b.Reset()
		return b
	}
	return storage.NewBatchBuilder()
}

// maxKeptRecList is the largest record list capacity kept for reuse.
const maxKeptRecList = 64 << 10

func (p *Producer) recList() []*pendingRecord {
	if n := len(p.recLists); n > 0 {
		l := p.recLists[n-1]
		p.recLists = p.recLists[:n-1]
		return l
	}
	return nil
}

func (p *Producer) seal(b *batch) {
	if !b.sealed {
		b.sealed = true
		b.data = b.b.Build()
	}
}

// ready reports whether a partition's first batch may be sent now, and if not, when to look
// again (zero: when something else happens).
func (p *Producer) ready(q *partQueue, now time.Time) (bool, time.Time) {
	if len(q.batches) == 0 || q.inflight >= p.cfg.maxInFlight {
		return false, time.Time{}
	}
	b := q.batches[0]
	if b.afterEarlier && q.inflight > 0 {
		return false, time.Time{} // an answer wakes the loop
	}
	if b.retryAt.After(now) {
		return false, b.retryAt
	}
	if b.sealed || p.closing || b.recs[0].seq <= p.flushUpTo { // recs[0]: the batch's first record
		return true, time.Time{}
	}
	if at := b.created.Add(p.cfg.linger); at.After(now) {
		return false, at
	}
	return true, time.Time{}
}

// dispatch sends every batch that is ready, one per partition per request.
func (p *Producer) dispatch(now time.Time) {
	for {
		var bs []*batch
		size := 0
		for _, q := range p.parts {
			ok, _ := p.ready(q, now)
			if !ok {
				continue
			}
			b := q.batches[0]
			p.seal(b)
			if len(bs) > 0 && size+len(b.data) > maxRequestBytes {
				continue
			}
			p.stamp(q, b)
			b.afterEarlier = false
			if b.sent == 0 {
				q.sent++
				b.sent = q.sent
			}
			q.batches = q.batches[1:]
			q.inflight++
			size += len(b.data)
			bs = append(bs, b)
		}
		if len(bs) == 0 {
			return
		}
		p.send(bs)
	}
}

// stamp numbers a batch that an idempotent producer sends for the first time under its
// partition's current producer id.
func (p *Producer) stamp(q *partQueue, b *batch) {
	if !p.cfg.idempotent || p.cfg.acks == wire.AcksNone || b.pid != 0 {
		return
	}
	if err := storage.StampProducer(b.data, q.pid, q.nextSeq); err != nil {
		panic("client: stamping a batch the producer built: " + err.Error())
	}
	b.pid, b.seq = q.pid, q.nextSeq
	q.nextSeq = storage.AddSequence(q.nextSeq, int32(len(b.recs)))
}

// resetSequence gives a partition a new producer id, numbered from 0.
func (q *partQueue) resetSequence() { q.pid, q.nextSeq = newProducerID(), 0 }

// renumber handles a batch the leader says does not follow its producer's last one (or whose
// producer it does not know). If no batch before it is outstanding (in flight, or queued for a
// retry) none of the partition's unanswered batches was written, since the leader takes a
// producer's batches strictly in order: they are numbered anew under a new id, in queue order,
// when next sent. Otherwise the batches before it are awaited.
func (p *Producer) renumber(q *partQueue, b *batch, err error) {
	if b.pid == 0 || q.inflight > 0 {
		return
	}
	for _, o := range q.batches {
		if o.pid == b.pid && storage.SequenceBefore(o.seq, b.seq) {
			return
		}
	}
	p.c.cfg.logger.Info("client: numbering a partition's batches anew", "topic", p.topic, "partition", b.partition, "err", err)
	old := b.pid
	q.resetSequence()
	b.pid = 0
	for _, o := range q.batches {
		if o.pid == old {
			o.pid = 0
		}
	}
}

// send runs one produce request in a goroutine of its own that hands the answer to the loop.
func (p *Producer) send(bs []*batch) {
	req := &wire.ProduceRequest{Topic: p.topic, Acks: p.cfg.acks, TimeoutMs: int32(p.cfg.requestTimeout / time.Millisecond),
		Batches: make([]wire.PartitionBatch, len(bs))}
	for i, b := range bs {
		req.Batches[i] = wire.PartitionBatch{Partition: b.partition, Batch: b.data}
	}
	p.requests++
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		r := &sendResult{batches: bs}
		// The node answers a request it could not finish in time itself; the extra second
		// keeps its answer ahead of our timeout.
		r.err = p.c.roundTrip(context.Background(), wire.ApiProduce, req, &r.resp, p.cfg.requestTimeout+time.Second)
		p.events <- r
	}()
}

// answered handles a produce request's answer: each batch is acknowledged, retried, or failed.
func (p *Producer) answered(r *sendResult, now time.Time) {
	p.requests--
	for i, b := range r.batches {
		q := p.parts[b.partition]
		q.inflight--
		err := r.err
		if err == nil {
			err = wireErr(r.resp.Err)
		}
		base := int64(-1)
		if err == nil {
			if i < len(r.resp.Results) {
				err, base = wireErr(r.resp.Results[i].Err), r.resp.Results[i].BaseOffset
			} else {
				err = wire.Errorf(wire.CodeUnknown, "the answer has %d results for %d batches", len(r.resp.Results), len(r.batches))
			}
		}
		if err == nil {
			p.complete(b, base, nil)
			continue
		}
		switch codeOf(err) {
		case wire.CodeUnknownTopic, wire.CodeNotLeader, wire.CodeUnknownPartition:
			p.meta.want = true
		case wire.CodeDuplicateSequence:
			// Written before, so long ago that the node no longer knows where.
			p.complete(b, -1, nil)
			continue
		case wire.CodeOutOfOrderSequence, wire.CodeUnknownProducer:
			if b.pid != 0 && q.inflight > 0 {
				// It overtook batches before it (their requests race onto the connection):
				// send it again once they are answered.
				b.afterEarlier = true
				q.requeue(b)
				continue
			}
			p.renumber(q, b, err)
		}
		if IsRetriable(err) && b.attempts < p.cfg.retry.retries {
			b.attempts++
			b.retryAt = now.Add(p.cfg.retry.backoff(b.attempts))
			q.requeue(b)
			p.c.cfg.logger.Debug("client: retrying batch", "topic", p.topic, "partition", b.partition, "err", err, "attempt", b.attempts)
			continue
		}
		p.complete(b, -1, wrap(wire.ApiProduce, p.topic, b.partition, err))
	}
}

// complete reports a batch's outcome to each of its records.
func (p *Producer) complete(b *batch, base int64, err error) {
	p.budget.release(b.bytes)
	for i, r := range b.recs {
		off := int64(-1)
		if err == nil && base >= 0 {
			off = base + int64(i)
		}
		p.done(r, off, err)
	}
	if cap(b.recs) <= maxKeptRecList && len(p.recLists) < len(p.builders)+1 {
		clear(b.recs)
		p.recLists = append(p.recLists, b.recs[:0])
	}
	b.recs, b.data = nil, nil
	if b.b.Size() <= p.cfg.batchBytes { // one grown past BatchBytes by a large record is dropped
		p.builders = append(p.builders, b.b)
	}
}

// done reports one record's outcome and counts it for Flush and Close.
func (p *Producer) done(r *pendingRecord, off int64, err error) {
	r.fn(off, err)
	seq := r.seq
	*r = pendingRecord{} // nothing refers to it now: its batch is done with it
	pendingRecords.Put(r)
	p.outstanding--
	kept := p.flushes[:0]
	for _, f := range p.flushes {
		if seq <= f.target {
			f.remaining--
		}
		if f.remaining == 0 {
			close(f.done)
			continue
		}
		kept = append(kept, f)
	}
	clear(p.flushes[len(kept):])
	p.flushes = kept
}

// nextWake is when the loop must look at its batches again without other news.
func (p *Producer) nextWake(now time.Time) (time.Time, bool) {
	var wake time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	for _, q := range p.parts {
		_, at := p.ready(q, now)
		consider(at)
	}
	if !p.meta.inflight && p.metaNeeded() {
		consider(p.meta.retryAt)
	}
	return wake, !wake.IsZero()
}

func (p *Producer) metaNeeded() bool {
	return (p.nparts == 0 && len(p.waiting) > 0) || p.meta.want
}

// maybeFetchMeta looks the topic's partitions up when they are needed, or old while records
// flow, and no lookup is out.
func (p *Producer) maybeFetchMeta(now time.Time) {
	if p.nparts > 0 && p.outstanding > 0 && now.Sub(p.meta.fetchedAt) > metadataMaxAge {
		p.meta.want = true
	}
	if p.meta.inflight || !p.metaNeeded() || p.meta.retryAt.After(now) {
		return
	}
	p.meta.inflight, p.meta.want = true, false
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		n, err := p.c.topicPartitions(context.Background(), p.topic, retryPolicy{})
		p.events <- &metaResult{partitions: n, err: err}
	}()
}

// metaAnswered takes a lookup's answer: records waiting for it are routed, or fail after the
// lookup failed Retries times.
func (p *Producer) metaAnswered(r *metaResult, now time.Time) {
	p.meta.inflight = false
	if r.err != nil {
		p.meta.attempts++
		if p.nparts > 0 {
			p.meta.retryAt = now.Add(p.cfg.retry.backoff(p.meta.attempts))
			return // keep the partitions we know; batches retry on their own
		}
		if !IsRetriable(r.err) || p.meta.attempts > p.cfg.retry.retries {
			p.meta.attempts = 0
			err := r.err
			var ce *Error
			if errors.As(err, &ce) {
				err = ce.Err
			}
			err = wrap(wire.ApiProduce, p.topic, -1, err)
			waiting := p.waiting
			p.waiting = nil
			for _, w := range waiting {
				p.budget.release(w.size)
				p.done(w, -1, err)
			}
			return
		}
		p.meta.retryAt = now.Add(p.cfg.retry.backoff(p.meta.attempts))
		return
	}
	p.meta.attempts = 0
	p.meta.retryAt, p.meta.fetchedAt = time.Time{}, now
	// Queues of partitions beyond a smaller count stay to drain (their batches fail).
	for int32(len(p.parts)) < r.partitions {
		q := &partQueue{}
		q.resetSequence()
		p.parts = append(p.parts, q)
	}
	p.nparts = r.partitions
	if p.stickyPart >= p.nparts {
		p.stickyPart, p.stickyBatch = -1, nil
	}
	waiting := p.waiting
	p.waiting = nil
	for _, w := range waiting {
		p.route(w, now)
	}
}

// budget bounds the bytes of records buffered in a producer: a counting semaphore that a
// context can cancel a wait on.
type budget struct {
	mu     sync.Mutex
	used   int
	max    int
	wake   chan struct{} // closed and replaced whenever bytes are released
	closed bool
}

func newBudget(max int) *budget { return &budget{max: max, wake: make(chan struct{})} }

// acquire takes n bytes, waiting while they would exceed the bound (unless nothing is held).
func (b *budget) acquire(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return ErrClosed
		}
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		w := b.wake
		b.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *budget) release(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// close makes every acquire fail with ErrClosed, waiting ones included.
func (b *budget) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.wake)
		b.wake = make(chan struct{})
	}
	b.mu.Unlock()
}
