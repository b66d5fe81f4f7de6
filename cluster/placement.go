package cluster

import (
	"errors"
	"fmt"
	"sort"
)

// Placement decides which nodes hold the replicas of each partition. It is a pure function of
// its input so that it can be tested by tables and so that every node that runs it on the same
// input gets the same answer; the __meta leader runs it when members or topics change and
// commits the result.

// ErrNotEnoughNodes is wrapped by Place's error when a new topic wants more replicas than there
// are nodes to hold them.
var ErrNotEnoughNodes = errors.New("not enough nodes")

// NodeState is a node as placement sees it.
type NodeState struct {
	ID uint64
	// Live: the node is a member now, or died less than the re-placement timeout ago.
	Live bool
	// Draining: its replicas are to move elsewhere (`weir node drain`).
	Draining bool
	// Down: Live, but not a member now (it died less than the re-placement timeout ago): its
	// replicas stay where they are, and it is given no new ones.
	Down bool
}

// TopicPlacement is one topic's input to placement: its size and current assignment.
type TopicPlacement struct {
	Name       string
	Partitions int32
	Replicas   int32
	// Current holds each partition's replica node ids, the preferred leader first; nil or
	// shorter than Partitions for partitions not yet placed.
	Current [][]uint64
}

// Place returns the assignment of every topic's partitions, by topic name. It keeps replicas
// where they are unless their node is gone or draining (and another node can take them) or the
// load is uneven by more than one replica; it moves at most one replica of a partition per call,
// so that a partition keeps most of its replicas while one moves. A new partition gets the
// least loaded nodes, its preferred leader the node leading fewest. It fails when a topic wants
// more replicas than there are usable nodes and has none placed yet.
func Place(nodes []NodeState, topics []TopicPlacement) (map[string][][]uint64, error) {
	usable := map[uint64]bool{}
	var ids []uint64
	for _, n := range nodes {
		if n.Live && !n.Draining {
			usable[n.ID] = true
			if !n.Down {
				ids = append(ids, n.ID) // the nodes that may be given replicas
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	ts := append([]TopicPlacement(nil), topics...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })

	load := map[uint64]int{}  // replicas per usable node
	leads := map[uint64]int{} // preferred leaderships per usable node
	out := make(map[string][][]uint64, len(ts))
	moved := map[string]map[int]bool{} // partitions with a replica changed in this call
	mark := func(topic string, p int) {
		if moved[topic] == nil {
			moved[topic] = map[int]bool{}
		}
		moved[topic][p] = true
	}
	// Existing replicas first, so that new ones fill around them.
	for _, t := range ts {
		if t.Replicas < 1 || t.Partitions < 1 {
			return nil, fmt.Errorf("topic %q: %d partitions, %d replicas", t.Name, t.Partitions, t.Replicas)
		}
		asg := make([][]uint64, t.Partitions)
		for p := range asg {
			if p < len(t.Current) {
				asg[p] = append([]uint64(nil), t.Current[p]...)
			}
			for i, id := range asg[p] {
				if usable[id] {
					load[id]++
					if i == 0 {
						leads[id]++
					}
				}
			}
		}
		out[t.Name] = asg
	}
	pick := func(exclude []uint64, leader bool) (uint64, bool) {
		best, found := uint64(0), false
		for _, id := range ids {
			if contains(exclude, id) {
				continue
			}
			if !found || less(id, best, load, leads, leader) {
				best, found = id, true
			}
		}
		return best, found
	}
	for _, t := range ts {
		asg := out[t.Name]
		for p := range asg {
			reps := asg[p]
			// Too many replicas (never made by Place; from an older assignment or a smaller
			// replication factor): drop those on unusable nodes first, then the last ones.
			for len(reps) > int(t.Replicas) {
				i := len(reps) - 1
				for j, id := range reps {
					if !usable[id] {
						i = j
						break
					}
				}
				if id := reps[i]; usable[id] {
					load[id]--
					if i == 0 {
						leads[id]--
					}
				}
				reps = append(reps[:i], reps[i+1:]...)
				if i == 0 && usable[reps[0]] {
					leads[reps[0]]++ // the next one is now the preferred leader
				}
				mark(t.Name, p)
			}
			if len(reps) == 0 && int(t.Replicas) > len(ids) {
				return nil, fmt.Errorf("%w: topic %q wants %d replicas, %d nodes can hold them", ErrNotEnoughNodes, t.Name, t.Replicas, len(ids))
			}
			// Replace one replica on a node that is gone or draining, if some node can take it
			// (not in a partition just shrunk: one change per partition per call).
			for i, id := range reps {
				if moved[t.Name][p] {
					break
				}
				if usable[id] {
					continue
				}
				if to, ok := pick(reps, i == 0); ok {
					reps[i] = to
					load[to]++
					if i == 0 {
						leads[to]++
					}
					mark(t.Name, p)
					break
				}
			}
			// Fill up to the replication factor.
			for len(reps) < int(t.Replicas) {
				to, ok := pick(reps, len(reps) == 0)
				if !ok {
					break
				}
				if len(reps) == 0 {
					leads[to]++
				}
				reps = append(reps, to)
				load[to]++
			}
			asg[p] = reps
		}
	}
	// Even out the load: move replicas from the most to the least loaded node while they differ
	// by more than one, one replica per partition per call.
	for len(ids) > 1 {
		hi, lo := ids[0], ids[0]
		for _, id := range ids {
			if load[id] > load[hi] {
				hi = id
			}
			if load[id] < load[lo] {
				lo = id
			}
		}
		if load[hi]-load[lo] <= 1 {
			break
		}
		// Prefer moving a follower: a moved preferred leader costs an election.
		did := false
		for _, leaderToo := range []bool{false, true} {
			for _, t := range ts {
				for p, reps := range out[t.Name] {
					if did || moved[t.Name][p] || contains(reps, lo) {
						continue
					}
					for i, id := range reps {
						if id != hi || (i == 0 && !leaderToo) {
							continue
						}
						reps[i] = lo
						load[hi]--
						load[lo]++
						if i == 0 {
							leads[hi]--
							leads[lo]++
						}
						mark(t.Name, p)
						did = true
						break
					}
				}
			}
			if did {
				break
			}
		}
		if !did {
			break
		}
	}
	return out, nil
}

// less orders candidate nodes: fewer replicas first; for a preferred leader, fewer leaderships
// first; then the lower id.
func less(a, b uint64, load, leads map[uint64]int, leader bool) bool {
	if leader && leads[a] != leads[b] {
		return leads[a] < leads[b]
	}
	if load[a] != load[b] {
		return load[a] < load[b]
	}
	if !leader && leads[a] != leads[b] {
		return leads[a] < leads[b]
	}
	return a < b
}

func contains(s []uint64, id uint64) bool {
	for _, x := range s {
		if x == id {
			return true
		}
	}
	return false
}
