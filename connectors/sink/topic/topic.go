// Package topic is a sink that forwards the records it reads to other Weir topics: fan-in (many
// topics, or flows, into one), fan-out (one record to several topics, or records spread over
// topics by content) and chains of flows, which Flume builds with an avro sink feeding the avro
// source of the next agent.
//
// # Guarantee
//
// At least once. Write returns nil only when every record of the batch was acknowledged by its
// destination with acks=all (see package connectors/sink/produce), and only then does the
// runner commit the source offsets. A failed Write (a destination that does not exist, a node
// away for longer than the client retries) returns the error, the runner restarts the sink and
// the batch is read again: records a failed Write did produce are then produced again. Writes
// go through the client's idempotent producer, so a retry inside the client does not repeat a
// record; only a replay after a failed Write does.
//
// # Records
//
// A forwarded record keeps its key, value, headers and timestamp; with a key it goes to the
// partition of its key in the destination, without one to the client's sticky partition, so
// the order of records is kept per key (and per source partition only when the destination has
// one partition). With OriginHeader set, each forwarded record also carries that header with
// its origin as "topic/partition/offset" ("orders/3/1042"), which is unambiguous because topic
// names hold no '/'.
//
// Topic sends every record to one topic; Route chooses, per record, the topics it goes to: none
// (the record is dropped on purpose; its offset is committed), one, or several (a copy to each).
// A connectors.Selector routes by record: Route: func(m connectors.Message) []string { return
// sel.Select(m.Record) }. A destination must exist and must not be the topic the record was
// read from (Write fails rather than feed a topic to itself forever); a Route that returns such
// a topic, or a name no topic can have, fails Write, and as a replay routes the record the same
// way, the flow stops making progress until Route is fixed: the runner's log says why.
//
// # Concurrency
//
// The runner calls Open, Write and Close from one goroutine at a time. Write produces to its
// destinations in parallel, one goroutine per destination topic, and waits for them.
package topic

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/produce"
	"github.com/weirhq/weir/storage"
)

// Producer produces records to a topic and returns once every one is acknowledged with
// acks=all. *produce.Producer is one.
type Producer interface {
	Produce(ctx context.Context, topic string, recs []storage.Record) error
}

// Config configures a topic sink.
type Config struct {
	// Addr is the client address of a node of the destination cluster ("127.0.0.1:7420"): the
	// sink connects in Open and disconnects in Close. Set Addr or Producer, not both.
	Addr string
	// Producer produces the records instead of a connection the sink makes; the sink does not
	// close it.
	Producer Producer
	// Topic receives every record. Set Topic or Route, not both.
	Topic string
	// Route returns the topics a record goes to (none: it is dropped). It is called from
	// Write's goroutine, once per record.
	Route func(m connectors.Message) []string
	// OriginHeader, if set, names a header added to each forwarded record holding its origin
	// as "topic/partition/offset" (a header of that name the record had is replaced).
	OriginHeader string
}

// topicName is the alphabet of topic names the node accepts; it checks the rest.
var topicName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

func checkTopic(name string) error {
	if !topicName.MatchString(name) {
		return fmt.Errorf("topic name %q: use 1 to 200 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// Validate reports a configuration that cannot work, naming the field at fault.
func (c Config) Validate() error {
	switch {
	case c.Addr == "" && c.Producer == nil:
		return errors.New("topic sink: set Addr (a node's client address) or Producer")
	case c.Addr != "" && c.Producer != nil:
		return errors.New("topic sink: set Addr or Producer, not both")
	case c.Topic == "" && c.Route == nil:
		return errors.New("topic sink: set Topic (one destination) or Route (a destination per record)")
	case c.Topic != "" && c.Route != nil:
		return errors.New("topic sink: set Topic or Route, not both")
	}
	if c.Topic != "" {
		if err := checkTopic(c.Topic); err != nil {
			return fmt.Errorf("topic sink: Topic: %w", err)
		}
	}
	return nil
}

// Sink forwards records to topics.
type Sink struct {
	cfg Config

	p     Producer
	owned *produce.Producer // the producer Open dialled, closed by Close; nil with Config.Producer
}

// New returns a topic sink; with Addr, it connects in Open.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg}, nil
}

// Open implements connectors.Sink: with Addr it connects to the node.
func (s *Sink) Open(context.Context) error {
	if s.cfg.Producer != nil {
		s.p = s.cfg.Producer
		return nil
	}
	if s.owned != nil {
		return errors.New("topic sink: Open of an open sink")
	}
	p, err := produce.Dial(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("topic sink: %w", err)
	}
	s.owned, s.p = p, p
	return nil
}

// Write implements connectors.Sink: it returns nil once every record is acknowledged by each
// of its destinations.
func (s *Sink) Write(ctx context.Context, msgs []connectors.Message) error {
	if s.p == nil {
		return errors.New("topic sink: Write before Open")
	}
	var order []string // destinations in order of first use
	byTopic := map[string][]storage.Record{}
	for _, m := range msgs {
		dests := []string{s.cfg.Topic}
		if s.cfg.Route != nil {
			dests = s.cfg.Route(m)
		}
		rec := m.Record
		if s.cfg.OriginHeader != "" {
			h := make(map[string]string, len(rec.Headers)+1)
			for k, v := range rec.Headers {
				h[k] = v
			}
			h[s.cfg.OriginHeader] = fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
			rec.Headers = h
		}
		for _, d := range dests {
			if err := checkTopic(d); err != nil {
				return fmt.Errorf("topic sink: record %s/%d@%d routed to a bad topic: %w", m.Topic, m.Partition, m.Offset, err)
			}
			if d == m.Topic {
				return fmt.Errorf("topic sink: record %s/%d@%d routed to the topic it came from", m.Topic, m.Partition, m.Offset)
			}
			if _, ok := byTopic[d]; !ok {
				order = append(order, d)
			}
			byTopic[d] = append(byTopic[d], rec)
		}
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, d := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.p.Produce(ctx, d, byTopic[d]); err != nil {
				errs[i] = fmt.Errorf("topic sink: to %s: %w", d, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close implements connectors.Sink: it closes the connection Open made, after the records in
// flight (there are none once Write returned nil).
func (s *Sink) Close() error {
	s.p = nil
	if s.owned == nil {
		return nil
	}
	err := s.owned.Close()
	s.owned = nil
	return err
}
