package group

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/weirhq/weir/connectors"
)

// Selector is how a LoadBalance group picks the member for a batch.
type Selector int

// The selectors.
const (
	// RoundRobin gives each batch to the member after the one that got the batch before
	// (whether that one stored it or not), in the order of the configuration.
	RoundRobin Selector = iota
	// Random gives each batch to a member picked at random; on failure, to another picked at
	// random among those not tried.
	Random
)

func (s Selector) String() string {
	switch s {
	case RoundRobin:
		return "round_robin"
	case Random:
		return "random"
	}
	return fmt.Sprintf("Selector(%d)", int(s))
}

// LoadBalanceConfig configures a LoadBalance group.
type LoadBalanceConfig struct {
	// Members are the sinks (their Priority is ignored). Required.
	Members []Member
	// Selector picks the member of each batch (default RoundRobin).
	Selector Selector
	// Backoff penalises failed members (Flume's backoff=true): Penalty for a member's first
	// failure in a row (default 1 s), doubling with each further one up to MaxPenalty (Flume's
	// selector.maxTimeOut; default 8 s). Without it a failed member stays in the rotation and
	// Penalty and MaxPenalty are not used.
	Backoff    bool
	Penalty    time.Duration
	MaxPenalty time.Duration
	// WriteTimeout bounds each member's Write (0: no bound but the caller's).
	WriteTimeout time.Duration
	// Logger receives failures and waits (default: discarded).
	Logger *slog.Logger
	// Clock is the time (default: the wall clock).
	Clock Clock
	// Rand is the source of Random's picks (default: a generator seeded at random).
	Rand *rand.Rand
}

func (c LoadBalanceConfig) settings() settings {
	return settings{members: c.Members, penalty: c.Penalty, maxPenalty: c.MaxPenalty,
		writeTimeout: c.WriteTimeout, logger: c.Logger, clock: c.Clock}
}

// Validate reports a configuration that cannot work.
func (c LoadBalanceConfig) Validate() error {
	if c.Selector != RoundRobin && c.Selector != Random {
		return fmt.Errorf("sink group (load balance): unknown selector %v", c.Selector)
	}
	s := c.settings()
	return s.validate("load balance")
}

// LoadBalance is a group that spreads batches over its members (see the package doc).
type LoadBalance struct {
	c        *core
	selector Selector

	// Used by Write only, which is called from one goroutine at a time.
	next int // RoundRobin: the member the next batch starts with
	rand *rand.Rand
}

var _ connectors.Sink = (*LoadBalance)(nil)

// NewLoadBalance returns a LoadBalance group of cfg.Members; it opens them in Open.
func NewLoadBalance(cfg LoadBalanceConfig) (*LoadBalance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := cfg.Rand
	if r == nil {
		r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &LoadBalance{c: newCore("load_balance", cfg.settings(), cfg.Backoff), selector: cfg.Selector, rand: r}, nil
}

// Open implements connectors.Sink: it opens every member; those that fail are penalised (with
// Backoff). It fails only when every member fails.
func (l *LoadBalance) Open(ctx context.Context) error { return l.c.open(ctx) }

// Write implements connectors.Sink: it gives msgs to the member the selector picks and, on its
// failure, to the next it picks, until one stores them.
func (l *LoadBalance) Write(ctx context.Context, msgs []connectors.Message) error {
	return l.c.write(ctx, l.order(), msgs)
}

// order is the order in which this Write tries the members.
func (l *LoadBalance) order() []*member {
	ms := l.c.members
	order := make([]*member, len(ms))
	switch l.selector {
	case Random:
		for i, j := range l.rand.Perm(len(ms)) {
			order[i] = ms[j]
		}
	default:
		for i := range ms {
			order[i] = ms[(l.next+i)%len(ms)]
		}
		l.next = (l.next + 1) % len(ms)
	}
	return order
}

// Close implements connectors.Sink: it closes every open member and joins their errors.
func (l *LoadBalance) Close() error { return l.c.close() }

// State reports every member, in the order of the configuration. It may be called at any time.
func (l *LoadBalance) State() []MemberState { return l.c.state() }
