package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// Message is a record read from a partition. Key, Value and Headers belong to the caller; Key
// and Value share the memory of the fetch answer they came in (up to FetchMaxBytes), so copy
// them to keep a few messages of many for long.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string
	Timestamp time.Time
}

// topicPartition names one partition of a topic.
type topicPartition struct {
	topic     string
	partition int32
}

// fetchPart is the fetching state of one partition. It belongs to the polling goroutine; its
// position and whether it is paused are in fetcher.mu.
type fetchPart struct {
	topicPartition
	fetchOffset int64      // the offset the next fetch asks for (after the buffered messages)
	from        OffsetSpec // how to resolve the position when it is -1
	buffered    []Message  // fetched, not yet returned

	inflight   *call     // asks for fetchOffset, which does not move while it is out
	deadline   time.Time // inflight's client-side timeout
	launchedBy uint64    // the poll that sent inflight
	emptyIn    uint64    // the last poll in which a fetch was answered with no records

	failures int       // consecutive retriable failures
	retryAt  time.Time // no request before
}

// fetcher polls a set of partitions with one long-polling fetch in flight per partition; the
// fetches stay in flight across polls. It serves Consumer and GroupConsumer.
//
// Concurrency: poll, assign and close belong to one goroutine; pause, resume and position
// may be called from any goroutine (they touch only what mu guards).
type fetcher struct {
	c      *Client
	cfg    fetchConfig
	notify chan struct{} // capacity 1: a fetch completed, or a partition was resumed

	parts   []*fetchPart
	polls   uint64
	next    int    // the partition whose messages come first in the next poll (round robin)
	wakeups uint64 // waits in poll (tests count them)

	mu     sync.Mutex
	paused map[topicPartition]bool
	pos    map[topicPartition]int64 // the offset after the last message returned; -1 until resolved
}

func newFetcher(c *Client, cfg fetchConfig) *fetcher {
	return &fetcher{c: c, cfg: cfg, notify: make(chan struct{}, 1),
		paused: map[topicPartition]bool{}, pos: map[topicPartition]int64{}}
}

// assign makes the fetcher fetch exactly parts. A partition it had keeps its state (its
// position, and whether it is paused); a new one starts at its OffsetSpec (from), not paused.
func (f *fetcher) assign(parts []topicPartition, from func(topicPartition) OffsetSpec) {
	gone := make(map[topicPartition]*fetchPart, len(f.parts))
	for _, p := range f.parts {
		gone[p.topicPartition] = p
	}
	next := make([]*fetchPart, 0, len(parts))
	var added []*fetchPart
	for _, tp := range parts {
		if p, ok := gone[tp]; ok {
			next = append(next, p)
			delete(gone, tp)
			continue
		}
		p := &fetchPart{topicPartition: tp, fetchOffset: -1, from: from(tp)}
		if p.from.kind == specOffset {
			p.fetchOffset = p.from.offset
		}
		next = append(next, p)
		added = append(added, p)
	}
	f.mu.Lock()
	for tp, p := range gone {
		if p.inflight != nil {
			f.c.abandon(p.inflight)
		}
		delete(f.pos, tp)
		delete(f.paused, tp)
	}
	for _, p := range added {
		f.pos[p.topicPartition] = p.fetchOffset
	}
	f.mu.Unlock()
	f.parts = next
	f.next = 0
}

func (f *fetcher) setPosition(p *fetchPart, off int64) {
	f.mu.Lock()
	f.pos[p.topicPartition] = off
	f.mu.Unlock()
}

func (f *fetcher) isPaused(tp topicPartition) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused[tp]
}

func (f *fetcher) pause(tps ...topicPartition) {
	f.mu.Lock()
	for _, tp := range tps {
		f.paused[tp] = true
	}
	f.mu.Unlock()
}

func (f *fetcher) resume(tps ...topicPartition) {
	f.mu.Lock()
	for _, tp := range tps {
		delete(f.paused, tp)
	}
	f.mu.Unlock()
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

// position is the next offset poll returns in tp, or -1 if not known yet.
func (f *fetcher) position(tp topicPartition) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off, ok := f.pos[tp]; ok {
		return off
	}
	return -1
}

// positions lists the known positions of the assigned partitions.
func (f *fetcher) positions() []wire.PartitionOffset {
	var out []wire.PartitionOffset
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.parts {
		if off := f.pos[p.topicPartition]; off >= 0 {
			out = append(out, wire.PartitionOffset{Topic: p.topic, Partition: p.partition, Offset: off})
		}
	}
	return out
}

// close abandons the fetches in flight.
func (f *fetcher) close() {
	f.assign(nil, nil)
}

// poll returns up to max messages (all it has when max <= 0): buffered ones at once, else it
// waits up to MaxWait for some. It returns early, with none, when stop is signalled.
func (f *fetcher) poll(ctx context.Context, max int, stop <-chan struct{}) ([]Message, error) {
	f.polls++
	poll := f.polls
	deadline := time.Now().Add(f.cfg.maxWait)
	for {
		if out := f.take(max); len(out) > 0 {
			return out, nil
		}
		if err := f.resolve(ctx); err != nil {
			return nil, err
		}
		if err := f.launch(ctx, deadline, poll); err != nil {
			return nil, err
		}
		got, err := f.collect()
		if err != nil {
			return nil, err
		}
		if got {
			continue
		}
		// Wait for an answer (f.notify), a fetch's timeout, the end of a backoff, or MaxWait;
		// once MaxWait has passed, only for the fetches of this poll still out.
		now := time.Now()
		var wake time.Time // zero: no timer
		if now.Before(deadline) {
			wake = deadline
		}
		waiting := false
		for _, p := range f.parts {
			if p.inflight != nil {
				wake = earliest(wake, p.deadline)
				waiting = waiting || p.launchedBy == poll
			} else if p.retryAt.After(now) {
				wake = earliest(wake, p.retryAt)
			}
		}
		if !now.Before(deadline) && !waiting {
			return nil, nil // nothing within MaxWait, and no fetch of this poll still out
		}
		if !f.wait(ctx, wake, now, stop) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, nil
		}
	}
}

// wait waits for f.notify, or until wake (none when zero). It reports false when stop is
// signalled or ctx is done first.
func (f *fetcher) wait(ctx context.Context, wake, now time.Time, stop <-chan struct{}) bool {
	f.wakeups++
	var timeout <-chan time.Time
	if !wake.IsZero() {
		t := time.NewTimer(wake.Sub(now)) // a time past fires at once
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-f.notify:
	case <-timeout:
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
	return true
}

// earliest is the earlier of a and b, the zero time standing for none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// take returns buffered messages of partitions not paused, round robin over partitions.
func (f *fetcher) take(max int) []Message {
	var out []Message
	n := len(f.parts)
	for i := 0; i < n && (max <= 0 || len(out) < max); i++ {
		p := f.parts[(f.next+i)%n]
		if len(p.buffered) == 0 || f.isPaused(p.topicPartition) {
			continue
		}
		k := len(p.buffered)
		if max > 0 {
			k = min(k, max-len(out))
		}
		out = append(out, p.buffered[:k]...)
		if k == len(p.buffered) {
			p.buffered = nil
			f.setPosition(p, p.fetchOffset)
		} else {
			f.setPosition(p, p.buffered[k-1].Offset+1)
			p.buffered = p.buffered[k:]
		}
	}
	if len(out) > 0 && n > 0 {
		f.next = (f.next + 1) % n
	}
	return out
}

// fail counts a retriable failure of a partition's request: it is retried after a backoff,
// and returned after Retries consecutive failures.
func (f *fetcher) fail(p *fetchPart, op wire.API, err error) error {
	if !IsRetriable(err) {
		return wrap(op, p.topic, p.partition, err)
	}
	p.failures++
	if p.failures > f.cfg.retry.retries {
		p.failures = 0
		p.retryAt = time.Now().Add(f.cfg.retry.backoffMax)
		return wrap(op, p.topic, p.partition, err)
	}
	p.retryAt = time.Now().Add(f.cfg.retry.backoff(p.failures))
	f.c.cfg.logger.Debug("client: retrying", "op", op.String(), "topic", p.topic, "partition", p.partition, "err", err, "attempt", p.failures)
	return nil
}

// maxParallelResolves bounds the ListOffsets requests resolve has in flight at once.
const maxParallelResolves = 32

// resolve turns the OffsetSpec of partitions without a position into an offset. The lookups go
// out together (a member given many new partitions waited a round trip for each before).
func (f *fetcher) resolve(ctx context.Context) error {
	now := time.Now()
	var todo []*fetchPart
	for _, p := range f.parts {
		if p.fetchOffset >= 0 || p.retryAt.After(now) || f.isPaused(p.topicPartition) {
			continue
		}
		todo = append(todo, p)
	}
	offs := make([]int64, len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelResolves)
	for i, p := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			offs[i], errs[i] = f.c.listOffsets(ctx, p.topic, p.partition, p.from, retryPolicy{})
		}()
	}
	wg.Wait()
	for i, p := range todo {
		if err := errs[i]; err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := f.fail(p, wire.ApiListOffsets, errors.Unwrap(err)); err != nil {
				return err
			}
			continue
		}
		p.failures = 0
		p.fetchOffset = offs[i]
		f.setPosition(p, offs[i])
	}
	return nil
}

// launch sends a fetch for every partition that has a position, none in flight, nothing
// buffered, is not paused and not backing off.
func (f *fetcher) launch(ctx context.Context, deadline time.Time, poll uint64) error {
	now := time.Now()
	wait := max(deadline.Sub(now), 0)
	for _, p := range f.parts {
		if p.inflight != nil || p.fetchOffset < 0 || len(p.buffered) > 0 || p.retryAt.After(now) || f.isPaused(p.topicPartition) {
			continue
		}
		if now.After(deadline) && p.emptyIn == poll {
			continue // this poll is over, and it was answered empty
		}
		req := &wire.FetchRequest{Topic: p.topic, Partition: p.partition, Offset: p.fetchOffset,
			MaxBytes: f.cfg.maxBytes, MaxWaitMs: int32(wait / time.Millisecond)}
		cl, err := f.c.start(ctx, wire.ApiFetch, req, f.notify)
		if err != nil {
			return wrap(wire.ApiFetch, p.topic, p.partition, err)
		}
		p.inflight, p.launchedBy = cl, poll
		p.deadline = now.Add(wait + f.cfg.requestTimeout)
	}
	return nil
}

// collect takes the answers of the fetches that completed (or timed out) and buffers their
// messages. It reports whether any partition now has messages to return.
func (f *fetcher) collect() (bool, error) {
	got := false
	var firstErr error
	now := time.Now()
	for _, p := range f.parts {
		if p.inflight == nil {
			continue
		}
		cl := p.inflight
		var body []byte
		var err error
		select {
		case <-cl.done:
			body, err = cl.body, cl.err
		default:
			if now.Before(p.deadline) {
				continue
			}
			f.c.abandon(cl)
			err = wire.Errorf(wire.CodeTimeout, "fetch: no answer from %s by %v", f.c.addr, p.deadline.Format(time.RFC3339Nano))
		}
		p.inflight = nil
		if err == nil {
			var resp wire.FetchResponse
			if err = wire.Decode(wire.ApiFetch, body, &resp); err == nil {
				err = wireErr(resp.Err)
			}
			if err == nil {
				p.failures = 0
				err = f.decode(p, resp.Batches)
				if err != nil {
					err = wrap(wire.ApiFetch, p.topic, p.partition, err)
				}
				if len(p.buffered) == 0 {
					p.emptyIn = f.polls
				}
				got = got || len(p.buffered) > 0
			} else if errors.Is(err, wire.ErrOffsetOutOfRange) {
				err = f.reset(p, err)
			} else {
				err = f.fail(p, wire.ApiFetch, err)
			}
		} else {
			err = f.fail(p, wire.ApiFetch, err)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return got, firstErr
}

// reset moves a partition whose position is out of the log's range per the reset policy.
func (f *fetcher) reset(p *fetchPart, cause error) error {
	switch f.cfg.reset {
	case ResetEarliest:
		p.from = Earliest()
	case ResetLatest:
		p.from = Latest()
	default:
		return wrap(wire.ApiFetch, p.topic, p.partition, fmt.Errorf("offset %d: %w", p.fetchOffset, cause))
	}
	f.c.cfg.logger.Info("client: offset out of range, resetting", "topic", p.topic, "partition", p.partition,
		"offset", p.fetchOffset, "to", p.from.String())
	p.fetchOffset = -1
	f.setPosition(p, -1)
	return nil
}

// decode appends the records of a fetch's batches at or after the partition's fetch offset
// to its buffer and moves the fetch offset past them. Batches of other kinds (raft's) are
// skipped. A batch that fails its checks is an error, and nothing of the answer is kept.
func (f *fetcher) decode(p *fetchPart, data []byte) error {
	before := len(p.buffered)
	next, err := storage.DecodeBatches(data, p.fetchOffset, func(off int64, r storage.Record) error {
		p.buffered = append(p.buffered, Message{Topic: p.topic, Partition: p.partition, Offset: off, Key: r.Key,
			Value: r.Value, Headers: r.Headers, Timestamp: time.UnixMilli(r.Timestamp)})
		return nil
	})
	if err != nil {
		clear(p.buffered[before:])
		p.buffered = p.buffered[:before] // none of this answer: the next fetch asks again
		return err
	}
	p.fetchOffset = next
	if len(p.buffered) == 0 {
		f.setPosition(p, p.fetchOffset)
	}
	return nil
}
