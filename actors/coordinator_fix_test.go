package actors

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// joinAsync sends a JoinGroup on a connection of its own and delivers the answer later.
func joinAsync(t *testing.T, n *Node, req *wire.JoinGroupRequest) <-chan wire.JoinGroupResponse {
	t.Helper()
	c := dialNode(t, n)
	ch := make(chan wire.JoinGroupResponse, 1)
	go func() {
		var resp wire.JoinGroupResponse
		if err := c.try(wire.ApiJoinGroup, req, &resp); err != nil {
			resp.Err = wire.Errorf(wire.CodeUnknown, "join: %v", err)
		}
		ch <- resp
	}()
	return ch
}

func waitJoin(t *testing.T, ch <-chan wire.JoinGroupResponse) wire.JoinGroupResponse {
	t.Helper()
	select {
	case r := <-ch:
		if r.Err != nil {
			t.Fatalf("join: %v", r.Err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no answer to a join")
	}
	panic("unreachable")
}

// waitRebalance heart-beats for a member until the coordinator announces a rebalance.
func waitRebalance(t *testing.T, tc *testConn, group string, m wire.JoinGroupResponse) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var hb wire.AdminResponse
		tc.call(wire.ApiHeartbeat, &wire.HeartbeatRequest{Group: group, MemberID: m.MemberID, Generation: m.Generation}, &hb)
		if errors.Is(hb.Err, wire.ErrRebalance) {
			return
		}
		if hb.Err != nil || time.Now().After(deadline) {
			t.Fatalf("heartbeat of %s: %v", m.MemberID, hb.Err)
		}
	}
}

func owned(r wire.JoinGroupResponse, topic string) []int32 {
	for _, tp := range r.Assigned {
		if tp.Topic == topic {
			return tp.Partitions
		}
	}
	return nil
}

// TestCommitDuringRebalance: a member of the current generation may commit the partitions it
// owns while the group rebalances (before it rejoins, so that the next owner starts where it
// stopped); stale generations, members that own nothing yet and partitions owned by others
// are still refused.
func TestCommitDuringRebalance(t *testing.T) {
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) {
		// A long rebalance timeout: the rebalance waits for the first member's rejoin.
		c.Coordinator = CoordinatorConfig{InitialDelay: 50 * time.Millisecond, RebalanceTimeout: 20 * time.Second}
	})
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "c", 2)
	createTopic(t, tc, "other", 1)

	a := waitJoin(t, joinAsync(t, n, &wire.JoinGroupRequest{Group: "grp", MemberID: "a", Topics: []string{"c"}}))
	if a.Generation != 1 || len(owned(a, "c")) != 2 {
		t.Fatalf("first join: %+v", a)
	}
	bJoin := joinAsync(t, n, &wire.JoinGroupRequest{Group: "grp", MemberID: "b", Topics: []string{"c"}})
	waitRebalance(t, tc, "grp", a)

	commit := func(member string, gen int32, topic string, p int32, off int64) *wire.Error {
		var cr wire.AdminResponse
		tc.call(wire.ApiCommit, &wire.CommitRequest{Group: "grp", MemberID: member, Generation: gen,
			Offsets: []wire.PartitionOffset{{Topic: topic, Partition: p, Offset: off}}}, &cr)
		return cr.Err
	}
	if e := commit("a", a.Generation, "c", 0, 7); e != nil {
		t.Fatalf("commit of an owned partition with the current generation during a rebalance: %v", e)
	}
	if e := commit("a", a.Generation, "c", 1, 9); e != nil {
		t.Fatalf("second commit during the rebalance: %v", e)
	}
	for _, tc := range []struct {
		name      string
		member    string
		gen       int32
		topic     string
		partition int32
		want      error
	}{
		{"stale generation", "a", a.Generation - 1, "c", 0, wire.ErrStaleGeneration},
		{"future generation", "a", a.Generation + 1, "c", 0, wire.ErrStaleGeneration},
		{"member still joining", "b", a.Generation, "c", 1, wire.ErrRebalance},
		{"partition not owned", "a", a.Generation, "other", 0, wire.ErrRebalance},
		{"unknown member", "z", a.Generation, "c", 0, wire.ErrUnknownMember},
	} {
		if e := commit(tc.member, tc.gen, tc.topic, tc.partition, 1); !errors.Is(e, tc.want) {
			t.Errorf("%s: commit answered %v, want %v", tc.name, e, tc.want)
		}
	}

	// The rebalance completes when a rejoins; b starts where a committed.
	a2 := waitJoin(t, joinAsync(t, n, &wire.JoinGroupRequest{Group: "grp", MemberID: "a", Topics: []string{"c"}}))
	b := waitJoin(t, bJoin)
	if a2.Generation != 2 || b.Generation != 2 || len(owned(a2, "c"))+len(owned(b, "c")) != 2 {
		t.Fatalf("after the rebalance: %+v, %+v", a2, b)
	}
	var fc wire.FetchCommitResponse
	tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: "grp"}, &fc)
	got := map[int32]int64{}
	for _, o := range fc.Offsets {
		got[o.Partition] = o.Offset
	}
	if fc.Err != nil || len(got) != 2 || got[0] != 7 || got[1] != 9 {
		t.Fatalf("committed %+v, %v", fc.Offsets, fc.Err)
	}
	// Generation 1 is over now.
	if e := commit("a", a.Generation, "c", 0, 8); !errors.Is(e, wire.ErrStaleGeneration) {
		t.Fatalf("commit with the last generation after the rebalance: %v", e)
	}
}

// TestJoinedMemberGoneIsExpired: a member that sent JoinGroup and went away (its connection
// closed, no heartbeat ever) is expired by its session timeout like any member, and the group
// settles without it.
func TestJoinedMemberGoneIsExpired(t *testing.T) {
	const rebalanceTimeout = 3 * time.Second
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) {
		c.Coordinator = CoordinatorConfig{InitialDelay: 50 * time.Millisecond, RebalanceTimeout: rebalanceTimeout,
			MinSessionTimeout: 100 * time.Millisecond, TickInterval: 20 * time.Millisecond}
	})
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "e", 4)

	for _, tc2 := range []struct {
		name   string
		before bool // the ghost joins before the live member
	}{{"ghost joins a running group", false}, {"ghost joins first", true}} {
		t.Run(tc2.name, func(t *testing.T) {
			group := "g-" + map[bool]string{false: "late", true: "early"}[tc2.before]
			ghost := func() {
				// A join written on a connection that closes before any answer.
				c, err := net.Dial("tcp", n.ClientAddr())
				if err != nil {
					t.Fatal(err)
				}
				body, _ := wire.Encode(&wire.JoinGroupRequest{Group: group, MemberID: "ghost", Topics: []string{"e"}, SessionTimeoutMs: 300})
				if _, err := c.Write(wire.AppendFrame(nil, wire.ApiJoinGroup, 1, body)); err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			if tc2.before {
				ghost()
			}
			live := &wire.JoinGroupRequest{Group: group, MemberID: "live", Topics: []string{"e"}, SessionTimeoutMs: 2000}
			m := waitJoin(t, joinAsync(t, n, live))
			if !tc2.before {
				ghost()
			}
			// The ghost's join makes a rebalance (or joins the first one). The live member
			// heart-beats and rejoins whenever told to, until it owns every partition alone.
			start := time.Now()
			for first := !tc2.before; first || m.Members != 1 || len(owned(m, "e")) != 4; first = false {
				if time.Since(start) > 10*time.Second {
					t.Fatalf("the group did not settle without the ghost: %+v", m)
				}
				waitRebalance(t, tc, group, m)
				joined := time.Now()
				m = waitJoin(t, joinAsync(t, n, live))
				// Once the ghost is gone, the live member is the only one to wait for: the
				// rebalance completes at its join, not at the rebalance timeout.
				if el := time.Since(joined); el > rebalanceTimeout/2 {
					t.Fatalf("a rejoin took %v (generation %d, %d members)", el, m.Generation, m.Members)
				}
			}
			// And it stays settled.
			for range 10 {
				var hb wire.AdminResponse
				tc.call(wire.ApiHeartbeat, &wire.HeartbeatRequest{Group: group, MemberID: m.MemberID, Generation: m.Generation}, &hb)
				if hb.Err != nil {
					t.Fatalf("heartbeat after settling: %v", hb.Err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
