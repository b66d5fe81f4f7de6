package actors

import (
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/weirhq/weir/cluster"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// TestInternalMembersTarget: __meta and __offsets keep their voters, fill up to the voter count
// from live nodes, hand a draining voter's vote to another node when one can take it, and drop
// members gone past the timeout.
func TestInternalMembersTarget(t *testing.T) {
	cases := []struct {
		name             string
		m                growMembers
		voters, learners []uint64
		want             *SetMembers
	}{
		{"grow to three voters, the rest learners", growMembers{live: []uint64{1, 2, 3, 4}, maxVoters: 3},
			[]uint64{1}, nil, &SetMembers{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
		{"a voter away within the timeout stays", growMembers{live: []uint64{1, 3, 4}, recent: []uint64{2}, maxVoters: 3},
			[]uint64{1, 2, 3}, []uint64{4}, &SetMembers{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
		{"a voter gone past the timeout is replaced and removed", growMembers{live: []uint64{1, 3, 4}, gone: []uint64{2}, maxVoters: 3},
			[]uint64{1, 2, 3}, []uint64{4}, &SetMembers{Voters: []uint64{1, 3, 4}}},
		{"a voter never seen since a start past the timeout is gone", growMembers{live: []uint64{1, 3}, maxVoters: 3},
			[]uint64{1, 2, 3}, nil, &SetMembers{Voters: []uint64{1, 3}}},
		{"a voter never seen since a recent start stays", growMembers{live: []uint64{1, 3}, unknownRecent: true, maxVoters: 3},
			[]uint64{1, 2, 3}, nil, &SetMembers{Voters: []uint64{1, 2, 3}}},
		{"a draining voter hands its vote over", growMembers{live: []uint64{1, 2, 3, 4}, draining: []uint64{1}, maxVoters: 3},
			[]uint64{1, 2, 3}, []uint64{4}, &SetMembers{Voters: []uint64{2, 3, 4}, Learners: []uint64{1}}},
		{"a draining voter keeps its vote when no one else can vote", growMembers{live: []uint64{1, 2, 3}, draining: []uint64{1}, maxVoters: 3},
			[]uint64{1, 2, 3}, nil, &SetMembers{Voters: []uint64{2, 3, 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.m.target(c.voters, c.learners); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func applyMeta(t *testing.T, s *metaState, batch []byte, offset int64) {
	t.Helper()
	if _, err := storage.DecodeBatch(batch, func(o int64, rec storage.Record) error {
		if e := s.Apply(offset+o, rec); e != nil {
			t.Fatalf("apply: %v", e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestMetaRebalance: __meta places topics again when nodes change, leaves unsettled partitions
// alone, and marks the partitions whose replicas changed as moved.
func TestMetaRebalance(t *testing.T) {
	nodes := []cluster.NodeState{{ID: 1, Live: true}, {ID: 2, Live: true}, {ID: 3, Live: true}}
	s := newMetaState(1, nil)
	s.nodes = func([]uint64) []cluster.NodeState { return nodes }
	batch, reply := s.Handle(&CreateTopic{Name: "t", Partitions: 3, Replicas: 2})
	if reply != nil {
		t.Fatalf("create: %+v", reply)
	}
	applyMeta(t, s, batch, 0)
	before := s.topics["t"]
	if _, reply := s.Handle(&Rebalance{}); reply == nil || reply.(*ProduceReply).Err != nil {
		t.Fatalf("a balanced cluster: %+v", reply)
	}
	nodes = append(nodes, cluster.NodeState{ID: 4, Live: true})
	batch, reply = s.Handle(&Rebalance{Unsettled: map[string][]int32{"t": {0}}})
	if reply != nil {
		t.Fatalf("a new node: %+v", reply)
	}
	var cmd TopicMeta
	if _, err := storage.DecodeBatch(batch, func(_ int64, rec storage.Record) error {
		return msgpack.Unmarshal(rec.Value, &cmd)
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cmd.Assignment[0], before.Assignment[0]) {
		t.Fatalf("unsettled partition 0 moved: %v to %v", before.Assignment[0], cmd.Assignment[0])
	}
	applyMeta(t, s, batch, 1)
	after := s.topics["t"]
	moves := 0
	for p := range after.Assignment {
		changed := !sameNodes(before.Assignment[p], after.Assignment[p])
		if changed != after.moved(int32(p)) {
			t.Fatalf("partition %d: %v to %v, moved %v", p, before.Assignment[p], after.Assignment[p], after.moved(int32(p)))
		}
		if changed {
			moves++
		}
	}
	if moves == 0 {
		t.Fatalf("nothing moved to node 4: %v", after.Assignment)
	}
	// A command for a topic created again under the name is refused.
	stale := metaCommand("set-assignment", TopicMeta{Name: "t", ID: 99, Partitions: 3, Assignment: after.Assignment})
	if _, err := storage.DecodeBatch(stale, func(o int64, rec storage.Record) error {
		if e := s.Apply(5, rec); e == nil || e.Code != wire.CodeUnknownTopic {
			t.Fatalf("stale assignment applied: %v", e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestMetaPlacesFlows: a flow runs on one of the nodes that define it, stays there while that
// node is usable (also when away for less than the timeout), moves when it drains or is gone,
// and a bound flow stays on its first node whatever its state; a withdrawn node gives its flows
// up.
func TestMetaPlacesFlows(t *testing.T) {
	nodes := []cluster.NodeState{{ID: 1, Live: true}, {ID: 2, Live: true}, {ID: 3, Live: true}}
	s := newMetaState(1, nil)
	s.nodes = func([]uint64) []cluster.NodeState { return nodes }
	offset := int64(0)
	run := func(msg any) {
		t.Helper()
		batch, reply := s.Handle(msg)
		if batch == nil {
			if r, ok := reply.(*ProduceReply); !ok || r.Err != nil {
				t.Fatalf("%T: %+v", msg, reply)
			}
			return
		}
		applyMeta(t, s, batch, offset)
		offset += 10
	}
	for _, id := range []uint64{2, 1, 3} {
		run(&RegisterFlow{ID: "flow/f/sink", Node: id})
		run(&RegisterFlow{ID: "flow/b/source", Node: id, Bound: true})
	}
	run(&Rebalance{})
	where := func(id string) uint64 { return s.flows[id].Node }
	if where("flow/b/source") != 2 {
		t.Fatalf("bound flow on %d, want its first candidate 2", where("flow/b/source"))
	}
	first := where("flow/f/sink")
	if first == 0 {
		t.Fatal("flow not placed")
	}
	// Its node away within the timeout: it stays; gone: it moves; the bound flow stays.
	set := func(id uint64, st cluster.NodeState) {
		for i := range nodes {
			if nodes[i].ID == id {
				nodes[i] = st
			}
		}
	}
	set(first, cluster.NodeState{ID: first, Live: true, Down: true})
	set(2, cluster.NodeState{ID: 2, Live: true, Down: true})
	run(&Rebalance{})
	if where("flow/f/sink") != first {
		t.Fatalf("flow moved off a node away within the timeout")
	}
	set(first, cluster.NodeState{ID: first, Live: false})
	set(2, cluster.NodeState{ID: 2, Live: false})
	run(&Rebalance{})
	if w := where("flow/f/sink"); w == first || w == 0 {
		t.Fatalf("flow on %d after its node %d was gone", w, first)
	}
	if where("flow/b/source") != 2 {
		t.Fatal("a bound flow moved")
	}
	// Draining moves it again (once another candidate is back); a withdrawal of its node
	// leaves it unplaced until the next placement.
	now := where("flow/f/sink")
	set(first, cluster.NodeState{ID: first, Live: true})
	set(now, cluster.NodeState{ID: now, Live: true, Draining: true})
	run(&Rebalance{})
	if w := where("flow/f/sink"); w == now {
		t.Fatalf("flow stayed on draining node %d", now)
	}
	run(&RegisterFlow{ID: "flow/f/sink", Node: where("flow/f/sink"), Withdraw: true})
	if where("flow/f/sink") != 0 || len(s.flows["flow/f/sink"].Candidates) != 2 {
		t.Fatalf("after a withdrawal: %+v", s.flows["flow/f/sink"])
	}
	// A registration is proposed even when the applied table has it (a withdrawal of it may be
	// on its way).
	if b, _ := s.Handle(&RegisterFlow{ID: "flow/f/sink", Node: s.flows["flow/f/sink"].Candidates[0]}); b == nil {
		t.Fatal("a registration the table already holds was not proposed")
	}
	// The bound flow's node stops cleanly (withdraws) and comes back: the flow stays bound to it.
	set(2, cluster.NodeState{ID: 2, Live: true})
	run(&RegisterFlow{ID: "flow/b/source", Node: 2, Withdraw: true})
	run(&Rebalance{})
	run(&RegisterFlow{ID: "flow/b/source", Node: 2, Bound: true})
	run(&Rebalance{})
	if f := s.flows["flow/b/source"]; f.Node != 2 || f.BoundTo != 2 {
		t.Fatalf("bound flow after its node withdrew and registered again: %+v", f)
	}
}
