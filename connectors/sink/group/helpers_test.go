package group

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
)

// testSink is a member that stores what it is given, fails when told to, and records any call
// that breaks the Sink protocol (a Write while closed, an Open while open).
type testSink struct {
	name  string
	calls *callLog // if set, every Write call is logged there

	mu       sync.Mutex
	writeErr error // returned by every Write while set
	openErr  error // returned by every Open while set
	closeErr error
	hang     bool // Write waits for its context to end
	isOpen   bool
	opened   bool // Open was called (successfully or not) and Close not yet
	opens    int
	closes   int
	writes   int // Write calls, failed or not
	stored   []connectors.Message
	misuse   []string
}

func newTestSink(name string) *testSink { return &testSink{name: name} }

// callLog lists the members written to, in order, across sinks.
type callLog struct {
	mu    sync.Mutex
	names []string
}

func (l *callLog) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

// take returns the names logged since the last take.
func (l *callLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.names, "")
	l.names = nil
	return s
}

func (s *testSink) Open(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens++
	if s.isOpen {
		s.misuse = append(s.misuse, "Open of an open sink")
	}
	s.opened = true
	if s.openErr != nil {
		return s.openErr
	}
	s.isOpen = true
	return nil
}

func (s *testSink) Write(ctx context.Context, msgs []connectors.Message) error {
	if s.calls != nil {
		s.calls.add(s.name)
	}
	s.mu.Lock()
	s.writes++
	if !s.isOpen {
		s.misuse = append(s.misuse, "Write to a closed sink")
	}
	if s.hang {
		s.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	s.stored = append(s.stored, msgs...)
	return nil
}

func (s *testSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	if !s.opened {
		s.misuse = append(s.misuse, "Close without an Open before it")
	}
	s.isOpen, s.opened = false, false
	return s.closeErr
}

func (s *testSink) set(f func(s *testSink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *testSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stored)
}

func (s *testSink) writeCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// checkProtocol fails t if any sink was misused.
func checkProtocol(t *testing.T, sinks ...*testSink) {
	t.Helper()
	for _, s := range sinks {
		s.mu.Lock()
		if len(s.misuse) > 0 {
			t.Errorf("%s misused: %v", s.name, s.misuse)
		}
		s.mu.Unlock()
	}
}

// fakeClock is a clock that moves only when told to, or by the length of a Sleep (which then
// returns at once), unless block is set: then Sleep signals sleeping and waits for its context.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	sleeps   []time.Duration
	block    bool
	sleeping chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), sleeping: make(chan time.Duration, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	block := c.block
	if !block {
		c.now = c.now.Add(d)
	}
	c.mu.Unlock()
	if block {
		c.sleeping <- d
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// batch returns n messages of topic "t" partition 0 from offset from.
func batch(from, n int) []connectors.Message {
	msgs := make([]connectors.Message, n)
	for i := range msgs {
		msgs[i] = connectors.Message{Topic: "t", Offset: int64(from + i)}
		msgs[i].Value = fmt.Appendf(nil, "v%d", from+i)
	}
	return msgs
}

var errDown = errors.New("store down")

// stateOf returns the state of the member called name.
func stateOf(t *testing.T, states []MemberState, name string) MemberState {
	t.Helper()
	for _, s := range states {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no member %s in %v", name, states)
	return MemberState{}
}
