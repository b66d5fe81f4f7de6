package actors

import (
	"net"
	"strings"
	"testing"
	"time"

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
	if e := n.topicCommand(&CreateTopic{Name: "wide", Partitions: 1, Replicas: 3}, "wide", true, 5*time.Second); e == nil || e.Code != wire.CodeInvalidRequest {
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
