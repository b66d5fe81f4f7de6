package actors

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// A replica's group membership moves by raft configuration changes that its leader proposes,
// one at a time, towards the target the node gave it (SetMembers): a new member joins as a
// learner (it receives the log but does not vote), is promoted to voter once it has caught up,
// and only then are members that are no longer wanted removed, the leader itself last.

// confChangeWait is how long the leader waits for a proposed configuration change to be applied
// before it proposes again (raft may have dropped it).
const confChangeWait = 5 * time.Second

// caughtUpEntries is how far behind the leader's commit index a learner that acknowledged
// appends (raft's replicate state) may be and still be promoted to voter.
const caughtUpEntries = 16

// driveMembership proposes the next configuration change towards the target, if this replica
// leads, no change is in flight, and the group is not there yet.
func (r *replica) driveMembership(ctx actor.Context) {
	t := r.target
	if t == nil || r.rn == nil || r.lead != r.cfg.ID || time.Now().Before(r.confPendingUntil) {
		return
	}
	if len(t.Voters) == 0 {
		return // never leave a group without voters
	}
	want := func(id uint64) bool { return slices.Contains(t.Voters, id) || slices.Contains(t.Learners, id) }
	member := func(id uint64) bool { return slices.Contains(r.voters, id) || slices.Contains(r.learners, id) }
	var cc *pb.ConfChange
	// 1. Add every wanted node as a learner first.
	for _, id := range sortedUnion(t.Voters, t.Learners) {
		if !member(id) {
			cc = confChange(pb.ConfChangeAddLearnerNode, id)
			break
		}
	}
	// 2. Promote learners that are to vote, once caught up.
	if cc == nil {
		var st *raft.Status // only when a learner is to be promoted: it copies every progress
		for _, id := range t.Voters {
			if !slices.Contains(r.learners, id) {
				continue
			}
			if st == nil {
				s := r.rn.Status()
				st = &s
			}
			if pr, ok := st.Progress[id]; ok && pr.State == tracker.StateReplicate && pr.Match > 0 && pr.Match+caughtUpEntries >= st.HardState.GetCommit() {
				cc = confChange(pb.ConfChangeAddNode, id)
				break
			}
		}
	}
	// 3. Demote voters that are to be learners, then remove the unwanted; this leader last.
	if cc == nil {
		for _, id := range r.voters {
			if id != r.cfg.ID && slices.Contains(t.Learners, id) && !slices.Contains(t.Voters, id) {
				cc = confChange(pb.ConfChangeAddLearnerNode, id)
				break
			}
		}
	}
	if cc == nil {
		for _, id := range sortedUnion(r.voters, r.learners) {
			if id != r.cfg.ID && !want(id) {
				cc = confChange(pb.ConfChangeRemoveNode, id)
				break
			}
		}
	}
	if cc == nil && !want(r.cfg.ID) && len(r.voters) > 1 {
		cc = confChange(pb.ConfChangeRemoveNode, r.cfg.ID)
	}
	if cc == nil && slices.Contains(t.Learners, r.cfg.ID) && !slices.Contains(t.Voters, r.cfg.ID) && slices.Contains(r.voters, r.cfg.ID) {
		// This leader is to stop voting: it hands leadership to a caught-up voter, which
		// then demotes it (a leader does not demote itself).
		r.transferLeadership(ctx, t.Voters)
		return
	}
	if cc == nil {
		return
	}
	// Removing a voter must leave a group whose majority is among the wanted voters' caught-up
	// members: only remove when every wanted voter already votes.
	if cc.GetType() == pb.ConfChangeRemoveNode && slices.Contains(r.voters, cc.GetNodeId()) {
		for _, id := range t.Voters {
			if !slices.Contains(r.voters, id) {
				return
			}
		}
	}
	if err := r.rn.ProposeConfChange(cc); err != nil {
		r.cfg.Logger.Warn("configuration change refused", "group", r.cfg.Group(), "change", cc.GetType().String(), "node", cc.GetNodeId(), "err", err)
		return
	}
	r.confPendingUntil = time.Now().Add(confChangeWait)
	r.cfg.Logger.Info("configuration change proposed", "group", r.cfg.Group(), "change", cc.GetType().String(), "node", cc.GetNodeId())
	r.queueReady(ctx)
}

// transferLeadership hands leadership to the most caught-up of the given voters, once every
// wanted voter votes (so that the new leader is one of them).
func (r *replica) transferLeadership(ctx actor.Context, to []uint64) {
	st := r.rn.Status()
	best, match := uint64(0), uint64(0)
	for _, id := range to {
		if !slices.Contains(r.voters, id) || id == r.cfg.ID {
			if id != r.cfg.ID {
				return // a wanted voter does not vote yet
			}
			continue
		}
		if pr, ok := st.Progress[id]; ok && pr.State == tracker.StateReplicate && pr.Match >= match {
			best, match = id, pr.Match
		}
	}
	if best == 0 || st.LeadTransferee != 0 {
		return
	}
	r.cfg.Logger.Info("handing leadership over", "group", r.cfg.Group(), "to", best)
	r.rn.TransferLeader(best)
	r.confPendingUntil = time.Now().Add(confChangeWait)
	r.queueReady(ctx)
}

func sortedUnion(a, b []uint64) []uint64 {
	out := append(append([]uint64(nil), a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// forward sends a request that reached a follower on to its leader's replica, keeping the
// original sender so that the leader answers it directly. A request is forwarded once at most.
func (r *replica) forward(ctx actor.Context, forwarded *bool) bool {
	if r.rn == nil || r.lead == 0 || r.lead == r.cfg.ID || *forwarded || r.cfg.PeerAddr == nil {
		return false
	}
	addr := r.cfg.PeerAddr(r.lead)
	if addr == "" {
		return false
	}
	*forwarded = true
	ctx.Forward(actor.NewPID(addr, ctx.Self().Id))
	return true
}

func confChange(t pb.ConfChangeType, id uint64) *pb.ConfChange {
	return &pb.ConfChange{Type: &t, NodeId: &id}
}
