package actors

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
)

// CoordinatorConfig tunes group coordinators.
type CoordinatorConfig struct {
	// InitialDelay is how long a group with no members waits after the first join for others
	// before its first assignment.
	InitialDelay time.Duration
	// RebalanceTimeout is how long a rebalance waits for the known members to join again; those
	// that do not are dropped.
	RebalanceTimeout time.Duration
	// DefaultSessionTimeout applies to members that ask for none; MinSessionTimeout and
	// MaxSessionTimeout bound what members ask for.
	DefaultSessionTimeout time.Duration
	MinSessionTimeout     time.Duration
	MaxSessionTimeout     time.Duration
	// TickInterval is how often sessions are checked.
	TickInterval time.Duration
	// IdleTimeout is how long a coordinator with no members and no rebalance waits for a
	// request before it stops (its committed offsets stay in __offsets; the next request
	// starts it again). One minute by default.
	IdleTimeout time.Duration
}

func (c *CoordinatorConfig) defaults() {
	if c.InitialDelay <= 0 {
		c.InitialDelay = 200 * time.Millisecond
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = 5 * time.Second
	}
	if c.DefaultSessionTimeout <= 0 {
		c.DefaultSessionTimeout = 10 * time.Second
	}
	if c.MinSessionTimeout <= 0 {
		c.MinSessionTimeout = 500 * time.Millisecond
	}
	if c.MaxSessionTimeout <= 0 {
		c.MaxSessionTimeout = 5 * time.Minute
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Minute
	}
}

// Group messages, from the client port or a flow's sink to a coordinator. Their replies are
// *wire.JoinGroupResponse for a join and *wire.AdminResponse for the others.
type (
	JoinGroup struct {
		wire.JoinGroupRequest
	}
	Heartbeat struct {
		wire.HeartbeatRequest
	}
	LeaveGroup struct {
		wire.LeaveGroupRequest
	}
	CommitGroup struct {
		wire.CommitRequest
	}
)

func init() {
	register(40, &JoinGroup{})
	register(41, &Heartbeat{})
	register(42, &LeaveGroup{})
	register(43, &CommitGroup{})
	register(44, &wire.JoinGroupResponse{})
	register(45, &wire.AdminResponse{})
	register(46, &EnsureCoordinator{})
}

type member struct {
	id       string
	topics   []string
	session  time.Duration
	lastSeen time.Time
	joining  *actor.PID // reply-to of a join waiting for the rebalance
	assigned []wire.TopicPartitions
	// clientID and clientHost name a member that joined through the Kafka listener (its
	// request header's client id, its connection's address), for DescribeGroups.
	clientID, clientHost string
}

// coordinator assigns a group's partitions to its members. Its state (members, generation) lives
// in memory: after a restart, members learn from their next heartbeat that they are unknown and
// join again, and resume from the offsets committed in __offsets, which the coordinator forwards
// commits to.
//
// A coordinator with no members and no rebalance that had no request for IdleTimeout asks its
// node's root to stop it (coordinatorIdle), so that a node does not keep one actor, and its
// ticks, for every group name ever used. It holds nothing then but its generation, which the
// root keeps for the group's next coordinator (so generations keep increasing); the next
// request for the group starts one (EnsureCoordinator). A request that reaches it while it
// stops is answered as one for a coordinator that moved (retriable: COORDINATOR_NOT_AVAILABLE,
// or REBALANCE_IN_PROGRESS for a join).
type coordinator struct {
	n     *Node
	group string
	cfg   CoordinatorConfig
	fault func(string)

	members     map[string]*member
	generation  int32
	rebalancing bool
	deadline    time.Time
	// firstJoin: this rebalance began with the join of a member alone in the group (a new
	// group, or its one member joining again), which waits out the deadline (InitialDelay)
	// for company. Any other rebalance completes as soon as every member has joined.
	firstJoin bool
	stopTick  *ticker
	// lastActive is when the coordinator last had a request; retiring is set once it asked
	// the root to stop it for being idle.
	lastActive time.Time
	retiring   bool
	// elsewhere counts the ticks in a row at which another node led __offsets: the coordinator
	// then stops (its members rejoin the new leader's coordinator).
	elsewhere int
}

// coordinatorStopped tells the root that a group's coordinator stopped itself.
type coordinatorStopped struct{ group string }

// coordinatorIdle asks the root to stop a group's coordinator, idle for IdleTimeout, and keep
// its generation for the next one.
type coordinatorIdle struct {
	group      string
	pid        *actor.PID
	generation int32
}

// coordinatorMovedTicks is how many ticks in a row another node must lead __offsets before a
// coordinator on this node stops.
const coordinatorMovedTicks = 10

// newCoordinatorProps makes a group's coordinator, whose first generation follows generation
// (that of the group's last coordinator on this node, 0 if none).
func newCoordinatorProps(n *Node, group string, cfg CoordinatorConfig, generation int32) *actor.Props {
	cfg.defaults()
	return actor.PropsFromProducer(func() actor.Actor {
		return &coordinator{n: n, group: group, cfg: cfg, fault: n.fault("group"), generation: generation}
	})
}

func (c *coordinator) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case tick, actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		c.lastActive = time.Now()
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.members = map[string]*member{}
		c.lastActive = time.Now()
		c.stopTick = startTicker(ctx.ActorSystem(), ctx.Self(), c.cfg.TickInterval, tick{})
	case *actor.Stopping, *actor.Restarting:
		c.stopTick.stop()
		for _, mb := range c.members {
			if mb.joining != nil {
				ctx.Send(mb.joining, &wire.JoinGroupResponse{Err: wire.Errorf(wire.CodeRebalance, "group %s: coordinator restarting or moving", c.group)})
			}
		}
	case *JoinGroup:
		c.fault("join")
		if c.retiring {
			// It asked its root to stop it: a member it took now would be dropped with it, and
			// a generation it started could be the next coordinator's first.
			ctx.Respond(&wire.JoinGroupResponse{Err: wire.Errorf(wire.CodeRebalance, "group %s: coordinator stopping (idle); join again", c.group)})
			return
		}
		c.join(ctx, m)
	case *Heartbeat:
		ctx.Respond(&wire.AdminResponse{Err: c.heartbeat(m.MemberID, m.Generation)})
	case *LeaveGroup:
		if _, ok := c.members[m.MemberID]; ok {
			delete(c.members, m.MemberID)
			c.n.logger.Info("group member left", "group", c.group, "member", m.MemberID)
			c.startRebalance(c.cfg.InitialDelay)
		}
		ctx.Respond(&wire.AdminResponse{})
	case *DescribeGroup:
		ctx.Respond(c.describe())
	case *DeleteGroupOffsets:
		if len(c.members) > 0 {
			ctx.Respond(&ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "group %s is not empty: %d members", c.group, len(c.members))})
			return
		}
		ctx.RequestWithCustomSender(c.n.internalPID("offsets"), m, ctx.Sender())
	case *CommitGroup:
		c.fault("commit")
		var e *wire.Error
		switch {
		case m.MemberID == "":
			e = c.checkOutsideCommit()
		case m.Generation >= 0 || len(c.members) > 0:
			// A member's commit; generation -1 with a member id is one from outside when the
			// group is empty, as in Kafka.
			e = c.checkCommit(m.MemberID, m.Generation, m.Offsets)
		}
		if e != nil {
			ctx.Respond(&ProduceReply{BaseOffset: -1, Err: e})
			return
		}
		// __offsets answers the committer directly once the offsets are committed.
		ctx.RequestWithCustomSender(c.n.internalPID("offsets"), &CommitOffsets{Group: c.group, Offsets: m.Offsets}, ctx.Sender())
	case tick:
		c.onTick(ctx)
	}
}

// heartbeat renews a member's session and tells it whether it must join again: the group is
// rebalancing, or its generation is over.
func (c *coordinator) heartbeat(id string, gen int32) *wire.Error {
	mb, ok := c.members[id]
	if !ok {
		return wire.Errorf(wire.CodeUnknownMember, "group %s: member %q is not in the group", c.group, id)
	}
	mb.lastSeen = time.Now()
	if c.rebalancing {
		return wire.Errorf(wire.CodeRebalance, "group %s: rebalancing", c.group)
	}
	if gen != c.generation {
		return wire.Errorf(wire.CodeStaleGeneration, "group %s: generation %d, now %d", c.group, gen, c.generation)
	}
	return nil
}

// checkCommit validates a member's commit: the member is in the group, its generation is the
// current one, and it owns every partition it commits. During a rebalance the current
// generation still holds, as in Kafka: a member told to rejoin commits first, so that the next
// owner of its partitions starts where it stopped; a member that owns nothing yet (a new one)
// is told to wait for its join.
func (c *coordinator) checkCommit(id string, gen int32, offsets []wire.PartitionOffset) *wire.Error {
	mb, ok := c.members[id]
	if !ok {
		return wire.Errorf(wire.CodeUnknownMember, "group %s: member %q is not in the group", c.group, id)
	}
	if gen != c.generation {
		return wire.Errorf(wire.CodeStaleGeneration, "group %s: generation %d, now %d", c.group, gen, c.generation)
	}
	for _, o := range offsets {
		if mb.owns(o.Topic, o.Partition) {
			continue
		}
		if c.rebalancing {
			return wire.Errorf(wire.CodeRebalance, "group %s: rebalancing, and member %q does not own %s/%d", c.group, id, o.Topic, o.Partition)
		}
		// A member that kept reading a partition given to another (a Kafka client with a
		// cooperative assignor does until it rejoins) may not move that one's offset.
		return wire.Errorf(wire.CodeStaleGeneration, "group %s: member %q does not own %s/%d in generation %d", c.group, id, o.Topic, o.Partition, gen)
	}
	return nil
}

// checkOutsideCommit refuses a commit from outside the group (no member id: an admin tool, a
// consumer that assigns itself partitions) while the group has members, as Kafka does
// (UNKNOWN_MEMBER_ID): it would move the offsets of partitions that members are reading.
func (c *coordinator) checkOutsideCommit() *wire.Error {
	if len(c.members) > 0 {
		return wire.Errorf(wire.CodeUnknownMember, "group %s: a commit without a member id while the group has %d members", c.group, len(c.members))
	}
	return nil
}

// owns reports whether a partition is in the member's assignment of the current generation.
func (mb *member) owns(topic string, p int32) bool {
	for _, tp := range mb.assigned {
		if tp.Topic == topic {
			return slices.Contains(tp.Partitions, p)
		}
	}
	return false
}

func (c *coordinator) join(ctx actor.Context, m *JoinGroup) {
	if len(m.Topics) == 0 {
		ctx.Respond(&wire.JoinGroupResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "group %s: join with no topics", c.group)})
		return
	}
	for _, t := range m.Topics {
		if _, ok := c.n.Topic(t); !ok {
			ctx.Respond(&wire.JoinGroupResponse{Err: wire.Errorf(wire.CodeUnknownTopic, "group %s: topic %q does not exist", c.group, t)})
			return
		}
	}
	session := c.cfg.DefaultSessionTimeout
	if m.SessionTimeoutMs > 0 {
		session = time.Duration(m.SessionTimeoutMs) * time.Millisecond
	}
	if session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout {
		ctx.Respond(&wire.JoinGroupResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "group %s: session timeout %v not in [%v, %v]", c.group, session, c.cfg.MinSessionTimeout, c.cfg.MaxSessionTimeout)})
		return
	}
	id := m.MemberID
	if id == "" {
		id = newMemberID()
	}
	mb, ok := c.members[id]
	if !ok {
		mb = &member{id: id}
		c.members[id] = mb
		c.n.logger.Info("group member joined", "group", c.group, "member", id, "topics", m.Topics)
	}
	if mb.joining != nil && mb.joining != ctx.Sender() {
		ctx.Send(mb.joining, &wire.JoinGroupResponse{Err: wire.Errorf(wire.CodeRebalance, "group %s: joined again", c.group)})
	}
	mb.topics, mb.session, mb.lastSeen, mb.joining = m.Topics, session, time.Now(), ctx.Sender()
	mb.clientID, mb.clientHost = m.ClientID, m.ClientHost
	if !c.rebalancing {
		if len(c.members) == 1 { // alone: no one else to wait for
			c.startRebalance(c.cfg.InitialDelay)
			c.firstJoin = true
		} else {
			c.startRebalance(c.cfg.RebalanceTimeout)
		}
	}
	c.maybeComplete(ctx)
}

func (c *coordinator) startRebalance(wait time.Duration) {
	if len(c.members) == 0 {
		c.rebalancing = false
		return
	}
	if !c.rebalancing {
		c.rebalancing = true
		c.deadline = time.Now().Add(wait)
		c.firstJoin = false
	}
}

// maybeComplete finishes a rebalance once every member has joined again, or at the deadline
// without those that have not.
func (c *coordinator) maybeComplete(ctx actor.Context) {
	if !c.rebalancing {
		return
	}
	all := true
	for _, mb := range c.members {
		if mb.joining == nil {
			all = false
		}
	}
	past := !time.Now().Before(c.deadline)
	if c.firstJoin && len(c.members) == 1 && !past {
		return // the first member waits InitialDelay for company
	}
	if !all && !past {
		return
	}
	for id, mb := range c.members {
		if mb.joining == nil {
			c.n.logger.Info("group member dropped: did not rejoin", "group", c.group, "member", id)
			delete(c.members, id)
		}
	}
	if len(c.members) == 0 {
		c.rebalancing = false
		return
	}
	c.generation++
	c.assign()
	c.rebalancing = false
	for _, mb := range c.members {
		ctx.Send(mb.joining, &wire.JoinGroupResponse{MemberID: mb.id, Generation: c.generation, Assigned: mb.assigned, Members: int32(len(c.members))})
		mb.joining = nil
		mb.lastSeen = time.Now()
	}
	c.n.logger.Info("group rebalanced", "group", c.group, "generation", c.generation, "members", len(c.members))
}

// assign gives each topic's partitions to the members subscribed to it: range assignment over
// the members sorted by id, so every partition has exactly one owner.
func (c *coordinator) assign() {
	topics := map[string][]*member{}
	for _, mb := range c.members {
		mb.assigned = nil
		for _, t := range mb.topics {
			topics[t] = append(topics[t], mb)
		}
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		ms := topics[t]
		sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
		tm, ok := c.n.Topic(t)
		if !ok {
			continue
		}
		parts := RangeAssign(int(tm.Partitions), len(ms))
		for i, mb := range ms {
			if len(parts[i]) > 0 {
				mb.assigned = append(mb.assigned, wire.TopicPartitions{Topic: t, Partitions: parts[i]})
			}
		}
	}
}

// RangeAssign splits partitions 0..n-1 into m contiguous ranges, the first n%m one longer.
func RangeAssign(n, m int) [][]int32 {
	out := make([][]int32, m)
	if m == 0 {
		return out
	}
	per, extra := n/m, n%m
	p := 0
	for i := 0; i < m; i++ {
		k := per
		if i < extra {
			k++
		}
		for j := 0; j < k; j++ {
			out[i] = append(out[i], int32(p))
			p++
		}
	}
	return out
}

func (c *coordinator) onTick(ctx actor.Context) {
	if c.n.cluster != nil {
		lead := c.n.leaderOf(partitionGroup(OffsetsTopic, 0))
		if lead != 0 && lead != c.n.raftID {
			c.elsewhere++
		} else {
			c.elsewhere = 0
		}
		if c.elsewhere >= coordinatorMovedTicks {
			c.n.logger.Info("group coordinator stops: __offsets is led elsewhere", "group", c.group, "leader", c.n.nodeName(lead))
			ctx.Send(ctx.Parent(), &coordinatorStopped{group: c.group})
			ctx.Stop(ctx.Self())
			return
		}
	}
	now := time.Now()
	for id, mb := range c.members {
		if mb.joining == nil && now.Sub(mb.lastSeen) > mb.session {
			c.n.logger.Info("group member expired", "group", c.group, "member", id, "session", mb.session)
			delete(c.members, id)
			c.startRebalance(c.cfg.RebalanceTimeout)
		}
	}
	c.maybeComplete(ctx)
	if !c.retiring && len(c.members) == 0 && !c.rebalancing && now.Sub(c.lastActive) >= c.cfg.IdleTimeout {
		c.retiring = true
		c.n.logger.Debug("group coordinator stops: idle", "group", c.group, "idle", now.Sub(c.lastActive))
		ctx.Send(ctx.Parent(), &coordinatorIdle{group: c.group, pid: ctx.Self(), generation: c.generation})
	}
}

func newMemberID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "m-" + hex.EncodeToString(b[:])
}

// EnsureCoordinator asks a node's root to run a group's coordinator; the reply is a
// *ProduceReply.
type EnsureCoordinator struct {
	Group string `msgpack:"g"`
}

// cachedCoordinator is the coordinator coordinatorFor found last for group, if it is still
// the one to use; nil otherwise. It asks no one.
func (n *Node) cachedCoordinator(group string) *actor.PID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.groups[group].pid
}

// forgetCoordinator drops the coordinator remembered for group (a request to it failed: it
// may have stopped), so that the next coordinatorFor asks its node's root again.
func (n *Node) forgetCoordinator(group string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.groups, group)
}

// idleStop returns a channel closed once the root stops the coordinator of group for being idle
// (or it stops itself), if it runs on this node; nil otherwise (a coordinator on another node).
// If pid is an older one of this node, already stopped, a request to it is a dead letter.
func (n *Node) idleStop(group string, pid *actor.PID) <-chan struct{} {
	if isRemote(n.system, pid) {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.idleStops[group]; ok {
		return ch
	}
	return nil
}

// coordinatorGone closes the idleStop channel of group's coordinator, which stopped (or is
// stopping itself).
func (n *Node) coordinatorGone(group string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.idleStops[group]; ok {
		close(ch)
		delete(n.idleStops, group)
	}
}

// maxKnownCoordinators bounds the coordinators a node remembers (coordinatorFor).
const maxKnownCoordinators = 4096

// knownCoordinator is the coordinator coordinatorFor found for a group, and where: the boot of
// its node and the count of __offsets leaders this node had seen.
type knownCoordinator struct {
	at  string
	pid *actor.PID
}

// coordinatorFor returns the PID of a group's coordinator, which the root of its node spawns
// on first use (EnsureCoordinator). In a cluster the coordinators run on the node that leads
// __offsets, where their commits go; a coordinator elsewhere is remembered with the boot of its
// node (a restarted node has none until asked again) and the count of __offsets leaders this
// node saw (a coordinator stops when the leadership moves away). Its errors are *wire.Error.
func (n *Node) coordinatorFor(group string) (*actor.PID, error) {
	if group == "" {
		return nil, wire.Errorf(wire.CodeInvalidRequest, "empty group name")
	}
	addr, boot := n.system.Address(), ""
	if n.cluster != nil {
		lead := n.leaderOf(OffsetsTopic + "/0")
		if lead == 0 {
			return nil, wire.Errorf(wire.CodeUnavailable, "group %s: __offsets has no leader yet", group)
		}
		if lead != n.raftID {
			mb, ok := (*n.cluster.peers.Load())[lead]
			if !ok {
				return nil, wire.Errorf(wire.CodeUnavailable, "group %s: the coordinator's node is not reachable", group)
			}
			addr, boot = mb.Remote, mb.Name
		}
	}
	at := boot
	if n.cluster != nil {
		at += "#" + strconv.FormatUint(n.cluster.offsetsEpoch.Load(), 10)
	}
	n.mu.Lock()
	known, ok := n.groups[group]
	n.mu.Unlock()
	if ok && known.at == at && known.pid.Address == addr {
		return known.pid, nil
	}
	// A root on another node is watched: if gossip declares its node dead first (the __offsets
	// leader this node knows may be the node that just died), the request fails then, retriably,
	// instead of after the timeout.
	root := actor.NewPID(addr, rootName)
	var gone <-chan struct{}
	if n.cluster != nil && isRemote(n.system, root) {
		gone = n.watch(root, "")
	}
	res, err := n.await(n.rc.RequestFuture(root, &EnsureCoordinator{Group: group}, 10*time.Second), root, gone)
	if r, ok := res.(*ProduceReply); ok && r.Err != nil {
		return nil, r.Err
	}
	if err != nil {
		return nil, wire.Errorf(wire.CodeUnavailable, "group %s: coordinator: %v", group, err)
	}
	pid := actor.NewPID(addr, rootName+"/group/"+group)
	n.mu.Lock()
	if n.groups == nil {
		n.groups = map[string]knownCoordinator{}
	}
	if _, ok := n.groups[group]; !ok && len(n.groups) >= maxKnownCoordinators {
		// A node that relays requests for many groups' names (the coordinators run on another
		// node, which stops them when idle) forgets one: it is asked for again when used.
		for g := range n.groups {
			delete(n.groups, g)
			break
		}
	}
	n.groups[group] = knownCoordinator{at: at, pid: pid}
	n.mu.Unlock()
	return pid, nil
}
