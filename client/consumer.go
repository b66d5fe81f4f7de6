package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// OffsetSpec is a position in a partition: Earliest (the zero value), Latest, AtOffset or
// AtTime.
type OffsetSpec struct {
	kind   specKind
	offset int64
	ts     int64 // unix milliseconds
}

type specKind uint8

const (
	specEarliest specKind = iota
	specLatest
	specOffset
	specTime
)

// Earliest is the first record still in the log.
func Earliest() OffsetSpec { return OffsetSpec{kind: specEarliest} }

// Latest is the end of the log (the high watermark): the next record produced.
func Latest() OffsetSpec { return OffsetSpec{kind: specLatest} }

// AtOffset is the given offset.
func AtOffset(offset int64) OffsetSpec { return OffsetSpec{kind: specOffset, offset: offset} }

// AtTime is the first record whose timestamp is at or after t (the end of the log if none is).
func AtTime(t time.Time) OffsetSpec { return OffsetSpec{kind: specTime, ts: t.UnixMilli()} }

func (s OffsetSpec) String() string {
	switch s.kind {
	case specLatest:
		return "latest"
	case specOffset:
		return fmt.Sprintf("offset %d", s.offset)
	case specTime:
		return "time " + time.UnixMilli(s.ts).UTC().Format(time.RFC3339Nano)
	}
	return "earliest"
}

func (s OffsetSpec) wireSpec() int64 {
	switch s.kind {
	case specLatest:
		return wire.OffsetLatest
	case specTime:
		return wire.OffsetTimestamp
	}
	return wire.OffsetEarliest
}

// Consumer reads one partition of a topic from a start position, with no group: its position
// lives only in the Consumer. Poll, PollRecords and Close belong to one goroutine at a time;
// Pause, Resume, Paused and Position may be called from any goroutine.
type Consumer struct {
	tp     topicPartition
	f      *fetcher
	closed bool
}

// NewConsumer returns a consumer of one partition, starting at From (Earliest by default).
// Nothing is sent before the first Poll.
func (c *Client) NewConsumer(topic string, partition int32, opts ...ConsumerOption) (*Consumer, error) {
	cfg := consumerConfig{fetchConfig: c.cfg.fetch(ResetNone)}
	for _, o := range opts {
		o.applyConsumer(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if topic == "" {
		return nil, errors.New("client: NewConsumer: empty topic name")
	}
	if partition < 0 {
		return nil, fmt.Errorf("client: NewConsumer: partition %d is negative", partition)
	}
	if cfg.from.kind == specOffset && cfg.from.offset < 0 {
		return nil, fmt.Errorf("client: NewConsumer: From(AtOffset(%d)): negative offset", cfg.from.offset)
	}
	tp := topicPartition{topic, partition}
	f := newFetcher(c, cfg.fetchConfig)
	f.assign([]topicPartition{tp}, func(topicPartition) OffsetSpec { return cfg.from })
	return &Consumer{tp: tp, f: f}, nil
}

// Poll returns the next messages, in offset order: those fetched and not yet returned at once,
// else whatever arrives within MaxWait (possibly none). The first fetch skips the records of
// its batch before the start position; batches that hold no records are skipped. An error
// leaves the position where it was: the next Poll tries again.
func (c *Consumer) Poll(ctx context.Context) ([]Message, error) { return c.PollRecords(ctx, 0) }

// PollRecords is Poll returning at most max messages (all there are when max <= 0); the rest
// stay for the next poll.
func (c *Consumer) PollRecords(ctx context.Context, max int) ([]Message, error) {
	if c.closed {
		return nil, ErrClosed
	}
	return c.f.poll(ctx, max, nil)
}

// Pause stops returning messages until Resume; a Poll meanwhile waits MaxWait and returns none.
func (c *Consumer) Pause() { c.f.pause(c.tp) }

// Resume undoes Pause; a Poll waiting returns what arrives.
func (c *Consumer) Resume() { c.f.resume(c.tp) }

// Paused reports whether the consumer is paused.
func (c *Consumer) Paused() bool { return c.f.isPaused(c.tp) }

// Position is the offset of the next message Poll returns, or -1 before the start position
// is resolved (the first Poll).
func (c *Consumer) Position() int64 { return c.f.position(c.tp) }

// Topic and Partition name what the consumer reads.
func (c *Consumer) Topic() string    { return c.tp.topic }
func (c *Consumer) Partition() int32 { return c.tp.partition }

// Close abandons the fetch in flight. It does not close the Client.
func (c *Consumer) Close() error {
	if !c.closed {
		c.closed = true
		c.f.close()
	}
	return nil
}
