package actors

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// SupervisorConfig bounds restarts: a child that fails more than MaxRestarts times within
// Window is given up on. Between restarts the supervisor waits, doubling from MinBackoff up to
// MaxBackoff.
type SupervisorConfig struct {
	MaxRestarts int
	Window      time.Duration
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
}

// DefaultSupervisorConfig: 10 restarts a minute, backoff from 100 ms to 5 s.
func DefaultSupervisorConfig() SupervisorConfig {
	return SupervisorConfig{MaxRestarts: 10, Window: time.Minute, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

// supervisor is the OneForOne strategy of the node's root actor. A failed child is restarted
// after a backoff; on Started it reloads its state from disk or from committed offsets. A child
// past its restart budget is stopped and reported as failed: the escalation goes to the node,
// which shows it in /healthz and metrics, and whose operator decides (a restart of the node
// retries every actor).
type supervisor struct {
	cfg     SupervisorConfig
	logger  *slog.Logger
	metrics *Metrics

	mu     sync.Mutex
	failed map[string]string // child id -> last failure, for children given up on
}

func newSupervisor(cfg SupervisorConfig, logger *slog.Logger, m *Metrics) *supervisor {
	return &supervisor{cfg: cfg, logger: logger, metrics: m, failed: map[string]string{}}
}

// kindOf names the kind of an actor from its id ("node/partition/orders/0" -> "partition").
func kindOf(id string) string {
	id = strings.TrimPrefix(id, rootName+"/")
	if i := strings.IndexByte(id, '/'); i >= 0 {
		return id[:i]
	}
	return id
}

// maxFailureTimes bounds the failure times kept for a child that goes on failing, slowly
// enough never to be given up on.
const maxFailureTimes = 1024

// record adds a failure to rs and returns the attempt (failures since the child last went a
// whole Window without one: the backoff's exponent) and the failures within the last Window
// (what is compared with MaxRestarts). Only those count: a child failing steadily at a rate
// within the budget, such as a sink whose store is down and whose Writes wait before failing,
// is restarted for as long as it fails, never given up on for its total.
func (s *supervisor) record(rs *actor.RestartStatistics) (attempt, recent int) {
	if rs.NumberOfFailures(s.cfg.Window) == 0 {
		rs.Reset()
	}
	rs.Fail()
	recent = rs.NumberOfFailures(s.cfg.Window)
	if rs.FailureCount() > maxFailureTimes {
		// Keep as many as were recent, stamped now: they count a little longer than they
		// would have (the backoff starts over from there, once every maxFailureTimes failures).
		rs.Reset()
		for range recent {
			rs.Fail()
		}
	}
	return rs.FailureCount(), recent
}

// HandleFailure implements actor.SupervisorStrategy.
func (s *supervisor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, message any) {
	kind := kindOf(child.Id)
	s.metrics.failure(kind)
	n, recent := s.record(rs)
	if recent > s.cfg.MaxRestarts {
		s.logger.Error("actor failed too often; stopping it", "actor", child.Id, "kind", kind,
			"failures", recent, "window", s.cfg.Window, "reason", fmt.Sprint(reason))
		s.mu.Lock()
		s.failed[child.Id] = fmt.Sprint(reason)
		s.mu.Unlock()
		sup.StopChildren(child)
		return
	}
	backoff := s.cfg.MinBackoff << min(n-1, 20)
	if backoff > s.cfg.MaxBackoff || backoff <= 0 {
		backoff = s.cfg.MaxBackoff
	}
	s.logger.Warn("actor failed; restarting", "actor", child.Id, "kind", kind, "attempt", n,
		"backoff", backoff, "reason", fmt.Sprint(reason), "message", fmt.Sprintf("%T", message))
	time.AfterFunc(backoff, func() {
		s.metrics.restart(kind)
		sup.RestartChildren(child)
	})
}

// Failed lists the children given up on, with their last failure.
func (s *supervisor) Failed() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.failed))
	for k, v := range s.failed {
		out[k] = v
	}
	return out
}

// forget clears a child's failed mark, when it is spawned anew.
func (s *supervisor) forget(id string) {
	s.mu.Lock()
	delete(s.failed, id)
	s.mu.Unlock()
}
