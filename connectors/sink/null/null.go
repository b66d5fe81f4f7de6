// Package null is a sink that discards every record it is given, as Flume's null sink does: for
// measuring a flow without the cost of a store, and for draining a topic on purpose.
//
// # Guarantee
//
// None is needed and none is given: Write keeps nothing and returns nil at once, so the runner
// commits the offsets of every batch it hands over. The records stay in their topic (until its
// retention removes them) and can be read again by another group or from an older offset.
//
// Records counts every record Write was given and Writes every call; a batch the runner hands
// over again after a restart is counted again, so the counts are at-least-once counts.
//
// # Concurrency
//
// The runner calls Open, Write and Close from one goroutine at a time; Records and Writes may be
// called from any goroutine.
package null

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/weirhq/weir/connectors"
)

// Config configures a null sink. The zero Config is valid: discard silently.
type Config struct {
	// LogEvery logs the running count each time it passes another LogEvery records (0: never).
	LogEvery int64
	// Logger receives those lines (default: discarded).
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.LogEvery < 0 {
		return fmt.Errorf("null sink: LogEvery %d, want 0 (never) or more", c.LogEvery)
	}
	return nil
}

// Sink discards records and counts them.
type Sink struct {
	cfg     Config
	records atomic.Int64
	writes  atomic.Int64
}

// New returns a null sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg}, nil
}

// Open implements connectors.Sink.
func (s *Sink) Open(context.Context) error { return nil }

// BorrowsMessages implements connectors.Borrower: Write keeps nothing of msgs.
func (s *Sink) BorrowsMessages() {}

// Write implements connectors.Sink: it counts msgs and drops them.
func (s *Sink) Write(_ context.Context, msgs []connectors.Message) error {
	s.writes.Add(1)
	n := int64(len(msgs))
	after := s.records.Add(n)
	if e := s.cfg.LogEvery; e > 0 && after/e > (after-n)/e {
		s.cfg.Logger.Info("null sink discarded records", "records", after, "writes", s.writes.Load())
	}
	return nil
}

// Close implements connectors.Sink.
func (s *Sink) Close() error { return nil }

// Records is how many records Write was given since New.
func (s *Sink) Records() int64 { return s.records.Load() }

// Writes is how many times Write was called since New.
func (s *Sink) Writes() int64 { return s.writes.Load() }
