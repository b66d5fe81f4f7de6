package actors

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster"
)

// Moving replicas. The node that leads __meta places every topic again every rebalanceEvery
// (cluster.Place, in metaState.rebalance): replicas move to a new node, off a draining node and
// off a node dead for longer than DeadAfter. A partition whose raft group has not reached its
// assignment yet (a move in progress) keeps its assignment, so each partition moves one replica
// at a time. Every node's root then acts on the assignments __meta commits:
//   - it spawns the replicas assigned to it; one of a moved partition starts empty and waits for
//     the group's leader to add it (ReplicaConfig.Join);
//   - it tells its replicas of moved partitions the membership to reach (SetMembers), again every
//     rootTickEvery, since a replica restarted by its supervisor forgets it; the leader adds the
//     new replica as a learner, promotes it once it has caught up, then removes the old one;
//   - a replica that is not assigned to its node and that the group's leader does not count as
//     a member is stopped and its data deleted. This is checked when the replica applies a
//     configuration without itself (OnRemoved), and every rootTickEvery (a node that was down
//     while its replica was removed). The leader is asked because a replica that joins replays
//     the group's past configurations, which may have removed an earlier replica of its node.

const (
	// rebalanceEvery is how often the node leading __meta places replicas again.
	rebalanceEvery = 3 * time.Second
	// rootTickEvery is how often a node repeats the membership its replicas should reach and
	// looks for replicas of its own that their groups no longer count.
	rootTickEvery = 2 * time.Second
	// DefaultDeadAfter is how long a node may be away before its replicas are re-created
	// elsewhere (ClusterConfig.DeadAfter).
	DefaultDeadAfter = time.Minute
)

// rootTick is the root's periodic message.
type rootTick struct{}

// dropReplica asks the root to stop a replica of its node and delete its data: the group
// removed it (checkRemoved). The topic's id guards against a topic created again under the name.
type dropReplica struct {
	Topic     string
	TopicID   int64
	Partition int32
	Why       string
}

// rebalanceLoop runs on every clustered node and works while the node leads __meta.
func (n *Node) rebalanceLoop() {
	cs := n.cluster
	defer cs.wg.Done()
	t := time.NewTicker(rebalanceEvery)
	defer t.Stop()
	for {
		select {
		case <-cs.stop:
			return
		case <-t.C:
		}
		if n.leaderOf(partitionGroup(MetaTopic, 0)) != n.raftID {
			continue
		}
		if err := n.rebalance(); err != nil {
			n.logger.Warn("rebalance", "err", err)
		}
	}
}

// rebalance finds the partitions whose moves are not done and asks __meta to place the others.
func (n *Node) rebalance() error {
	n.mu.RLock()
	metas := make([]TopicMeta, 0, len(n.topics))
	for _, t := range n.topics {
		metas = append(metas, t.meta)
	}
	n.mu.RUnlock()
	unsettled := map[string][]int32{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	stopped := func() bool {
		select {
		case <-n.cluster.stop:
			return true
		default:
			return false
		}
	}
	for _, tm := range metas {
		for p := int32(0); p < tm.Partitions && !stopped(); p++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if n.moving(tm, p) {
					mu.Lock()
					unsettled[tm.Name] = append(unsettled[tm.Name], p)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if stopped() {
		return nil
	}
	res, err := resultOf(n.rc.RequestFuture(n.childPID("meta"), &Rebalance{Unsettled: unsettled}, 10*time.Second))
	if err != nil {
		return err
	}
	if r, ok := res.(*ProduceReply); ok && r.Err != nil {
		return r.Err
	}
	return nil
}

// moving reports whether a partition's replicas are moving: its group has no leader, or its
// members differ from its assignment while every assigned node it does not count as a voter yet
// may still join (a node away past DeadAfter will not: placement may then replace it).
func (n *Node) moving(tm TopicMeta, p int32) bool {
	st := n.groupStatus(tm, p)
	if st == nil {
		return true
	}
	asg := tm.replicasOf(p)
	if len(st.Learners) == 0 && sameNodes(st.Voters, asg) {
		return false
	}
	for _, id := range asg {
		if !slices.Contains(st.Voters, id) && n.gone(id) {
			return false
		}
	}
	return true
}

// gone reports whether a node has been away for longer than DeadAfter.
func (n *Node) gone(id uint64) bool {
	cs := n.cluster
	if _, ok := (*cs.peers.Load())[id]; ok {
		return false
	}
	seen := cs.started
	if v, ok := cs.lastSeen.Load(id); ok {
		seen = v.(time.Time)
	}
	return time.Since(seen) >= cs.cfg.DeadAfter
}

// groupStatus asks a partition's leader for its status: found through this node's replica or
// any live assigned one. Nil if no leader answers.
func (n *Node) groupStatus(tm TopicMeta, p int32) *Status {
	name := fmt.Sprintf("%s/partition/%s/%d", rootName, tm.Name, p)
	var pids []*actor.PID
	if lead := n.leaderOf(partitionGroup(tm.Name, p)); lead != 0 {
		if lead == n.raftID {
			pids = append(pids, n.childPID(fmt.Sprintf("partition/%s/%d", tm.Name, p)))
		} else if addr := n.peerAddr(lead); addr != "" {
			pids = append(pids, actor.NewPID(addr, name))
		}
	}
	for _, id := range tm.replicasOf(p) {
		if addr := n.peerAddr(id); addr != "" && id != n.raftID {
			pids = append(pids, actor.NewPID(addr, name))
		}
	}
	for tries := 0; tries < 3 && len(pids) > 0; tries++ {
		pid := pids[0]
		pids = pids[1:]
		res, err := resultOf(n.rc.RequestFuture(pid, &GetStatus{}, 2*time.Second))
		st, ok := res.(*Status)
		if err != nil || !ok || st.Err != nil {
			continue
		}
		if st.Leader == st.NodeID {
			return st
		}
		if addr := n.peerAddr(st.Leader); st.Leader != 0 && addr != "" {
			pids = append([]*actor.PID{actor.NewPID(addr, name)}, pids...)
		}
	}
	return nil
}

// partitionDir is where this node keeps a replica of partition p.
func (n *Node) partitionDir(tm TopicMeta, p int32) string {
	return filepath.Join(n.cfg.DataDir, "topics", tm.Dir(), fmt.Sprint(p))
}

// hasReplicaData reports whether this node holds data of partition p (a replica it ran
// before), so that it runs that replica even if it is no longer assigned here: the group may
// still count it until the move is done.
func (n *Node) hasReplicaData(tm TopicMeta, p int32) bool {
	ents, err := os.ReadDir(n.partitionDir(tm, p))
	return err == nil && len(ents) > 0
}

// spawnReplica starts this node's replica of partition p.
func (a *rootActor) spawnReplica(ctx actor.Context, tm TopicMeta, p int32) (*actor.PID, error) {
	n := a.n
	c := n.topicReplicaConfig(tm, p, n.partitionDir(tm, p))
	c.Peers = tm.replicasOf(p)
	c.Join = tm.moved(p)
	if n.cluster != nil {
		root := ctx.Self()
		system := ctx.ActorSystem()
		name, id := tm.Name, tm.ID
		c.OnRemoved = func() {
			system.Root.Send(root, &checkRemoved{Topic: name, TopicID: id, Partition: p})
		}
	}
	name := fmt.Sprintf("partition/%s/%d", tm.Name, p)
	n.sup.forget(rootName + "/" + name)
	return ctx.SpawnNamed(n.props(NewReplicaProps(c)), name)
}

// updateTopic takes a topic's new assignment: replicas newly assigned here start, and every
// replica here of a moved partition is told the membership to reach.
func (a *rootActor) updateTopic(ctx actor.Context, run *topicEntry, tm TopicMeta) *topicEntry {
	n := a.n
	next := &topicEntry{meta: tm, pids: slices.Clone(run.pids)}
	for p := int32(0); p < tm.Partitions; p++ {
		if next.pids[p] == nil && slices.Contains(tm.replicasOf(p), n.raftID) && !a.dropping[partitionGroup(tm.Name, p)] {
			pid, err := a.spawnReplica(ctx, tm, p)
			if err != nil {
				n.logger.Error("spawn partition", "topic", tm.Name, "partition", p, "err", err)
				continue
			}
			next.pids[p] = pid
			n.logger.Info("replica assigned to this node", "topic", tm.Name, "partition", p, "replicas", tm.replicasOf(p))
		}
	}
	a.steer(ctx, next)
	return next
}

// steer tells this node's replicas of a topic's moved partitions the membership to reach.
func (a *rootActor) steer(ctx actor.Context, run *topicEntry) {
	for p, pid := range run.pids {
		if pid != nil && run.meta.moved(int32(p)) {
			ctx.Send(pid, &SetMembers{Voters: run.meta.replicasOf(int32(p))})
		}
	}
}

// checkRemoved asks the root to check whether a replica of its node is still a member of its
// group (its OnRemoved fired).
type checkRemoved struct {
	Topic     string
	TopicID   int64
	Partition int32
}

// tick repeats the memberships to reach and checks the replicas of this node that are not
// assigned to it.
func (a *rootActor) tick(ctx actor.Context) {
	if a.n.cluster == nil {
		return
	}
	for _, run := range a.running {
		a.steer(ctx, run)
		for p := range run.pids {
			a.checkOrphan(ctx, run, int32(p))
		}
	}
}

// checkOrphan asks, for a replica of this node that is not assigned to it, whether its group's
// leader still counts it; if not, the replica is dropped (dropReplica). One check per partition
// runs at a time.
func (a *rootActor) checkOrphan(ctx actor.Context, run *topicEntry, p int32) {
	n := a.n
	key := partitionGroup(run.meta.Name, p)
	if run.pids[p] == nil || slices.Contains(run.meta.replicasOf(p), n.raftID) || a.orphanChecks[key] {
		return
	}
	a.orphanChecks[key] = true
	root := ctx.Self()
	system := ctx.ActorSystem()
	tm := run.meta
	go func() {
		defer system.Root.Send(root, &orphanChecked{key: key})
		st := n.groupStatus(tm, p)
		if st == nil || slices.Contains(st.Voters, n.raftID) || slices.Contains(st.Learners, n.raftID) {
			return
		}
		system.Root.Send(root, &dropReplica{Topic: tm.Name, TopicID: tm.ID, Partition: p,
			Why: fmt.Sprintf("not assigned here, and leader %s counts %v", n.nodeName(st.Leader), st.Voters)})
	}()
}

// orphanChecked ends an orphan check of a partition ("topic/p").
type orphanChecked struct{ key string }

// drop stops a replica that its group's leader no longer counted, then asks the leader again:
// stopped, the replica can no longer be counted anew (re-added and acknowledging entries) behind
// the check's back. Its data is deleted only if the leader still does not count it
// (dropChecked); else it starts again on its data.
func (a *rootActor) drop(ctx actor.Context, m *dropReplica) {
	n := a.n
	run, ok := a.running[m.Topic]
	if !ok || run.meta.ID != m.TopicID || int(m.Partition) >= len(run.pids) || run.pids[m.Partition] == nil ||
		slices.Contains(run.meta.replicasOf(m.Partition), n.raftID) {
		return
	}
	next := &topicEntry{meta: run.meta, pids: slices.Clone(run.pids)}
	ctx.StopFuture(next.pids[m.Partition]).Wait()
	next.pids[m.Partition] = nil
	n.metrics.deletePartition(m.Topic, m.Partition)
	a.publish(m.Topic, next)
	key := partitionGroup(m.Topic, m.Partition)
	a.dropping[key] = true
	root := ctx.Self()
	system := ctx.ActorSystem()
	tm := run.meta
	go func() {
		st := n.groupStatus(tm, m.Partition)
		gone := st != nil && !slices.Contains(st.Voters, n.raftID) && !slices.Contains(st.Learners, n.raftID)
		system.Root.Send(root, &dropChecked{dropReplica: *m, gone: gone})
	}()
}

// dropChecked is the second check of a stopped replica (drop): gone, the group's leader still
// does not count it.
type dropChecked struct {
	dropReplica
	gone bool
}

// dropped deletes a stopped replica's data, or starts it again.
func (a *rootActor) dropped(ctx actor.Context, m *dropChecked) {
	n := a.n
	delete(a.dropping, partitionGroup(m.Topic, m.Partition))
	run, ok := a.running[m.Topic]
	if !ok || run.meta.ID != m.TopicID || int(m.Partition) >= len(run.pids) || run.pids[m.Partition] != nil {
		return // the topic was deleted (with its data) or created again
	}
	if m.gone && !slices.Contains(run.meta.replicasOf(m.Partition), n.raftID) {
		dir := n.partitionDir(run.meta, m.Partition)
		if err := os.RemoveAll(dir); err != nil {
			n.logger.Error("delete a removed replica's data", "dir", dir, "err", err)
		}
		n.logger.Info("replica removed from this node", "topic", m.Topic, "partition", m.Partition, "why", m.Why)
		return
	}
	pid, err := a.spawnReplica(ctx, run.meta, m.Partition)
	if err != nil {
		n.logger.Error("spawn partition", "topic", m.Topic, "partition", m.Partition, "err", err)
		return
	}
	next := &topicEntry{meta: run.meta, pids: slices.Clone(run.pids)}
	next.pids[m.Partition] = pid
	a.publish(m.Topic, next)
}

// publish replaces a running topic's entry, in the root's table and the node's.
func (a *rootActor) publish(name string, run *topicEntry) {
	a.running[name] = run
	a.n.mu.Lock()
	a.n.topics[name] = run
	a.n.mu.Unlock()
}

// placementNodes lists the nodes placement may use: the live members, and the nodes the
// assignments name that left less than DeadAfter ago (Down: they keep their replicas).
func (n *Node) placementNodes(referenced []uint64) []cluster.NodeState {
	cs := n.cluster
	var out []cluster.NodeState
	live := *cs.peers.Load()
	for _, mb := range live {
		out = append(out, cluster.NodeState{ID: mb.ID, Live: true, Draining: mb.Draining})
	}
	for _, id := range referenced {
		if _, ok := live[id]; ok { // referenced is sorted and without repeats
			continue
		}
		if !n.gone(id) {
			out = append(out, cluster.NodeState{ID: id, Live: true, Down: true})
		}
	}
	return out
}
