package actors

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
)

// Group introspection, for the Kafka listener's ListGroups and DescribeGroups: which groups
// exist and who is in them. A group exists while its coordinator runs (on the node that leads
// __offsets, spawned at its first join or commit) or while it has committed offsets in
// __offsets. Flow sources' positions (groups "source:<flow>") are not consumer groups and are
// left out.

// DescribeGroup asks a node's root about a group: the root forwards it to the group's
// coordinator if it runs one, which answers a *GroupDescription; otherwise the root answers a
// *GroupDescription with Running false.
type DescribeGroup struct {
	Group string `msgpack:"g"`
}

// GroupDescription is a group's state as its coordinator holds it.
type GroupDescription struct {
	Group       string        `msgpack:"g"`
	Running     bool          `msgpack:"r"` // a coordinator answered
	Generation  int32         `msgpack:"n"`
	Rebalancing bool          `msgpack:"b"`
	Members     []GroupMember `msgpack:"m"`
}

// GroupMember is one member of a group: what it subscribed to and what it was given in the
// current generation. ClientID and ClientHost are known for members that joined through the
// Kafka listener.
type GroupMember struct {
	ID         string                 `msgpack:"i"`
	ClientID   string                 `msgpack:"c,omitempty"`
	ClientHost string                 `msgpack:"h,omitempty"`
	Topics     []string               `msgpack:"t"`
	Assigned   []wire.TopicPartitions `msgpack:"a"`
}

// ListCoordinators asks a node's root for the groups whose coordinator it runs;
// ListCommitGroups asks __offsets for the groups that have committed offsets. Both are answered
// with a *GroupList.
type (
	ListCoordinators struct{}
	ListCommitGroups struct{}
	GroupList        struct {
		Groups []string `msgpack:"g"`
	}
)

func init() {
	register(47, &DescribeGroup{})
	register(48, &GroupDescription{})
	register(49, &ListCoordinators{})
	register(50, &ListCommitGroups{})
	register(51, &GroupList{})
}

// Kafka's names of a classic group's states.
const (
	groupStateEmpty       = "Empty"
	groupStateStable      = "Stable"
	groupStateRebalancing = "PreparingRebalance"
	groupStateDead        = "Dead"
)

// State is the group's state in Kafka's terms: Empty without members, PreparingRebalance while
// the coordinator waits for members to join, Stable otherwise.
func (d *GroupDescription) State() string {
	switch {
	case len(d.Members) == 0:
		return groupStateEmpty
	case d.Rebalancing:
		return groupStateRebalancing
	}
	return groupStateStable
}

// describe is the coordinator's answer to DescribeGroup: its members sorted by id.
func (c *coordinator) describe() *GroupDescription {
	d := &GroupDescription{Group: c.group, Running: true, Generation: c.generation, Rebalancing: c.rebalancing}
	for _, mb := range c.members {
		d.Members = append(d.Members, GroupMember{ID: mb.id, ClientID: mb.clientID, ClientHost: mb.clientHost,
			Topics: mb.topics, Assigned: mb.assigned})
	}
	slices.SortFunc(d.Members, func(a, b GroupMember) int { return strings.Compare(a.ID, b.ID) })
	return d
}

// groupsRoot is the root actor of the node that runs the group coordinators: the one leading
// __offsets (this node's when it runs alone).
func (n *Node) groupsRoot() (*actor.PID, error) {
	addr := n.system.Address()
	if n.cluster != nil {
		lead := n.leaderOf(OffsetsTopic + "/0")
		if lead == 0 {
			return nil, wire.Errorf(wire.CodeUnavailable, "__offsets has no leader yet")
		}
		if lead != n.raftID {
			a := n.peerAddr(lead)
			if a == "" {
				return nil, wire.Errorf(wire.CodeUnavailable, "the node running the group coordinators is not reachable")
			}
			addr = a
		}
	}
	return actor.NewPID(addr, rootName), nil
}

// groupQueryTimeout bounds each request of ListGroups and DescribeGroups.
const groupQueryTimeout = 10 * time.Second

// ask sends msg to pid and waits for the answer, as a *wire.Error on failure.
func (n *Node) ask(pid *actor.PID, msg any) (any, *wire.Error) {
	res, err := resultOf(n.rc.RequestFuture(pid, msg, groupQueryTimeout))
	if err != nil {
		if errors.Is(err, actor.ErrTimeout) {
			return nil, wire.Errorf(wire.CodeTimeout, "no answer from %s within %v", pid.Id, groupQueryTimeout)
		}
		return nil, wire.Errorf(wire.CodeUnavailable, "%s: %v", pid.Id, err)
	}
	return res, nil
}

// Groups lists the consumer groups, sorted: those with a running coordinator and those with
// committed offsets.
func (n *Node) Groups() ([]string, *wire.Error) {
	root, err := n.groupsRoot()
	if err != nil {
		return nil, wire.AsError(err)
	}
	res, e := n.ask(root, &ListCoordinators{})
	if e != nil {
		return nil, e
	}
	running, ok := res.(*GroupList)
	if !ok {
		return nil, wire.Errorf(wire.CodeUnavailable, "list groups: answer %T", res)
	}
	res, e = n.ask(n.internalPID("offsets"), &ListCommitGroups{})
	if e != nil {
		return nil, e
	}
	committed, ok := res.(*GroupList)
	if !ok {
		return nil, wire.Errorf(wire.CodeUnavailable, "list groups: answer %T", res)
	}
	var all []string
	for _, g := range slices.Concat(running.Groups, committed.Groups) {
		if !strings.HasPrefix(g, sourceGroupPrefix) {
			all = append(all, g)
		}
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// sourceGroupPrefix starts the names under which flow sources commit their positions.
const sourceGroupPrefix = "source:"

// DescribeGroup returns a group's members from its coordinator; a group whose coordinator does
// not run has Running false and no members.
func (n *Node) DescribeGroup(group string) (*GroupDescription, *wire.Error) {
	if group == "" {
		return nil, wire.Errorf(wire.CodeInvalidRequest, "empty group name")
	}
	root, err := n.groupsRoot()
	if err != nil {
		return nil, wire.AsError(err)
	}
	res, e := n.ask(root, &DescribeGroup{Group: group})
	if e != nil {
		return nil, e
	}
	d, ok := res.(*GroupDescription)
	if !ok {
		return nil, wire.Errorf(wire.CodeUnavailable, "describe group %s: answer %T", group, res)
	}
	return d, nil
}

// HasCommits reports whether a group has committed offsets.
func (n *Node) HasCommits(group string) (bool, *wire.Error) {
	res, e := n.ask(n.internalPID("offsets"), &FetchOffsets{Group: group})
	if e != nil {
		return false, e
	}
	switch r := res.(type) {
	case *wire.FetchCommitResponse:
		if r.Err != nil {
			return false, r.Err
		}
		return len(r.Offsets) > 0, nil
	}
	return false, wire.Errorf(wire.CodeUnavailable, "offsets of group %s: answer %T", group, res)
}
