package group

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/weirhq/weir/connectors"
)

// FailoverConfig configures a Failover group.
type FailoverConfig struct {
	// Members are the sinks, tried in order of Priority (highest first). Required.
	Members []Member
	// Penalty is the penalty of a member's first failure in a row (default 1 s); it doubles with
	// each further failure, up to MaxPenalty (Flume's maxpenalty; default 8 s).
	Penalty    time.Duration
	MaxPenalty time.Duration
	// WriteTimeout bounds each member's Write, so that a member that hangs is failed over
	// before the runner's own timeout ends the whole Write (0: no bound but the caller's).
	WriteTimeout time.Duration
	// Logger receives failures and waits (default: discarded).
	Logger *slog.Logger
	// Clock is the time (default: the wall clock).
	Clock Clock
}

func (c FailoverConfig) settings() settings {
	return settings{members: c.Members, penalty: c.Penalty, maxPenalty: c.MaxPenalty,
		writeTimeout: c.WriteTimeout, logger: c.Logger, clock: c.Clock}
}

// Validate reports a configuration that cannot work.
func (c FailoverConfig) Validate() error {
	s := c.settings()
	return s.validate("failover")
}

// Failover is a group that gives every batch to its best member that is not penalised (see the
// package doc).
type Failover struct {
	c     *core
	order []*member // by priority, highest first
}

var _ connectors.Sink = (*Failover)(nil)

// NewFailover returns a Failover group of cfg.Members; it opens them in Open.
func NewFailover(cfg FailoverConfig) (*Failover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := newCore("failover", cfg.settings(), true)
	order := slices.Clone(c.members)
	slices.SortStableFunc(order, func(a, b *member) int { return cmp.Compare(b.Priority, a.Priority) })
	return &Failover{c: c, order: order}, nil
}

// Open implements connectors.Sink: it opens every member; those that fail are penalised. It
// fails only when every member fails.
func (f *Failover) Open(ctx context.Context) error { return f.c.open(ctx) }

// Write implements connectors.Sink: it gives msgs to the member of highest priority that is not
// penalised, and on its failure to the next, until one stores them.
func (f *Failover) Write(ctx context.Context, msgs []connectors.Message) error {
	return f.c.write(ctx, f.order, msgs)
}

// Close implements connectors.Sink: it closes every open member and joins their errors.
func (f *Failover) Close() error { return f.c.close() }

// State reports every member, in the order of the configuration. It may be called at any time.
func (f *Failover) State() []MemberState { return f.c.state() }
