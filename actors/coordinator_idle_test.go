package actors

import (
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/storage"
)

// TestCoordinatorStopsWhenIdle: a coordinator with no members stops after IdleTimeout without
// requests, so a client naming many groups (here 50 probes by heartbeat, each of which started
// a coordinator) does not leave an actor per name on the node; a group whose coordinator
// stopped keeps its committed offsets, and its next coordinator goes on from its generation.
func TestCoordinatorStopsWhenIdle(t *testing.T) {
	cfg := NodeConfig{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Coordinator.InitialDelay = 10 * time.Millisecond
	cfg.Coordinator.MinSessionTimeout = 100 * time.Millisecond
	cfg.Coordinator.TickInterval = 20 * time.Millisecond
	cfg.Coordinator.IdleTimeout = 300 * time.Millisecond
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.CreateTopic("ci", 2); err != nil {
		t.Fatal(err)
	}
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
