package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// TestCoordinatorCacheByGroup: the coordinators a node remembers are kept per group name, so
// forgetting or looking up group "a" leaves group "a@x" alone (a prefix match on "group@" used
// to mix them up).
func TestCoordinatorCacheByGroup(t *testing.T) {
	n := &Node{groups: map[string]knownCoordinator{
		"a":   {at: "n1#1", pid: actor.NewPID("h:1", "root/group/a")},
		"a@x": {at: "n1#1", pid: actor.NewPID("h:1", "root/group/a@x")},
	}}
	if pid := n.cachedCoordinator("a"); pid == nil || pid.Id != "root/group/a" {
		t.Fatalf("cached coordinator of a: %v", pid)
	}
	n.forgetCoordinator("a")
	if pid := n.cachedCoordinator("a"); pid != nil {
		t.Fatalf("a forgotten, still %v", pid)
	}
	if pid := n.cachedCoordinator("a@x"); pid == nil || pid.Id != "root/group/a@x" {
		t.Fatalf("forgetting a dropped a@x: %v", pid)
	}
}
