package cluster

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func live(ids ...uint64) []NodeState {
	out := make([]NodeState, len(ids))
	for i, id := range ids {
		out[i] = NodeState{ID: id, Live: true}
	}
	return out
}

func TestPlace(t *testing.T) {
	dead := func(ns []NodeState, id uint64) []NodeState {
		for i := range ns {
			if ns[i].ID == id {
				ns[i].Live = false
			}
		}
		return ns
	}
	draining := func(ns []NodeState, id uint64) []NodeState {
		for i := range ns {
			if ns[i].ID == id {
				ns[i].Draining = true
			}
		}
		return ns
	}
	down := func(ns []NodeState, id uint64) []NodeState {
		for i := range ns {
			if ns[i].ID == id {
				ns[i].Down = true
			}
		}
		return ns
	}
	cases := []struct {
		name   string
		nodes  []NodeState
		topics []TopicPlacement
		want   map[string][][]uint64
		err    bool
	}{
		{
			name:   "new topic spreads leaders and replicas",
			nodes:  live(1, 2, 3),
			topics: []TopicPlacement{{Name: "t", Partitions: 6, Replicas: 3}},
			want:   map[string][][]uint64{"t": {{1, 2, 3}, {2, 3, 1}, {3, 1, 2}, {1, 2, 3}, {2, 3, 1}, {3, 1, 2}}},
		},
		{
			name:   "replication factor 1 round robin",
			nodes:  live(1, 2, 3),
			topics: []TopicPlacement{{Name: "t", Partitions: 4, Replicas: 1}},
			want:   map[string][][]uint64{"t": {{1}, {2}, {3}, {1}}},
		},
		{
			name:   "second topic fills the least loaded nodes",
			nodes:  live(1, 2, 3),
			topics: []TopicPlacement{{Name: "a", Partitions: 1, Replicas: 1, Current: [][]uint64{{1}}}, {Name: "b", Partitions: 2, Replicas: 1}},
			want:   map[string][][]uint64{"a": {{1}}, "b": {{2}, {3}}},
		},
		{
			name:   "too few nodes for a new topic",
			nodes:  live(1, 2),
			topics: []TopicPlacement{{Name: "t", Partitions: 1, Replicas: 3}},
			err:    true,
		},
		{
			name:   "dead nodes do not count",
			nodes:  dead(live(1, 2, 3), 3),
			topics: []TopicPlacement{{Name: "t", Partitions: 1, Replicas: 3}},
			err:    true,
		},
		{
			name:   "stable: a placed topic stays",
			nodes:  live(1, 2, 3),
			topics: []TopicPlacement{{Name: "t", Partitions: 2, Replicas: 2, Current: [][]uint64{{3, 1}, {2, 3}}}},
			want:   map[string][][]uint64{"t": {{3, 1}, {2, 3}}},
		},
		{
			name:   "a dead node's replica stays when no other node can take it",
			nodes:  dead(live(1, 2, 3), 2),
			topics: []TopicPlacement{{Name: "t", Partitions: 1, Replicas: 3, Current: [][]uint64{{1, 2, 3}}}},
			want:   map[string][][]uint64{"t": {{1, 2, 3}}},
		},
		{
			name:   "a dead node's replicas move to a spare node, one per partition",
			nodes:  dead(live(1, 2, 3, 4), 2),
			topics: []TopicPlacement{{Name: "t", Partitions: 2, Replicas: 3, Current: [][]uint64{{1, 2, 3}, {2, 3, 1}}}},
			want:   map[string][][]uint64{"t": {{1, 4, 3}, {4, 3, 1}}},
		},
		{
			name:   "a draining node is emptied",
			nodes:  draining(live(1, 2, 3, 4), 1),
			topics: []TopicPlacement{{Name: "t", Partitions: 1, Replicas: 3, Current: [][]uint64{{1, 2, 3}}}},
			want:   map[string][][]uint64{"t": {{4, 2, 3}}},
		},
		{
			name:   "a new node receives replicas, followers first, one per partition",
			nodes:  live(1, 2, 3, 4),
			topics: []TopicPlacement{{Name: "t", Partitions: 4, Replicas: 3, Current: [][]uint64{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}, {1, 2, 3}}}},
			// 12 replicas over 4 nodes: 3 each. Node 1 (4 replicas) gives one, then 2, then 3.
			want: map[string][][]uint64{"t": {{1, 4, 3}, {2, 3, 4}, {3, 1, 2}, {1, 2, 4}}},
		},
		{
			name:   "too many replicas: those on dead nodes go first",
			nodes:  dead(dead(dead(live(1, 2, 3, 4), 2), 3), 4),
			topics: []TopicPlacement{{Name: "t", Partitions: 1, Replicas: 3, Current: [][]uint64{{1, 3, 2, 4}}}},
			want:   map[string][][]uint64{"t": {{1, 2, 4}}},
		},
		{
			name:   "a node down within the timeout keeps its replicas and gets no new ones",
			nodes:  down(live(1, 2, 3, 4), 2),
			topics: []TopicPlacement{{Name: "a", Partitions: 1, Replicas: 3, Current: [][]uint64{{1, 2, 3}}}, {Name: "b", Partitions: 2, Replicas: 2}},
			// b goes to 4, 3 and 1; evening out then moves a's follower on 3 to 4, never touching 2.
			want: map[string][][]uint64{"a": {{1, 2, 4}}, "b": {{4, 3}, {3, 1}}},
		},
		{
			name:   "a node down is not evened out",
			nodes:  down(live(1, 2, 3), 1),
			topics: []TopicPlacement{{Name: "t", Partitions: 4, Replicas: 1, Current: [][]uint64{{1}, {1}, {1}, {1}}}},
			want:   map[string][][]uint64{"t": {{1}, {1}, {1}, {1}}},
		},
		{
			name:   "under-replicated partition is filled",
			nodes:  live(1, 2, 3),
			topics: []TopicPlacement{{Name: "t", Partitions: 1, Replicas: 3, Current: [][]uint64{{2}}}},
			want:   map[string][][]uint64{"t": {{2, 1, 3}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Place(c.nodes, c.topics)
			if c.err {
				if err == nil {
					t.Fatalf("no error; got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

// TestPlaceConverges: placing repeatedly (as the __meta leader does after each move) reaches a
// fixed point where loads differ by at most one.
func TestPlaceConverges(t *testing.T) {
	nodes := live(1, 2, 3)
	topics := []TopicPlacement{{Name: "a", Partitions: 7, Replicas: 3}, {Name: "b", Partitions: 3, Replicas: 2}}
	for round := 0; ; round++ {
		got, err := Place(nodes, topics)
		if err != nil {
			t.Fatal(err)
		}
		same := true
		for i := range topics {
			if !reflect.DeepEqual(topics[i].Current, got[topics[i].Name]) {
				same = false
			}
			topics[i].Current = got[topics[i].Name]
		}
		if same {
			break
		}
		if round == 20 {
			t.Fatal("no fixed point after 20 rounds")
		}
		if round == 0 {
			nodes = live(1, 2, 3, 4, 5) // two nodes join
		}
	}
	load := map[uint64]int{}
	for _, tp := range topics {
		for _, reps := range tp.Current {
			for _, id := range reps {
				load[id]++
			}
		}
	}
	lo, hi := 1<<30, 0
	for _, id := range []uint64{1, 2, 3, 4, 5} {
		lo, hi = min(lo, load[id]), max(hi, load[id])
	}
	if hi-lo > 1 {
		t.Fatalf("loads %v differ by %d", load, hi-lo)
	}
}

// TestPlaceProperties places random inputs and checks what Place promises for every one of
// them: no two replicas of a partition on one node, the replication factor whenever enough
// nodes are usable, at most one replica changed per partition (of partitions that were at
// their replication factor), and a usable replica never given up for an unusable one.
func TestPlaceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		nn := 1 + rng.IntN(6)
		var nodes []NodeState
		usable := map[uint64]bool{}
		for id := uint64(1); id <= uint64(nn); id++ {
			ns := NodeState{ID: id, Live: rng.IntN(4) != 0, Draining: rng.IntN(6) == 0}
			nodes = append(nodes, ns)
			usable[id] = ns.Live && !ns.Draining
		}
		var topics []TopicPlacement
		for ti := 0; ti < 1+rng.IntN(3); ti++ {
			tp := TopicPlacement{Name: string(rune('a' + ti)), Partitions: int32(1 + rng.IntN(4)), Replicas: int32(1 + rng.IntN(3))}
			if rng.IntN(3) != 0 { // already placed, on a random subset of the nodes
				for p := int32(0); p < tp.Partitions; p++ {
					perm := rng.Perm(nn)
					k := 1 + rng.IntN(nn)
					var reps []uint64
					for _, i := range perm[:k] {
						reps = append(reps, uint64(i+1))
					}
					tp.Current = append(tp.Current, reps)
				}
			}
			topics = append(topics, tp)
		}
		got, err := Place(nodes, topics)
		if err != nil {
			continue // a new topic wanting more replicas than usable nodes
		}
		nUsable := 0
		for _, u := range usable {
			if u {
				nUsable++
			}
		}
		for _, tp := range topics {
			for p, reps := range got[tp.Name] {
				seen := map[uint64]bool{}
				for _, id := range reps {
					if seen[id] {
						t.Fatalf("case %d: %s/%d: two replicas on node %d: %v (nodes %v, input %v)", n, tp.Name, p, id, reps, nodes, tp.Current)
					}
					seen[id] = true
				}
				var cur []uint64
				if p < len(tp.Current) {
					cur = tp.Current[p]
				}
				if len(reps) > int(tp.Replicas) || (nUsable >= int(tp.Replicas) && len(cur) <= int(tp.Replicas) && len(reps) < int(tp.Replicas)) {
					t.Fatalf("case %d: %s/%d: %d replicas %v, factor %d, %d usable nodes (input %v)", n, tp.Name, p, len(reps), reps, tp.Replicas, nUsable, cur)
				}
				if len(cur) == int(tp.Replicas) {
					changed := 0
					for _, id := range cur {
						if !slices.Contains(reps, id) {
							changed++
						}
					}
					if changed > 1 {
						t.Fatalf("case %d: %s/%d: %v became %v: more than one replica changed", n, tp.Name, p, cur, reps)
					}
				}
				for _, id := range cur {
					if usable[id] && !slices.Contains(reps, id) {
						for _, dropped := range reps {
							if !usable[dropped] {
								t.Fatalf("case %d: %s/%d: %v became %v: usable %d given up while unusable %d kept", n, tp.Name, p, cur, reps, id, dropped)
							}
						}
					}
				}
			}
		}
	}
}
