package actors

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
)

// TestCoordinatorStopsWhenIdle: a coordinator with no members stops after IdleTimeout without
// requests, so a client naming many groups (here 50 probes by heartbeat, each of which started
// a coordinator) does not leave an actor per name on the node; a group whose coordinator
// stopped keeps its committed offsets, and its next coordinator goes on from its generation.
func TestCoordinatorStopsWhenIdle(t *testing.T) {
	n := startKafkaNodeSet(t, "ci", 2, func(cfg *NodeConfig) {
		cfg.Coordinator.InitialDelay = 10 * time.Millisecond
		cfg.Coordinator.MinSessionTimeout = 100 * time.Millisecond
		cfg.Coordinator.TickInterval = 20 * time.Millisecond
		cfg.Coordinator.IdleTimeout = 300 * time.Millisecond
	})
	k := n.kafka
	running := func() []string {
		t.Helper()
		root, err := n.groupsRoot()
		if err != nil {
			t.Fatal(err)
		}
		res, e := n.ask(root, &ListCoordinators{})
		if e != nil {
			t.Fatal(e)
		}
		return res.(*GroupList).Groups
	}
	for i := range 50 {
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID = 4, "probe-"+strconv.Itoa(i), "nobody"
		if code := k.heartbeat(hb).ErrorCode; code != kafkaUnknownMemberID {
			t.Fatalf("probe %d: heartbeat answered %d", i, code)
		}
	}
	join := func() *kmsg.JoinGroupResponse {
		t.Helper()
		meta := kmsg.ConsumerMemberMetadata{Topics: []string{"ci"}}
		jr := kmsg.NewPtrJoinGroupRequest()
		jr.Version, jr.Group, jr.ProtocolType, jr.SessionTimeoutMillis = 5, "g", "consumer", 10_000
		jr.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
		resp := k.joinGroup(jr, "c", "127.0.0.1:1")
		if resp.ErrorCode != 0 {
			t.Fatalf("join: %d", resp.ErrorCode)
		}
		return resp
	}
	j := join()
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group, oc.MemberID, oc.Generation = 8, "g", j.MemberID, j.Generation
	oct := kmsg.NewOffsetCommitRequestTopic()
	oct.Topic = "ci"
	ocp := kmsg.NewOffsetCommitRequestTopicPartition()
	ocp.Partition, ocp.Offset = 1, 42
	oct.Partitions = append(oct.Partitions, ocp)
	oc.Topics = append(oc.Topics, oct)
	if code := k.offsetCommit(oc).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit: %d", code)
	}
	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Version, lg.Group, lg.MemberID = 2, "g", j.MemberID
	if code := k.leaveGroup(lg).ErrorCode; code != 0 {
		t.Fatalf("leave: %d", code)
	}
	if got := len(running()); got != 51 {
		t.Fatalf("%d coordinators running, want 51", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(running()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := running(); len(got) > 0 {
		t.Fatalf("%d coordinators still running after their idle timeout: %v", len(got), got[:min(len(got), 5)])
	}
	n.mu.Lock()
	cached := len(n.groups)
	n.mu.Unlock()
	if cached != 0 {
		t.Errorf("%d coordinators still remembered by the node", cached)
	}
	k.assigned.mu.Lock()
	assigned := len(k.assigned.m)
	k.assigned.mu.Unlock()
	if assigned != 0 {
		t.Errorf("%d assignments still kept", assigned)
	}

	// The offsets are __offsets', and the group still lists (it has commits).
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Version, of.Group = 7, "g"
	of.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "ci", Partitions: []int32{1}}}
	if r := k.offsetFetch(of); r.ErrorCode != 0 || r.Topics[0].Partitions[0].Offset != 42 {
		t.Fatalf("offset fetch after the stop: %+v", r)
	}
	groups, e := n.Groups()
	if e != nil || len(groups) != 1 || groups[0] != "g" {
		t.Fatalf("groups after the stop: %v %v, want [g]", groups, e)
	}
	// The next request starts a coordinator again, which goes on from the last generation.
	if j2 := join(); j2.Generation <= j.Generation {
		t.Fatalf("generation %d after the restart, was %d", j2.Generation, j.Generation)
	}
	if got := running(); len(got) != 1 || got[0] != "g" {
		t.Fatalf("running after a join: %v", got)
	}
}

// TestGroupRequestFindsStoppedCoordinatorAgain: a request to a coordinator this node remembers
// but which stopped (idle on the node leading __offsets, which may be another node) finds the
// group's coordinator again and is served, instead of failing with COORDINATOR_NOT_AVAILABLE.
func TestGroupRequestFindsStoppedCoordinatorAgain(t *testing.T) {
	n := startKafkaNode(t, "cs", 1)
	root, err := n.groupsRoot()
	if err != nil {
		t.Fatal(err)
	}
	// What coordinatorFor remembers for a group whose coordinator is not running.
	n.mu.Lock()
	if n.groups == nil {
		n.groups = map[string]knownCoordinator{}
	}
	n.groups["g"] = knownCoordinator{pid: actor.NewPID(root.Address, rootName+"/group/g")}
	n.mu.Unlock()
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version, hb.Group, hb.MemberID = 4, "g", "nobody"
	if code := n.kafka.heartbeat(hb).ErrorCode; code != kafkaUnknownMemberID {
		t.Fatalf("heartbeat to a stopped coordinator: error %d, want UNKNOWN_MEMBER_ID (25) from a new one", code)
	}
}

// blockingHandler is a slog handler that, once armed, signals reached and waits for release
// when a record's message is msg (a point inside an actor, held there by the test).
type blockingHandler struct {
	msg     string
	armed   *atomic.Bool
	reached chan struct{}
	release chan struct{}
}

// awaitReached waits until an armed h has reached its point.
func (h blockingHandler) awaitReached(t *testing.T) {
	t.Helper()
	select {
	case <-h.reached:
	case <-time.After(10 * time.Second):
		t.Fatalf("%q was not logged within 10 s", h.msg)
	}
}

func (h blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h blockingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h blockingHandler) WithGroup(string) slog.Handler            { return h }
func (h blockingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg && h.armed.CompareAndSwap(true, false) {
		close(h.reached)
		<-h.release
	}
	return nil
}

// idleStopNode starts a node with a 2-partition topic whose group coordinators stop after
// 300 ms idle; h holds the coordinator where it decides it is idle (once armed), and the next
// group commit after slowCommit is set takes 300 ms.
func idleStopNode(t *testing.T, topic string) (*Node, blockingHandler, *atomic.Bool) {
	t.Helper()
	h := blockingHandler{msg: "group coordinator stops: idle", armed: &atomic.Bool{}, reached: make(chan struct{}), release: make(chan struct{})}
	slowCommit := &atomic.Bool{}
	n := startKafkaNodeSet(t, topic, 2, func(cfg *NodeConfig) {
		cfg.Logger = slog.New(h)
		cfg.Coordinator.TickInterval = 20 * time.Millisecond
		cfg.Coordinator.IdleTimeout = 300 * time.Millisecond
		cfg.Server.RequestTimeout = 8 * time.Second
		cfg.Faults = func(kind, point string) {
			if kind == "group" && point == "commit" && slowCommit.CompareAndSwap(true, false) {
				time.Sleep(300 * time.Millisecond)
			}
		}
	})
	return n, h, slowCommit
}

// committedOffsets is group's committed offset per partition, as __offsets holds them.
func committedOffsets(t *testing.T, n *Node, group string) map[int32]int64 {
	t.Helper()
	res, e := n.ask(n.internalPID("offsets"), &FetchOffsets{Group: group})
	if e != nil {
		t.Fatal(e)
	}
	got := map[int32]int64{}
	for _, o := range res.(*wire.FetchCommitResponse).Offsets {
		got[o.Partition] = o.Offset
	}
	return got
}

// TestCoordinatorIdleStopDropsNoRequest: a request that is in an idle coordinator's mailbox when
// its node's root stops it is not lost. The actor system drops the messages left in a stopped
// actor's mailbox without a dead letter, so such a commit waited out the whole RequestTimeout
// and failed (here 8 s; 30 s by default, with the client's connection blocked meanwhile). Held
// here: the coordinator decides it is idle; two commits reach it; the first is slow, so the
// root's stop arrives while it runs; the second is still in the mailbox then.
func TestCoordinatorIdleStopDropsNoRequest(t *testing.T) {
	n, h, slowCommit := idleStopNode(t, "cs")
	commit := func(p int32, offset int64) (int16, time.Duration) {
		oc := kmsg.NewPtrOffsetCommitRequest()
		oc.Version, oc.Group, oc.Generation = 8, "g", -1
		oct := kmsg.NewOffsetCommitRequestTopic()
		oct.Topic = "cs"
		ocp := kmsg.NewOffsetCommitRequestTopicPartition()
		ocp.Partition, ocp.Offset = p, offset
		oct.Partitions = append(oct.Partitions, ocp)
		oc.Topics = append(oc.Topics, oct)
		start := time.Now()
		code := n.kafka.offsetCommit(oc).Topics[0].Partitions[0].ErrorCode
		return code, time.Since(start)
	}
	h.armed.Store(true)
	if code, _ := commit(0, 1); code != 0 { // starts the coordinator
		t.Fatalf("first commit: %d", code)
	}
	h.awaitReached(t) // the coordinator is idle and about to ask the root to stop it
	slowCommit.Store(true)
	type result struct {
		code int16
		took time.Duration
	}
	a, b := make(chan result, 1), make(chan result, 1)
	go func() { c, d := commit(0, 5); a <- result{c, d} }()
	time.Sleep(50 * time.Millisecond)
	go func() { c, d := commit(1, 6); b <- result{c, d} }()
	time.Sleep(50 * time.Millisecond)
	close(h.release)
	for name, ch := range map[string]chan result{"held": a, "queued": b} {
		r := <-ch
		if r.code != 0 || r.took > 4*time.Second {
			t.Errorf("%s commit: error %d after %v", name, r.code, r.took.Round(time.Millisecond))
		}
	}
	if got := committedOffsets(t, n, "g"); got[0] != 5 || got[1] != 6 {
		t.Fatalf("offsets %v, want 0:5 1:6", got)
	}
}

// TestCoordinatorIdleStopAnswersQueuedRequests: requests that are in an idle coordinator's
// mailbox when its root stops it are answered, also those sent straight to it as another node
// sends them (without Server.group's watch of the local stop, which sends again). When the root
// stopped the coordinator, the actor system dropped them without a dead letter, and such a
// commit waited out its whole timeout (here 8 s). A join that reaches a retiring coordinator
// is answered REBALANCE_IN_PROGRESS at once, so that it joins the next coordinator.
func TestCoordinatorIdleStopAnswersQueuedRequests(t *testing.T) {
	n, h, slowCommit := idleStopNode(t, "cq")
	pid, err := n.coordinatorFor("g")
	if err != nil {
		t.Fatal(err)
	}
	direct := func(msg any) (any, time.Duration, error) {
		start := time.Now()
		res, err := n.system.Root.RequestFuture(pid, msg, 8*time.Second).Result()
		return res, time.Since(start), err
	}
	commit := func(p int32, offset int64) any {
		return &CommitGroup{wire.CommitRequest{Group: "g", Generation: -1, Offsets: []wire.PartitionOffset{{Topic: "cq", Partition: p, Offset: offset}}}}
	}
	h.armed.Store(true)
	if res, _, err := direct(commit(0, 1)); err != nil || res.(*ProduceReply).Err != nil {
		t.Fatalf("first commit: %v %v", res, err)
	}
	h.awaitReached(t) // the coordinator is idle and about to ask the root to stop it
	slowCommit.Store(true)
	type result struct {
		res  any
		took time.Duration
		err  error
	}
	held, queued, join := make(chan result, 1), make(chan result, 1), make(chan result, 1)
	go func() { r, d, err := direct(commit(0, 5)); held <- result{r, d, err} }()
	time.Sleep(50 * time.Millisecond)
	go func() { r, d, err := direct(commit(1, 6)); queued <- result{r, d, err} }()
	go func() {
		r, d, err := direct(&JoinGroup{wire.JoinGroupRequest{Group: "g", Topics: []string{"cq"}}})
		join <- result{r, d, err}
	}()
	time.Sleep(50 * time.Millisecond)
	close(h.release)
	for name, ch := range map[string]chan result{"held": held, "queued": queued} {
		r := <-ch
		if r.err != nil || r.took > 4*time.Second {
			t.Errorf("%s commit: %v after %v", name, r.err, r.took.Round(time.Millisecond))
		} else if pr, ok := r.res.(*ProduceReply); !ok || pr.Err != nil {
			t.Errorf("%s commit: answered %+v", name, r.res)
		}
	}
	if r := <-join; r.err != nil || r.took > 4*time.Second {
		t.Errorf("join: %v after %v", r.err, r.took.Round(time.Millisecond))
	} else if jr, ok := r.res.(*wire.JoinGroupResponse); !ok || jr.Err == nil || jr.Err.Code != wire.CodeRebalance {
		t.Errorf("join to a retiring coordinator: answered %+v, want REBALANCE_IN_PROGRESS", r.res)
	}
	if got := committedOffsets(t, n, "g"); got[0] != 5 || got[1] != 6 {
		t.Fatalf("offsets %v, want 0:5 1:6", got)
	}
}

// TestAwaitUnlessStopped: a group request waits for its answer; once its coordinator stopped
// for being idle, for idleStopGrace more, after which it is reported dead (to be sent again)
// unless the answer came meanwhile. (Since the root poisons idle coordinators, the requests in
// their mailbox are answered, so this path serves only one that arrived in the instant before
// the stop, which no test makes happen: it is tested here on its own.)
func TestAwaitUnlessStopped(t *testing.T) {
	answer := func(after time.Duration) func() (any, *wire.Error, bool) {
		return func() (any, *wire.Error, bool) {
			time.Sleep(after)
			return "answer", nil, false
		}
	}
	if res, e, dead := awaitUnlessStopped(answer(10*time.Millisecond), nil); res != "answer" || e != nil || dead {
		t.Fatalf("never stopped: %v %v %v", res, e, dead)
	}
	stopped := make(chan struct{})
	close(stopped)
	if res, e, dead := awaitUnlessStopped(answer(idleStopGrace/4), stopped); res != "answer" || e != nil || dead {
		t.Fatalf("answered within the grace after the stop: %v %v %v", res, e, dead)
	}
	never := make(chan struct{})
	defer close(never) // lets the request's goroutine end
	start := time.Now()
	res, e, dead := awaitUnlessStopped(func() (any, *wire.Error, bool) { <-never; return "late", nil, false }, stopped)
	if !dead || res != nil || e == nil || e.Code != wire.CodeUnavailable {
		t.Fatalf("no answer after the stop: %v %v %v", res, e, dead)
	}
	if took := time.Since(start); took < idleStopGrace || took > idleStopGrace+2*time.Second {
		t.Fatalf("reported dead after %v, want about %v", took, idleStopGrace)
	}
}
