package client

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// produceBatch produces records as one batch (the producer lingers until Flush) and returns
// their offsets.
func produceBatch(t testing.TB, c *Client, topic string, recs []storage.Record) []int64 {
	t.Helper()
	ctx := testCtx(t)
	p, err := c.NewProducer(topic, Linger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var rs []*Result
	for _, r := range recs {
		rs = append(rs, p.Produce(ctx, r))
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	offs := make([]int64, len(rs))
	for i, r := range rs {
		off, err := r.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		offs[i] = off
	}
	return offs
}

func TestConsumerStart(t *testing.T) {
	_, c := setup(t, "ts", 1)
	ctx := testCtx(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var recs []storage.Record
	for i := range 10 {
		recs = append(recs, storage.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i),
			Timestamp: base.Add(time.Duration(i) * time.Second).UnixMilli()})
	}
	if offs := produceBatch(t, c, "ts", recs); offs[0] != 0 || offs[9] != 9 {
		t.Fatalf("offsets %v", offs)
	}
	cases := []struct {
		name  string
		from  OffsetSpec
		first int64 // -1: none before a new record
	}{
		{"earliest", Earliest(), 0},
		{"offset in the middle of a batch", AtOffset(5), 5},
		{"last offset", AtOffset(9), 9},
		{"time between records", AtTime(base.Add(3500 * time.Millisecond)), 4},
		{"time of a record", AtTime(base.Add(2 * time.Second)), 2},
		{"time before all", AtTime(base.Add(-time.Hour)), 0},
		{"time after all", AtTime(time.Now().Add(time.Hour)), -1},
		{"latest", Latest(), -1},
		{"offset at the end", AtOffset(10), -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cons, err := c.NewConsumer("ts", 0, From(tc.from), MaxWait(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			if pos := cons.Position(); pos != -1 && tc.from.kind != specOffset {
				t.Fatalf("position before the first poll: %d", pos)
			}
			msgs, err := cons.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first < 0 {
				if len(msgs) != 0 || cons.Position() != 10 {
					t.Fatalf("%d messages, position %d; want none at 10", len(msgs), cons.Position())
				}
				return
			}
			if len(msgs) != int(10-tc.first) {
				t.Fatalf("%d messages from %v, want %d", len(msgs), tc.from, 10-tc.first)
			}
			for i, m := range msgs {
				o := tc.first + int64(i)
				if m.Offset != o || string(m.Key) != fmt.Sprintf("k%d", o) || string(m.Value) != fmt.Sprintf("v%d", o) ||
					!m.Timestamp.Equal(base.Add(time.Duration(o)*time.Second)) {
					t.Fatalf("message %d: offset %d %s=%s at %v", i, m.Offset, m.Key, m.Value, m.Timestamp)
				}
			}
			if cons.Position() != 10 {
				t.Fatalf("position %d after the last record, want 10", cons.Position())
			}
		})
	}

	// A consumer at the end gets what is produced next, within its long poll.
	cons, err := c.NewConsumer("ts", 0, From(Latest()), MaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	produced := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the poll has resolved Latest and waits
		p, err := c.NewProducer("ts")
		if err == nil {
			_, err = p.Produce(ctx, storage.Record{Value: []byte("late")}).Wait(ctx)
			p.Close()
		}
		produced <- err
	}()
	start := time.Now()
	msgs, err := cons.Poll(ctx)
	if err != nil || len(msgs) != 1 || msgs[0].Offset != 10 || string(msgs[0].Value) != "late" {
		t.Fatalf("long poll: %v, %v", msgs, err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("long poll answered after %v", el)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
}

func TestConsumerPollRecordsAndOutOfRange(t *testing.T) {
	_, c := setup(t, "pr", 1)
	ctx := testCtx(t)
	var recs []storage.Record
	for i := range 10 {
		recs = append(recs, storage.Record{Value: fmt.Appendf(nil, "%d", i)})
	}
	produceBatch(t, c, "pr", recs)
	cons, err := c.NewConsumer("pr", 0, MaxWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for want := int64(0); want < 10; want += 4 {
		msgs, err := cons.PollRecords(ctx, 4)
		if err != nil || len(msgs) != int(min(4, 10-want)) || msgs[0].Offset != want {
			t.Fatalf("PollRecords(4) at %d: %d messages, %v", want, len(msgs), err)
		}
		if pos := cons.Position(); pos != msgs[len(msgs)-1].Offset+1 {
			t.Fatalf("position %d after offset %d", pos, msgs[len(msgs)-1].Offset)
		}
	}

	beyond, err := c.NewConsumer("pr", 0, From(AtOffset(50)), MaxWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := beyond.Poll(ctx); !errors.Is(err, wire.ErrOffsetOutOfRange) {
		t.Fatalf("offset 50 of 10 without a reset policy: %v", err)
	}
	reset, err := c.NewConsumer("pr", 0, From(AtOffset(50)), ResetOffset(ResetEarliest), MaxWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := reset.Poll(ctx); err != nil || len(msgs) != 10 || msgs[0].Offset != 0 {
		t.Fatalf("offset 50 reset to earliest: %d messages, %v", len(msgs), err)
	}
	unknown, err := c.NewConsumer("pr", 3, MaxWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unknown.Poll(ctx); !errors.Is(err, wire.ErrUnknownPartition) {
		t.Fatalf("partition 3 of 1: %v", err)
	}
	cons.Close()
	if _, err := cons.Poll(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("poll after Close: %v", err)
	}
}

func TestConsumerPauseResume(t *testing.T) {
	_, c := setup(t, "pause", 1)
	ctx := testCtx(t)
	produceBatch(t, c, "pause", []storage.Record{{Value: []byte("a")}, {Value: []byte("b")}})
	cons, err := c.NewConsumer("pause", 0, MaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if msgs, err := cons.PollRecords(ctx, 1); err != nil || len(msgs) != 1 || string(msgs[0].Value) != "a" {
		t.Fatalf("first poll: %v, %v", msgs, err)
	}
	cons.Pause()
	if !cons.Paused() {
		t.Fatal("not paused")
	}
	start := time.Now()
	if msgs, err := cons.Poll(ctx); err != nil || len(msgs) != 0 {
		t.Fatalf("poll while paused: %v, %v", msgs, err)
	}
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Fatalf("a paused poll returned after %v, before MaxWait", el)
	}
	if cons.Position() != 1 {
		t.Fatalf("position %d while paused", cons.Position())
	}
	cons.Resume()
	if msgs, err := cons.Poll(ctx); err != nil || len(msgs) != 1 || string(msgs[0].Value) != "b" {
		t.Fatalf("poll after resume: %v, %v", msgs, err)
	}

	// Paused with a fetch in flight, and resumed from another goroutine while Poll waits:
	// the answer that arrived meanwhile is kept, not returned while paused, and returned once
	// resumed.
	long, err := c.NewConsumer("pause", 0, From(AtOffset(2)), MaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		long.Pause()
		produceBatch(t, c, "pause", []storage.Record{{Value: []byte("c")}})
		time.Sleep(50 * time.Millisecond)
		long.Resume()
	}()
	start = time.Now()
	msgs, err := long.Poll(ctx)
	if err != nil || len(msgs) != 1 || string(msgs[0].Value) != "c" {
		t.Fatalf("poll across pause and resume: %v, %v", msgs, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("resume did not wake the poll: %v", el)
	}
}

// TestPollPastMaxWaitDoesNotSpin polls through a node whose fetch answers come late: once
// MaxWait has passed, Poll waits for the answer of its fetch without waking meanwhile.
func TestPollPastMaxWaitDoesNotSpin(t *testing.T) {
	const late = 300 * time.Millisecond
	addr := fakeNode(t, func(f wire.Frame) (any, time.Duration) {
		if f.API != wire.ApiFetch {
			t.Errorf("unexpected %s request", f.API)
			return nil, 0
		}
		return &wire.FetchResponse{}, late
	})
	c := dial(t, addr)
	cons, err := c.NewConsumer("slow", 0, From(AtOffset(0)), MaxWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	start := time.Now()
	if msgs, err := cons.Poll(testCtx(t)); err != nil || len(msgs) != 0 {
		t.Fatalf("poll: %v, %v", msgs, err)
	}
	if el := time.Since(start); el < late {
		t.Fatalf("poll returned after %v, before its fetch's answer", el)
	}
	if n := cons.f.wakeups; n > 5 {
		t.Fatalf("poll woke %d times while its fetch was out", n)
	}
}

// TestAssignForgetsPause revokes a paused partition and assigns it again: it comes back not
// paused, while a paused partition kept across the assignments stays paused.
func TestAssignForgetsPause(t *testing.T) {
	f := newFetcher(nil, fetchConfig{})
	a, b := topicPartition{"t", 0}, topicPartition{"t", 1}
	from := func(topicPartition) OffsetSpec { return Earliest() }
	f.assign([]topicPartition{a, b}, from)
	f.pause(a, b)
	f.assign([]topicPartition{b}, from)
	f.assign([]topicPartition{a, b}, from)
	if f.isPaused(a) {
		t.Error("a partition paused, revoked and assigned again is still paused")
	}
	if !f.isPaused(b) {
		t.Error("a paused partition kept across assignments was resumed")
	}
	if pos := f.position(a); pos != -1 {
		t.Errorf("position %d of a partition assigned again", pos)
	}
}
