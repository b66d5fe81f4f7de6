// Package produce is how sinks write records to Weir topics: the topic sink forwards to them and
// the http sink sends refused batches to a dead-letter topic. Each of those sinks declares the
// one method it needs,
//
//	Produce(ctx context.Context, topic string, recs []storage.Record) error
//
// and *Producer implements it over the Go client (package client).
//
// # Guarantee
//
// Produce returns nil only once the node acknowledged every record with acks=all (the client's
// default: the records are committed by a majority of their partition's replicas). Records go
// through the client's idempotent producer, one per topic, so a batch the client retries after a
// lost answer is written once. A Produce that returns an error (a record failed after the
// client's retries, or ctx ended first) may still have written some or all of its records: a
// sink that returns that error has its batch replayed, so the records are delivered at least
// once, never lost.
//
// Keys, headers and timestamps are kept: a record with a key goes to the partition of its key
// (client's partitioning contract), a record without one to the client's sticky partition. The
// topics must exist: a topic the node does not know fails Produce after the client's retries
// for an unknown topic (about 6.5 s by default).
//
// # Concurrency
//
// Produce may be called from any goroutine. Close waits for the records in flight and must be
// called once, after the last Produce.
package produce

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/storage"
)

// ErrClosed is returned by Produce after Close.
var ErrClosed = errors.New("produce: producer closed")

// Producer produces records to any topic through one client, with one client.Producer per topic
// (made at the topic's first record).
type Producer struct {
	cl   *client.Client
	own  bool // Close closes cl
	opts []client.ProducerOption

	mu     sync.Mutex
	closed bool
	topics map[string]*client.Producer
}

// New returns a producer over cl, which stays the caller's (Close does not close it). opts
// configure each topic's client.Producer; leave acknowledgements at their default, acks=all,
// or the guarantee above does not hold.
func New(cl *client.Client, opts ...client.ProducerOption) *Producer {
	return &Producer{cl: cl, opts: opts, topics: map[string]*client.Producer{}}
}

// Dial connects to the node's client port at addr and returns a producer that owns the
// connection (Close closes it).
func Dial(addr string, opts ...client.Option) (*Producer, error) {
	cl, err := client.Dial(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("produce: dial %s: %w", addr, err)
	}
	p := New(cl)
	p.own = true
	return p, nil
}

// Produce sends recs to topic and waits until every one is acknowledged or has failed. It
// returns nil when all were acknowledged, else the first failure (wrapped) with how many failed.
// The client keeps the records' slices until each is acknowledged or failed, which may be after
// a Produce that ctx ended returned: they must not be changed.
func (p *Producer) Produce(ctx context.Context, topic string, recs []storage.Record) error {
	if len(recs) == 0 {
		return nil
	}
	tp, err := p.producer(topic)
	if err != nil {
		return err
	}
	results := make([]*client.Result, len(recs))
	for i, r := range recs {
		results[i] = tp.Produce(ctx, r)
	}
	var first error
	failed := 0
	for _, r := range results {
		if _, err := r.Wait(ctx); err != nil {
			if first == nil {
				first = err
			}
			failed++
			if ctx.Err() != nil {
				break // the others' Waits would fail the same way at once
			}
		}
	}
	if first != nil {
		return fmt.Errorf("produce: %d of %d records to %s not acknowledged: %w", failed, len(recs), topic, first)
	}
	return nil
}

func (p *Producer) producer(topic string) (*client.Producer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if tp, ok := p.topics[topic]; ok {
		return tp, nil
	}
	tp, err := p.cl.NewProducer(topic, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("produce: producer to %s: %w", topic, err)
	}
	p.topics[topic] = tp
	return tp, nil
}

// Close closes every topic's producer (waiting for the records in flight) and, if Dial made
// it, the client.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	topics := p.topics
	p.topics = nil
	p.mu.Unlock()
	var errs []error
	for _, tp := range topics {
		errs = append(errs, tp.Close())
	}
	if p.own {
		errs = append(errs, p.cl.Close())
	}
	return errors.Join(errs...)
}
