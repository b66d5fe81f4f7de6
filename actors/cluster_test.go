package actors

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
)

// TestClusterNodeAlone starts a node in cluster mode with nothing to join (ports picked by the
// system): it starts a cluster of one, places a topic on itself and serves it. A cluster
// address already in use is refused with an error naming it. (Several nodes run as separate
// processes: cmd/weir TestClusterKillRandomNodes.)
func TestClusterNodeAlone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = StartNode(NodeConfig{DataDir: t.TempDir(), Cluster: &ClusterConfig{RemoteAddr: ln.Addr().String(), GossipAddr: "127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("a cluster address in use: err %v", err)
	}

	n, err := StartNode(NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", Cluster: &ClusterConfig{RemoteAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.RaftID() == 1 {
		t.Fatal("a new clustered node took id 1, the id of nodes that ran alone")
	}
	if ms := n.Members(); len(ms) != 1 || ms[0].ID != n.RaftID() || strings.HasSuffix(ms[0].Remote, ":0") {
		t.Fatalf("members %+v", ms)
	}
	if err := n.CreateTopic("solo", 2); err != nil {
		t.Fatal(err)
	}
	tm, _ := n.Topic("solo")
	if len(tm.Assignment) != 2 || len(tm.Assignment[0]) != 1 || tm.Assignment[0][0] != n.RaftID() {
		t.Fatalf("assignment %v", tm.Assignment)
	}
	if e := n.topicCommand(&CreateTopic{Name: "wide", Partitions: 1, Replicas: 3}, "wide", true, false, 5*time.Second); e == nil || e.Code != wire.CodeNotEnoughNodes || !strings.Contains(e.Error(), "1 nodes can hold them") {
		t.Fatalf("3 replicas on 1 node: %v", e)
	}
	pid, err := n.Partition("solo", 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.rc.RequestFuture(pid, &Produce{Batch: batchOf(t, "v"), Acks: wire.AcksAll}, 10*time.Second).Result()
	if err != nil || res.(*ProduceReply).Err != nil {
		t.Fatalf("produce: %v %v", err, res)
	}
}

// TestLoneNodeJoinsClusterKeepsTopics: a node that ran alone (id 1) restarted as a cluster
// member keeps serving the topics it created alone, which have no assignment: they are its.
func TestLoneNodeJoinsClusterKeepsTopics(t *testing.T) {
	dir := t.TempDir()
	n, err := StartNode(NodeConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.CreateTopic("old", 2); err != nil {
		t.Fatal(err)
	}
	pid, _ := n.Partition("old", 1)
	if res, err := n.rc.RequestFuture(pid, &Produce{Batch: batchOf(t, "a", "b"), Acks: wire.AcksAll}, 10*time.Second).Result(); err != nil || res.(*ProduceReply).Err != nil {
		t.Fatalf("produce: %v %v", err, res)
	}
	n.Close()
	n, err = StartNode(NodeConfig{DataDir: dir, Cluster: &ClusterConfig{RemoteAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.RaftID() != 1 {
		t.Fatalf("id %d after joining a cluster, want 1 (its logs' id)", n.RaftID())
	}
	tm, _ := n.Topic("old")
	if r := tm.replicasOf(1); len(r) != 1 || r[0] != 1 {
		t.Fatalf("replicas of an unassigned topic: %v", r)
	}
	pid, err = n.Partition("old", 1)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := n.rc.RequestFuture(pid, &GetStatus{}, time.Second).Result()
		if err == nil && res.(*Status).Leader == 1 && res.(*Status).HighWatermark == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition old/1 after the restart: %v %+v", err, res)
		}
	}
}

// replier answers every request with a ProduceReply wrapped as it comes from another node.
type replier struct{}

func (replier) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*GetStatus); ok {
		env, err := Wrap(&ProduceReply{BaseOffset: 7})
		if err != nil {
			panic(err)
		}
		ctx.Respond(env)
	}
}

// asker requests from the replier with reenter and reports what its continuation got.
type asker struct {
	to  *actor.PID
	got chan any
}

func (a *asker) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		reenter(ctx, ctx.RequestFuture(a.to, &GetStatus{}, 5*time.Second), func(res any, err error) { a.got <- res })
	}
}

// TestReenterUnwraps: continuations of requests to other nodes get the answer, not its
// envelope (flows read "no answer" and retried forever before).
func TestReenterUnwraps(t *testing.T) {
	system := actor.NewActorSystem()
	to := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return replier{} }))
	got := make(chan any, 1)
	system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &asker{to: to, got: got} }))
	select {
	case res := <-got:
		if r, ok := res.(*ProduceReply); !ok || r.BaseOffset != 7 {
			t.Fatalf("continuation got %T %+v", res, res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
}
