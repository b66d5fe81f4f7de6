package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func startMember(t *testing.T, id uint64, join []string, key []byte) *Membership {
	t.Helper()
	m, err := Start(MembershipConfig{Bind: "127.0.0.1:0", Join: join, Fast: true, SecretKey: key,
		Self: Member{ID: id, Node: fmt.Sprintf("node-%d", id), Remote: fmt.Sprintf("127.0.0.1:%d", 9000+id)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func waitMembers(t *testing.T, m *Membership, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if len(m.Members()) == want {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s sees %d members after %v, want %d", m.Self().Name, len(m.Members()), within, want)
	return 0
}

func TestMembershipJoinAndDeath(t *testing.T) {
	key := []byte("0123456789abcdef")
	a := startMember(t, 1, nil, key)
	b := startMember(t, 2, []string{a.Addr()}, key)
	c := startMember(t, 3, []string{b.Addr()}, key) // any live member is enough
	for _, m := range []*Membership{a, b, c} {
		waitMembers(t, m, 3, 5*time.Second)
	}
	ms := a.Members()
	for i, mb := range ms {
		if mb.ID != uint64(i+1) || mb.Remote != fmt.Sprintf("127.0.0.1:%d", 9001+i) || mb.Name == "" {
			t.Fatalf("member %d: %+v", i, mb)
		}
	}
	// A crash (no leave message) is noticed within about a second.
	_ = c.Shutdown()
	took := waitMembers(t, a, 2, 5*time.Second)
	t.Logf("dead member noticed after %v", took)
	if took > 3*time.Second {
		t.Fatalf("dead member noticed after %v, want about a second", took)
	}
	// It comes back under a new gossip name and the same id.
	c2 := startMember(t, 3, []string{a.Addr()}, key)
	waitMembers(t, a, 3, 5*time.Second)
	if c2.Self().Name == c.Self().Name {
		t.Fatalf("a new boot reused the gossip name %q", c.Self().Name)
	}
	if err := c2.SetDraining(true); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ms := a.Members(); len(ms) == 3 && ms[2].Draining {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("draining mark not seen: %+v", a.Members())
		}
	}
}

// TestMembershipOnChangeMayReadMembers: OnChange runs outside memberlist's locks, so it may
// ask for the members (it deadlocked when called from memberlist's event callback).
func TestMembershipOnChangeMayReadMembers(t *testing.T) {
	var self atomic.Pointer[Membership]
	var seen atomic.Int32
	a, err := Start(MembershipConfig{Bind: "127.0.0.1:0", Fast: true, Self: Member{ID: 1, Node: "node-1", Remote: "x:1"},
		OnChange: func() {
			if m := self.Load(); m != nil {
				seen.Store(int32(len(m.Members())))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	self.Store(a)
	defer a.Shutdown()
	startMember(t, 2, []string{a.Addr()}, nil)
	for deadline := time.Now().Add(5 * time.Second); seen.Load() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("OnChange saw %d members, want 2", seen.Load())
		}
	}
}

func TestMembershipWrongKey(t *testing.T) {
	a := startMember(t, 1, nil, []byte("0123456789abcdef"))
	b := startMember(t, 2, []string{a.Addr()}, []byte("fedcba9876543210"))
	time.Sleep(2 * time.Second)
	if n, m := len(a.Members()), len(b.Members()); n != 1 || m != 1 {
		t.Fatalf("members with different gossip keys see %d and %d members, want 1 each", n, m)
	}
	if _, err := Start(MembershipConfig{Bind: "127.0.0.1:0", SecretKey: []byte("short"), Self: Member{ID: 2}}); err == nil {
		t.Fatal("a 5-byte key was taken")
	}
	if _, err := Start(MembershipConfig{Bind: "nonsense", Self: Member{ID: 2}}); err == nil {
		t.Fatal("a bad address was taken")
	}
}

// TestMembershipConflicts: two nodes with one raft id but different names are reported; boots of
// one node are not.
func TestMembershipConflicts(t *testing.T) {
	a := startMember(t, 1, nil, nil)
	start := func(name string) *Membership {
		m, err := Start(MembershipConfig{Bind: "127.0.0.1:0", Join: []string{a.Addr()}, Fast: true,
			Self: Member{ID: 1, Node: name, Remote: "127.0.0.1:9500"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		return m
	}
	if c := a.Conflicts(); len(c) != 0 {
		t.Fatalf("conflicts alone: %v", c)
	}
	start("node-1") // another boot of node-1: not a conflict
	start("other")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := a.Conflicts()
		if len(c) == 1 && fmt.Sprint(c[1]) == "[node-1 other]" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("conflicts %v, want node-1 and other for id 1", c)
		}
	}
}
