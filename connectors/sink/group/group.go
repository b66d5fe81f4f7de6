// Package group holds sink groups: sinks made of several member sinks, as Flume's sink
// processors make one sink of several. A group is a connectors.Sink, so a flow runs it like any
// other sink (flow.Runtime.Sink); the group decides which member stores each batch.
//
//   - Failover (Flume's failover sink processor): every batch goes to the member with the highest
//     priority that is not penalised. A member whose Write fails is penalised and the same batch
//     goes to the next member, in priority order.
//   - LoadBalance (Flume's load_balance sink processor): batches go to the members in turn
//     (selector RoundRobin) or at random (selector Random); when a member fails, the batch goes
//     to the next member the selector gives. With Backoff, a failed member is penalised, as in
//     Failover (Flume's backoff=true); without it, it stays in the rotation.
//
// For example, files on a local disk with a second disk to fall back on:
//
//	primary, _ := file.New(file.DefaultConfig("/data/out"))
//	backup, _ := file.New(file.DefaultConfig("/backup/out"))
//	g, err := group.NewFailover(group.FailoverConfig{Members: []group.Member{
//		{Name: "primary", Sink: primary.Member(), Priority: 10},
//		{Name: "backup", Sink: backup.Member(), Priority: 5},
//	}})
//	...
//	rt.Sink("out", g, flow.FromTopics("events"))
//
// A group is one consumer-group member, like any sink: its members share the batches of the
// partitions that member is given; they are not consumer-group members themselves.
//
// # Penalties
//
// A penalised member is left out until its penalty ends. The penalty of a member's n-th failure
// in a row is Penalty·2^(n-1) (Penalty defaults to 1 s), at most MaxPenalty (Flume's maxpenalty
// and selector.maxTimeOut; 8 s by default, where Flume has 30 s, so that a Write waiting for a
// member stays within the group's session). A Write the member stores resets its count, so its
// next failure is penalised with Penalty again. An Open that fails is a failure like a failed
// Write.
//
// After a failed Write (or Open) the group closes the member at once, and opens it again before
// the next Write it gives it: the same Close and Open that the flow's runner does to a sink whose
// Write failed, and what some sinks need to be usable again (the file sink refuses every Write
// after a failed one until it is opened again).
//
// # When every member fails
//
// A Write tries each member at most once. When every member it has not tried yet is penalised, it
// waits until the first of them comes back and tries it, so a group whose members all failed
// recently does not fail at once: it waits at most MaxPenalty in all. The wait respects ctx.
// Write returns an error only when each member has failed this batch, or ctx ended while it
// waited; the error is an *Error naming every member and its last failure, and matches
// ErrAllFailed (or ctx's error) with errors.Is. The runner then restarts the flow's actor, which
// closes and opens the group: the penalties are kept across that, and members that fail Open are
// penalised; Open fails only when every member does. Since Writes wait out the penalties,
// restarts for failed Writes come further and further apart (with the default penalties, fewer
// than the node's default 10 restarts a minute); an Open that every member fails is not waited
// out, so an outage that keeps every member from opening stops the flow as it would stop a
// single sink that cannot open.
//
// A Write that waits blocks the runner, which sends no heartbeats to its consumer group
// meanwhile: a wait longer than the group's session (10 s by default) makes the coordinator drop
// the runner, which rejoins when Write returns. Nothing is lost (offsets are committed only after
// a Write returned nil); the batch may be written again. The default MaxPenalty (8 s) stays below
// the default session; raise it only with the session.
//
// # Delivery
//
// Each member's Write may be bounded by WriteTimeout, so that a member that hangs is failed over
// before the caller's context (the runner's WriteTimeout, 1 minute) ends the whole Write.
//
// Write returns nil only when one member stored the whole batch (its Write returned nil): the
// runner commits the offsets after that, so every record is in at least one member. A batch a
// member failed may have been stored partly (or wholly: a Write that timed out after storing),
// and is written again to another member: records may be in two members. A sink that is exactly
// once on its own loses that in a group, since it skips only the repeats it wrote itself, not
// those another member holds: the file sink repeats across members what a failed Write made
// durable before failing, and a batch the runner reads again after a crash that the group gives
// to another member than the first time.
//
// The HDFS sink, the other exactly-once sink, cannot be a member at all, nor can any staging
// sink (connectors.StagingSink): its records become durable many Writes later, and the runner's
// protocol (Durable, Reset, ErrReplay) speaks to one sink and cannot span members.
// NewFailover and NewLoadBalance refuse it with ErrStagingMember. The file sink is a staging
// sink too (one whose Writes are durable when they return: it learns from Reset when it loses
// partitions); its Member method gives the plain sink a group takes.
//
// # Observability
//
// State reports each member: open or not, penalised until when, failures in a row, its last
// failure, and the batches and records it stored. Each failure, each wait and each member
// coming back after failures is logged (slog, to Logger).
//
// # Concurrency
//
// Open, Write and Close are called from one goroutine at a time, as the runner does; the group
// calls its members from that goroutine only. State may be called from any goroutine at any time.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/connectors"
)

// Defaults of the penalties.
const (
	DefaultPenalty    = time.Second
	DefaultMaxPenalty = 8 * time.Second // below the consumer group's 10 s session: see "When every member fails"
)

// ErrAllFailed is matched (errors.Is) by the error of a Write that every member failed, and of
// an Open that every member failed.
var ErrAllFailed = errors.New("sink group: every member failed")

// ErrStagingMember is matched by the error of a constructor given a staging sink as a member.
var ErrStagingMember = errors.New("sink group: a staging sink (connectors.StagingSink, such as the HDFS sink) cannot be a member: " +
	"the runner's staging protocol speaks to one sink")

// Member is a sink of a group.
type Member struct {
	// Name identifies the member in logs, errors and State; required, unique in the group.
	Name string
	// Sink is the member's sink; a sink is a member of one group at most.
	Sink connectors.Sink
	// Priority orders a Failover group's members: the highest first; members of equal priority
	// in the order given. LoadBalance ignores it.
	Priority int
}

// Clock is the time of a group: injected so that tests need not wait for penalties.
type Clock interface {
	Now() time.Time
	// Sleep waits for d, or until ctx is done and then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MemberState is what State reports of a member.
type MemberState struct {
	Name     string
	Priority int
	// Open tells whether the member is open: false before Open, after Close, and after a failure
	// until the group opens it again.
	Open bool
	// Failures counts the member's failures (Write or Open) since it last stored a batch.
	Failures int
	// PenalisedUntil is when its penalty ends; zero when it is not penalised.
	PenalisedUntil time.Time
	// LastError is its last failure (nil if none) and LastFailure when it happened; both are
	// kept after the member stores batches again.
	LastError   error
	LastFailure time.Time
	// Batches and Records count the Writes it stored and their records.
	Batches, Records int64
}

// MemberError is a member's last failure, in an *Error.
type MemberError struct {
	Member string
	Err    error
	// Tried tells whether the member failed this Write; false for one that was penalised
	// throughout it (Err is then its last failure before this Write).
	Tried bool
	// Until is when its penalty ends (zero if not penalised).
	Until time.Time
}

// Error is the error of a Write no member stored, or of an Open no member passed: it names every
// member and its last failure. errors.Is matches ErrAllFailed, the error of the context when it
// ended, and the members' errors.
type Error struct {
	Op      string // "write" or "open"
	Members []MemberError
	// Ctx is the context's error when the Write ended because its context did; nil otherwise.
	Ctx error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Ctx != nil {
		fmt.Fprintf(&b, "sink group: %s: %v before a member stored the batch; last failures: ", e.Op, e.Ctx)
	} else {
		fmt.Fprintf(&b, "sink group: %s: every member failed: ", e.Op)
	}
	for i, m := range e.Members {
		if i > 0 {
			b.WriteString("; ")
		}
		if m.Err != nil {
			fmt.Fprintf(&b, "%s: %v", m.Member, m.Err)
		} else {
			fmt.Fprintf(&b, "%s: no failure", m.Member)
		}
		if !m.Until.IsZero() {
			fmt.Fprintf(&b, " (penalised until %s)", m.Until.Format(time.RFC3339Nano))
		}
	}
	return b.String()
}

// Unwrap returns ErrAllFailed (unless the context ended first), the context's error and the
// members' errors.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Ctx != nil {
		errs = append(errs, e.Ctx)
	} else {
		errs = append(errs, ErrAllFailed)
	}
	for _, m := range e.Members {
		if m.Err != nil {
			errs = append(errs, m.Err)
		}
	}
	return errs
}

// settings are what the two kinds of group share.
type settings struct {
	members      []Member
	penalty      time.Duration
	maxPenalty   time.Duration
	writeTimeout time.Duration
	logger       *slog.Logger
	clock        Clock
}

func (s *settings) validate(kind string) error {
	if len(s.members) == 0 {
		return fmt.Errorf("sink group (%s): no members", kind)
	}
	names := map[string]bool{}
	sinks := map[connectors.Sink]string{}
	for i, m := range s.members {
		switch {
		case m.Name == "":
			return fmt.Errorf("sink group (%s): member %d has no name", kind, i)
		case names[m.Name]:
			return fmt.Errorf("sink group (%s): two members named %q", kind, m.Name)
		case m.Sink == nil:
			return fmt.Errorf("sink group (%s): member %q has no sink", kind, m.Name)
		}
		if _, ok := m.Sink.(connectors.StagingSink); ok {
			if _, ok := m.Sink.(interface{ Member() connectors.Sink }); ok {
				return fmt.Errorf("sink group (%s): member %q: %w (give the group its Member())", kind, m.Name, ErrStagingMember)
			}
			return fmt.Errorf("sink group (%s): member %q: %w", kind, m.Name, ErrStagingMember)
		}
		if isPointer(m.Sink) {
			if other, ok := sinks[m.Sink]; ok {
				return fmt.Errorf("sink group (%s): members %q and %q are the same sink", kind, other, m.Name)
			}
			sinks[m.Sink] = m.Name
		}
		names[m.Name] = true
	}
	switch {
	case s.penalty < 0:
		return fmt.Errorf("sink group (%s): negative Penalty %v", kind, s.penalty)
	case s.maxPenalty < 0:
		return fmt.Errorf("sink group (%s): negative MaxPenalty %v", kind, s.maxPenalty)
	case s.penalty > 0 && s.maxPenalty > 0 && s.penalty > s.maxPenalty:
		return fmt.Errorf("sink group (%s): Penalty %v is more than MaxPenalty %v", kind, s.penalty, s.maxPenalty)
	case s.writeTimeout < 0:
		return fmt.Errorf("sink group (%s): negative WriteTimeout %v", kind, s.writeTimeout)
	}
	return nil
}

// isPointer tells whether a sink is a pointer, which two members must not share: the group
// would open it twice. (Other kinds of sink are not checked: some cannot be compared.)
func isPointer(s connectors.Sink) bool { return reflect.ValueOf(s).Kind() == reflect.Pointer }

// member is a member and its state. The fields after index are guarded by core.mu; the member's
// sink is called without it, from the runner's goroutine only.
type member struct {
	Member
	index int

	open        bool
	failures    int
	until       time.Time
	lastErr     error
	lastFailure time.Time
	batches     int64
	records     int64
}

// core is the state and the write loop that both kinds of group share; the kinds differ in the
// order they try members in and in whether a failure penalises.
type core struct {
	kind     string
	penalise bool // false: failures are counted but never exclude a member (LoadBalance without Backoff)
	settings

	mu      sync.Mutex
	members []*member // in the order of the configuration
}

func newCore(kind string, s settings, penalise bool) *core {
	if s.penalty == 0 {
		s.penalty = DefaultPenalty
	}
	if s.maxPenalty == 0 {
		s.maxPenalty = max(DefaultMaxPenalty, s.penalty)
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	c := &core{kind: kind, penalise: penalise, settings: s}
	for i, m := range s.members {
		c.members = append(c.members, &member{Member: m, index: i})
	}
	return c
}

// open opens every member that is not open. Members that fail are penalised and closed again
// (see failed); it fails only when every member does.
func (c *core) open(ctx context.Context) error {
	var failed []MemberError
	opened := 0
	for _, m := range c.members {
		c.mu.Lock()
		isOpen := m.open
		c.mu.Unlock()
		if isOpen {
			opened++
			continue
		}
		if err := c.openMember(ctx, m); err != nil {
			failed = append(failed, MemberError{Member: m.Name, Err: err, Tried: true, Until: c.untilOf(m)})
			continue
		}
		opened++
	}
	if opened == 0 {
		return &Error{Op: "open", Members: failed}
	}
	return nil
}

// openMember opens m; a failure is recorded (and penalised) and m closed again.
func (c *core) openMember(ctx context.Context, m *member) error {
	if err := m.Sink.Open(ctx); err != nil {
		err = fmt.Errorf("open: %w", err)
		c.failed(m, err)
		return err
	}
	c.mu.Lock()
	m.open = true
	c.mu.Unlock()
	return nil
}

// failed records a failure of m (its Write or its Open), penalises it and closes it: the runner
// would close and open a sink whose Write failed, and so does the group before m's next Write.
func (c *core) failed(m *member, err error) {
	now := c.clock.Now()
	c.mu.Lock()
	m.failures++
	m.lastErr, m.lastFailure = err, now
	var penalty time.Duration
	if c.penalise {
		penalty = c.penaltyOf(m.failures)
		m.until = now.Add(penalty)
	}
	failures := m.failures
	c.mu.Unlock()
	if penalty > 0 {
		c.logger.Warn("sink group: member failed; penalised", "processor", c.kind, "member", m.Name,
			"failures", failures, "penalty", penalty, "err", err)
	} else {
		c.logger.Warn("sink group: member failed", "processor", c.kind, "member", m.Name, "failures", failures, "err", err)
	}
	// Close even after a failed Open: the runner does so too (a sink may hold something an Open
	// that failed half way took).
	if cerr := m.Sink.Close(); cerr != nil {
		c.logger.Warn("sink group: close of a failed member", "processor", c.kind, "member", m.Name, "err", cerr)
	}
	c.mu.Lock()
	m.open = false
	c.mu.Unlock()
}

// penaltyOf is the penalty of the n-th failure in a row: Penalty doubled n-1 times, at most
// MaxPenalty.
func (c *core) penaltyOf(n int) time.Duration {
	p := c.penalty
	for i := 1; i < n && p < c.maxPenalty; i++ {
		if p > c.maxPenalty/2 { // no overflow for any MaxPenalty
			return c.maxPenalty
		}
		p *= 2
	}
	return min(p, c.maxPenalty)
}

func (c *core) untilOf(m *member) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return m.until
}

// write gives msgs to the members in order, each at most once, until one stores them (see the
// package doc for the waits and the error).
func (c *core) write(ctx context.Context, order []*member, msgs []connectors.Message) error {
	tried := make([]bool, len(c.members))
	for {
		if err := ctx.Err(); err != nil {
			return c.allFailed(tried, err)
		}
		now := c.clock.Now()
		var next, earliest *member
		var until time.Time
		c.mu.Lock()
		for _, m := range order {
			if tried[m.index] {
				continue
			}
			if m.until.After(now) {
				if earliest == nil || m.until.Before(until) {
					earliest, until = m, m.until
				}
				continue
			}
			next = m
			break
		}
		c.mu.Unlock()
		if next == nil {
			if earliest == nil {
				return c.allFailed(tried, nil)
			}
			wait := until.Sub(now)
			c.logger.Warn("sink group: every member left is penalised; waiting for the first back",
				"processor", c.kind, "member", earliest.Name, "wait", wait)
			if err := c.clock.Sleep(ctx, wait); err != nil {
				return c.allFailed(tried, err)
			}
			continue
		}
		tried[next.index] = true
		if err := c.writeTo(ctx, next, msgs); err != nil {
			c.failed(next, err)
			continue
		}
		return nil
	}
}

// writeTo opens m if it is not open, and writes msgs to it.
func (c *core) writeTo(ctx context.Context, m *member, msgs []connectors.Message) error {
	c.mu.Lock()
	isOpen := m.open
	c.mu.Unlock()
	if !isOpen {
		if err := m.Sink.Open(ctx); err != nil {
			return fmt.Errorf("open: %w", err)
		}
		c.mu.Lock()
		m.open = true
		c.mu.Unlock()
	}
	wctx := ctx
	if c.writeTimeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, c.writeTimeout)
		defer cancel()
	}
	if err := m.Sink.Write(wctx, msgs); err != nil {
		return err
	}
	c.mu.Lock()
	failures := m.failures
	m.failures, m.until = 0, time.Time{}
	m.batches++
	m.records += int64(len(msgs))
	c.mu.Unlock()
	if failures > 0 {
		c.logger.Info("sink group: member stores again", "processor", c.kind, "member", m.Name, "failures", failures)
	}
	return nil
}

// allFailed is the error of a Write: every member with its last failure.
func (c *core) allFailed(tried []bool, ctxErr error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &Error{Op: "write", Ctx: ctxErr}
	for _, m := range c.members {
		e.Members = append(e.Members, MemberError{Member: m.Name, Err: m.lastErr, Tried: tried[m.index], Until: m.until})
	}
	return e
}

// close closes every open member and joins their errors.
func (c *core) close() error {
	var errs []error
	for _, m := range c.members {
		c.mu.Lock()
		isOpen := m.open
		m.open = false
		c.mu.Unlock()
		if !isOpen {
			continue
		}
		if err := m.Sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sink group: close %s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

// state reports every member, in the order of the configuration.
func (c *core) state() []MemberState {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]MemberState, len(c.members))
	for i, m := range c.members {
		out[i] = MemberState{Name: m.Name, Priority: m.Priority, Open: m.open, Failures: m.failures,
			LastError: m.lastErr, LastFailure: m.lastFailure, Batches: m.batches, Records: m.records}
		if m.until.After(now) {
			out[i].PenalisedUntil = m.until
		}
	}
	return out
}
