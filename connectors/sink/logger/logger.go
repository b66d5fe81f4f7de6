// Package logger is a sink that writes each record as a line to a writer (or logs it with
// slog): for watching a flow work, and for tests. Write is durable when the writer returned.
package logger

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/weirhq/weir/connectors"
)

// Sink prints records.
type Sink struct {
	mu     sync.Mutex
	w      io.Writer
	format func(connectors.Message) string
}

// New returns a sink writing to w, one line per record formatted by format (nil: the default
// "topic/partition@offset key=value").
func New(w io.Writer, format func(connectors.Message) string) *Sink {
	if format == nil {
		format = func(m connectors.Message) string {
			if len(m.Key) > 0 {
				return fmt.Sprintf("%s/%d@%d %s=%s", m.Topic, m.Partition, m.Offset, m.Key, m.Value)
			}
			return fmt.Sprintf("%s/%d@%d %s", m.Topic, m.Partition, m.Offset, m.Value)
		}
	}
	return &Sink{w: w, format: format}
}

// Open implements connectors.Sink.
func (s *Sink) Open(context.Context) error { return nil }

// Write implements connectors.Sink.
func (s *Sink) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if _, err := fmt.Fprintln(s.w, s.format(m)); err != nil {
			return err
		}
	}
	return nil
}

// Close implements connectors.Sink.
func (s *Sink) Close() error { return nil }
