package actors

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/weirhq/weir/cluster"
	"github.com/weirhq/weir/storage/vfs"
)

// ClusterConfig makes a node a member of a cluster (NodeConfig.Cluster).
type ClusterConfig struct {
	// RemoteAddr is where the node's actors are reached by the other nodes (protoactor remote
	// over gRPC), host:port.
	RemoteAddr string
	// GossipAddr is the membership gossip address (UDP and TCP), host:port.
	GossipAddr string
	// Join lists gossip addresses of other members. A node started on an empty data directory
	// with no Join starts a new cluster: it bootstraps __meta and __offsets alone and the nodes
	// that join are added to them. A node that joined once remembers its peers' addresses
	// (DataDir/peers) and also tries those when it restarts.
	Join []string
	// GossipKey, if set (16, 24 or 32 bytes), encrypts gossip; every node needs the same key.
	GossipKey []byte
	// MetaVoters is how many nodes vote in __meta and __offsets (3 by default); the other
	// nodes hold non-voting copies.
	MetaVoters int
	// DeadAfter is how long a node may be away before its replicas are re-created on other
	// nodes (DefaultDeadAfter if 0).
	DeadAfter time.Duration
	// TLS, if set, makes the transport between nodes mutual TLS (ClusterTLS).
	TLS *ClusterTLS
}

// clusterState is what a node in a cluster keeps about the others.
type clusterState struct {
	cfg    ClusterConfig
	remote *remote.Remote
	// members is set once gossip has started; its OnChange may run before (and sees nil).
	members atomic.Pointer[cluster.Membership]
	// peers maps node id to its member record (live members only).
	peers   atomic.Pointer[map[uint64]cluster.Member]
	names   sync.Map // node id -> name, of every node seen
	leaders sync.Map // group -> leader id, as this node's replicas last saw it
	// goneMu guards gone and died, and makes refreshes of peers (membersChanged) one at a time.
	// gone holds, per remote address asked for, a channel closed when no live member has it.
	goneMu sync.Mutex
	gone   map[string]goneWatch
	// died is closed (and replaced) whenever a member dies.
	died chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	// joining: the node has members to join (--join or DataDir/peers), so its empty internal
	// partitions wait to be added instead of starting a cluster.
	joining bool
	// lastSeen: node id -> when it was last a live member; started: when this node started
	// (the last sighting assumed of nodes not seen since).
	lastSeen sync.Map
	started  time.Time
	// offsetsEpoch counts the leaders of __offsets this node saw (setLeader).
	offsetsEpoch atomic.Uint64
	// conflictLogged: the node names last logged as sharing this node's raft id.
	conflictLogged atomic.Pointer[string]
}

// nodeIDFile holds a node's raft id in its data directory.
const nodeIDFile = "node-id"

// loadNodeID returns the node's raft id: kept in DataDir/node-id, chosen at random at the first
// start of a clustered node. A node that ran alone before keeps id 1, the id its logs hold.
func loadNodeID(dir string, clustered bool) (uint64, error) {
	p := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || id == 0 {
			return 0, fmt.Errorf("node id file %s: %q is not a node id", p, strings.TrimSpace(string(b)))
		}
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return 0, err
	}
	id := uint64(1)
	if ents, _ := os.ReadDir(filepath.Join(dir, "meta")); clustered && len(ents) == 0 {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return 0, err
		}
		id = binary.BigEndian.Uint64(r[:])>>1 | 1<<32 // nonzero, and never 1
	}
	if err := vfs.WriteFileAtomic(vfs.OS, p, []byte(strconv.FormatUint(id, 10)+"\n")); err != nil {
		return 0, fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// drainingFile, in a node's data directory, marks it draining (SetDraining) across restarts.
const drainingFile = "draining"

// SetDraining marks the node as draining or not: a draining node's replicas move to other nodes
// and it is given no new ones. The mark is gossiped and kept in the data directory.
func (n *Node) SetDraining(on bool) error {
	if n.cluster == nil {
		return errors.New("drain: the node is not in a cluster (start it with --cluster and --gossip)")
	}
	p := filepath.Join(n.cfg.DataDir, drainingFile)
	var err error
	if on {
		err = vfs.WriteFileAtomic(vfs.OS, p, []byte("draining\n"))
	} else if err = os.Remove(p); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := n.cluster.members.Load().SetDraining(on); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	n.membersChanged()
	n.logger.Info("draining", "on", on)
	return nil
}

// peersFile remembers the gossip addresses of the members a node saw, so that a restarted node
// finds its cluster without --join.
const peersFile = "peers"

func (n *Node) startCluster() error {
	c := n.cfg.Cluster
	if c.MetaVoters <= 0 {
		c.MetaVoters = 3
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = DefaultDeadAfter
	}
	cs := &clusterState{cfg: *c, stop: make(chan struct{}), started: time.Now()}
	empty := map[uint64]cluster.Member{}
	cs.peers.Store(&empty)
	r, err := startRemote(n.system, c.RemoteAddr, c.TLS)
	if err != nil {
		return err
	}
	cs.remote = r
	n.cluster = cs
	seeds := append([]string(nil), c.Join...)
	if b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, peersFile)); err == nil {
		for _, s := range strings.Fields(string(b)) {
			if !slices.Contains(seeds, s) {
				seeds = append(seeds, s)
			}
		}
	}
	cs.joining = len(seeds) > 0
	_, err = os.Stat(filepath.Join(n.cfg.DataDir, drainingFile))
	draining := err == nil
	m, err := cluster.Start(cluster.MembershipConfig{
		Bind:      c.GossipAddr,
		Join:      seeds,
		Self:      cluster.Member{ID: n.raftID, Node: n.cfg.NodeID, Remote: n.system.Address(), Client: n.cfg.ClientAddr, Kafka: cmp.Or(n.cfg.KafkaAdvertise, n.cfg.KafkaAddr), Draining: draining},
		SecretKey: c.GossipKey,
		Fast:      true,
		OnChange:  n.membersChanged,
		Logger:    n.logger,
	})
	if err != nil {
		r.Shutdown(false)
		return err
	}
	cs.members.Store(m)
	n.membersChanged()
	cs.wg.Add(2)
	go n.clusterLoop()
	go n.rebalanceLoop()
	return nil
}

// clusterLoop tells __meta and __offsets the live members every second (their leaders add new
// nodes), and remembers the members' gossip addresses.
func (n *Node) clusterLoop() {
	cs := n.cluster
	defer cs.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var saved string
	for {
		select {
		case <-cs.stop:
			return
		case <-t.C:
		}
		n.membersChanged()
		var addrs []string
		for _, mb := range cs.members.Load().Members() {
			if mb.ID != n.raftID && mb.Gossip != "" {
				addrs = append(addrs, mb.Gossip)
			}
		}
		slices.Sort(addrs)
		if s := strings.Join(addrs, "\n"); s != saved && s != "" {
			if err := vfs.WriteFileAtomic(vfs.OS, filepath.Join(n.cfg.DataDir, peersFile), []byte(s+"\n")); err == nil {
				saved = s
			}
		}
	}
}

// membersChanged refreshes the address book from gossip, fails the requests waiting on nodes
// that died (await), and tells __meta and __offsets the live nodes. It runs when gossip reports
// a change and every second.
func (n *Node) membersChanged() {
	cs := n.cluster
	if cs == nil {
		return
	}
	ms := cs.members.Load()
	if ms == nil {
		return
	}
	if names, ok := ms.Conflicts()[n.raftID]; ok {
		if s := strings.Join(names, ","); func() bool { old := cs.conflictLogged.Swap(&s); return old == nil || *old != s }() {
			n.logger.Error("nodes with one raft id are in this cluster: they corrupt each other's replicas; stop one and start it on an empty data directory",
				"id", n.raftID, "nodes", names)
		}
	}
	cs.goneMu.Lock()
	m := map[uint64]cluster.Member{}
	now := time.Now()
	for _, mb := range ms.Members() {
		m[mb.ID] = mb
		cs.names.Store(mb.ID, mb.Node)
		cs.lastSeen.Store(mb.ID, now)
	}
	live := map[string]string{} // remote address -> boot
	for _, mb := range m {
		live[mb.Remote] = mb.Name
	}
	// A node counts as dead when its boot is gone: also when it was restarted (on the same
	// address) before gossip declared the old boot dead.
	for id, old := range *cs.peers.Load() {
		if now, ok := m[id]; (!ok || now.Name != old.Name) && cs.died != nil {
			close(cs.died)
			cs.died = nil
			break
		}
	}
	for addr, w := range cs.gone {
		if live[addr] != w.boot {
			close(w.ch)
			delete(cs.gone, addr)
		}
	}
	cs.peers.Store(&m)
	cs.goneMu.Unlock()
	n.pushMembers()
}

// pushMembers sends the internal partitions the membership they should have: every live node
// a member, up to MetaVoters of them voting (not draining ones, while others can vote); a
// member away for longer than DeadAfter is replaced and removed.
func (n *Node) pushMembers() {
	cs := n.cluster
	if cs == nil {
		return
	}
	m := &growMembers{maxVoters: cs.cfg.MetaVoters}
	for id, mb := range *cs.peers.Load() {
		m.live = append(m.live, id)
		if mb.Draining {
			m.draining = append(m.draining, id)
		}
	}
	slices.Sort(m.live)
	now := time.Now()
	m.unknownRecent = now.Sub(cs.started) < cs.cfg.DeadAfter
	cs.lastSeen.Range(func(k, v any) bool {
		if id := k.(uint64); !slices.Contains(m.live, id) && now.Sub(v.(time.Time)) < cs.cfg.DeadAfter {
			m.recent = append(m.recent, id)
		} else if !slices.Contains(m.live, id) {
			m.gone = append(m.gone, id)
		}
		return true
	})
	for _, name := range []string{"meta", "offsets"} {
		n.system.Root.Send(n.childPID(name), m)
	}
}

// growMembers asks an internal partition's leader to move towards: every live node a member,
// maxVoters voting. Voters stay voters unless they drain (and another node can vote instead)
// or are gone: away past DeadAfter, or, when unknownRecent is false, not seen at all since this
// node started more than DeadAfter ago. Recent: away less than DeadAfter (kept as they are).
type growMembers struct {
	live, draining, recent, gone []uint64
	unknownRecent                bool
	maxVoters                    int
}

func (r *replica) growMembers(ctx actor.Context, m *growMembers) {
	if r.rn == nil || r.lead != r.cfg.ID {
		return
	}
	if t := m.target(r.voters, r.learners); t != nil {
		r.target = t
		r.driveMembership(ctx)
	}
}

// target is the membership an internal partition with these voters and learners should move
// to (nil: none can vote).
func (m *growMembers) target(voters, learners []uint64) *SetMembers {
	isGone := func(id uint64) bool {
		if slices.Contains(m.live, id) || slices.Contains(m.recent, id) {
			return false
		}
		return slices.Contains(m.gone, id) || !m.unknownRecent
	}
	usable := func(id uint64) bool { return slices.Contains(m.live, id) && !slices.Contains(m.draining, id) }
	t := &SetMembers{}
	for _, id := range voters { // voters that may go on voting
		if !isGone(id) && (usable(id) || !slices.Contains(m.live, id)) {
			t.Voters = append(t.Voters, id)
		}
	}
	for _, id := range m.live { // then live nodes that may vote
		if len(t.Voters) < m.maxVoters && usable(id) && !slices.Contains(t.Voters, id) {
			t.Voters = append(t.Voters, id)
		}
	}
	for _, id := range voters { // draining voters only if no one else can vote
		if len(t.Voters) < m.maxVoters && !isGone(id) && !slices.Contains(t.Voters, id) {
			t.Voters = append(t.Voters, id)
		}
	}
	for _, id := range sortedUnion(learners, m.live) {
		if !isGone(id) && !slices.Contains(t.Voters, id) {
			t.Learners = append(t.Learners, id)
		}
	}
	if len(t.Voters) == 0 {
		return nil
	}
	return t
}

// peerAddr is a node's remote address, "" if it is not a live member.
func (n *Node) peerAddr(id uint64) string {
	if n.cluster == nil {
		return ""
	}
	if mb, ok := (*n.cluster.peers.Load())[id]; ok {
		return mb.Remote
	}
	return ""
}

// nodeName is a node's name for people.
func (n *Node) nodeName(id uint64) string {
	if id == n.raftID {
		return n.cfg.NodeID
	}
	if n.cluster != nil {
		if v, ok := n.cluster.names.Load(id); ok {
			return v.(string)
		}
	}
	return fmt.Sprintf("node#%d", id)
}

// setLeader records the leader this node's replica of group saw.
func (n *Node) setLeader(group string, lead uint64) {
	if n.cluster != nil {
		if old, _ := n.cluster.leaders.Swap(group, lead); group == partitionGroup(OffsetsTopic, 0) && old != lead && lead != 0 {
			// Coordinators follow __offsets' leader and stop when it moves: a coordinator
			// remembered from before may be gone (coordinatorFor).
			n.cluster.offsetsEpoch.Add(1)
		}
	}
}

// leaderOf is the leader of group as this node's replica last saw it (0: unknown).
func (n *Node) leaderOf(group string) uint64 {
	if n.cluster == nil {
		return 0
	}
	if v, ok := n.cluster.leaders.Load(group); ok {
		return v.(uint64)
	}
	return 0
}

// internalPID is the PID of an internal partition's leader replica ("meta", "offsets"), or of
// this node's replica when the leader is unknown or this node leads.
func (n *Node) internalPID(name string) *actor.PID {
	group := partitionGroup(MetaTopic, 0)
	if name == "offsets" {
		group = partitionGroup(OffsetsTopic, 0)
	}
	if lead := n.leaderOf(group); lead != 0 && lead != n.raftID {
		if addr := n.peerAddr(lead); addr != "" {
			return actor.NewPID(addr, rootName+"/"+name)
		}
	}
	return n.childPID(name)
}

// clusterReplica fills in the cluster fields of a replica config.
func (n *Node) clusterReplica(c *ReplicaConfig) {
	c.ID = n.raftID
	if n.cluster == nil {
		return
	}
	c.Transport = &raftTransport{peers: n.peerAddr}
	c.PeerAddr = n.peerAddr
	group := c.Group()
	c.OnLeader = func(lead uint64) { n.setLeader(group, lead) }
}

func (n *Node) stopCluster() {
	cs := n.cluster
	if cs == nil {
		return
	}
	close(cs.stop)
	cs.wg.Wait()
	if ms := cs.members.Load(); ms != nil {
		_ = ms.Leave(time.Second)
	}
}

func (n *Node) stopRemote() {
	if n.cluster != nil && n.cluster.remote != nil {
		n.cluster.remote.Shutdown(false)
	}
}

// Members lists the live members of the node's cluster (only itself when it runs alone).
func (n *Node) Members() []cluster.Member {
	if n.cluster == nil {
		return []cluster.Member{{ID: n.raftID, Node: n.cfg.NodeID, Client: n.ClientAddr(), Kafka: n.KafkaAddr()}}
	}
	return n.cluster.members.Load().Members()
}

// Clustered reports whether the node is a cluster member.
func (n *Node) Clustered() bool { return n.cluster != nil }

// RaftID is the node's id in raft groups.
func (n *Node) RaftID() uint64 { return n.raftID }

// goneWatch is a channel closed when the boot of a node at an address is gone.
type goneWatch struct {
	boot string
	ch   chan struct{}
}

// goneCh returns a channel closed once the boot of the member now at remote address addr is
// gone (at once if no live member has it).
func (n *Node) goneCh(addr string) <-chan struct{} {
	cs := n.cluster
	cs.goneMu.Lock()
	defer cs.goneMu.Unlock()
	if w, ok := cs.gone[addr]; ok {
		return w.ch
	}
	ch := make(chan struct{})
	boot := ""
	for _, mb := range *cs.peers.Load() {
		if mb.Remote == addr {
			boot = mb.Name
		}
	}
	if boot == "" {
		close(ch)
		return ch
	}
	if cs.gone == nil {
		cs.gone = map[string]goneWatch{}
	}
	cs.gone[addr] = goneWatch{boot: boot, ch: ch}
	return ch
}

// errNodeGone answers a request whose node died before it answered.
var errNodeGone = errors.New("the node died before it answered")

// diedCh returns a channel closed when the next member dies.
func (n *Node) diedCh() <-chan struct{} {
	cs := n.cluster
	cs.goneMu.Lock()
	defer cs.goneMu.Unlock()
	if cs.died == nil {
		cs.died = make(chan struct{})
	}
	return cs.died
}

// watch returns, for a request about to be sent to pid (for the partition group, "" if none),
// a channel closed when its answer can no longer come: in a cluster, when the boot of pid's
// node is gone (gossip notices within about a second), or, for this node's replica that does
// not lead group (it may forward the request to a leader elsewhere), when any node dies. Nil:
// nothing to watch. Taken before sending, so that a death in between is not missed.
func (n *Node) watch(pid *actor.PID, group string) <-chan struct{} {
	switch {
	case n.cluster == nil:
		return nil
	case isRemote(n.system, pid):
		return n.goneCh(pid.Address)
	case group != "" && n.leaderOf(group) == n.raftID:
		return nil
	}
	return n.diedCh()
}

// errNodeClosed answers a request still waiting when its node has stopped its actors.
var errNodeClosed = errors.New("the node closed before it answered")

// nodeClosed is the answer Close gives the futures await waits on without a goroutine.
type nodeClosed struct{}

// await waits for the answer to a request, or fails when gone (from watch) is closed first:
// the request may have been carried out, which a producer's retry must tolerate. It also fails
// once the node has stopped its actors: a request that reached an actor as it stopped is dropped
// without an answer, and would otherwise wait out its whole timeout while the node closes.
//
// Without gone it waits on the future itself, with no goroutine in between (the answer of a
// produce is on its connection's critical path); Close answers such futures nodeClosed.
func (n *Node) await(f *actor.Future, pid *actor.PID, gone <-chan struct{}) (any, error) {
	if gone == nil {
		n.awaitMu.Lock()
		if n.closedAwaits {
			n.awaitMu.Unlock()
			return nil, fmt.Errorf("%s: %w", pid.Id, errNodeClosed)
		}
		if n.awaiting == nil {
			n.awaiting = map[*actor.Future]struct{}{}
		}
		n.awaiting[f] = struct{}{}
		n.awaitMu.Unlock()
		res, err := resultOf(f)
		n.awaitMu.Lock()
		delete(n.awaiting, f)
		n.awaitMu.Unlock()
		if _, ok := res.(nodeClosed); ok {
			return nil, fmt.Errorf("%s: %w", pid.Id, errNodeClosed)
		}
		return res, err
	}
	type result struct {
		res any
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := resultOf(f)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-gone:
		return nil, fmt.Errorf("%s at %s: %w", pid.Id, pid.Address, errNodeGone)
	case <-n.actorsDone:
		return nil, fmt.Errorf("%s: %w", pid.Id, errNodeClosed)
	}
}
