package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Flow actors in a cluster. Every node runs the same program, so every node defines the same
// flows (flow.Runtime calls RunFlow); __meta records which nodes define each flow actor and
// places it on one of them (metaState.placeFlows): it stays there while that node is usable,
// and moves to another when the node is draining or away for longer than DeadAfter. A moved
// sink resumes from its group's committed offsets and a moved source from its committed
// position (both in __offsets). A bound source (reading the node's own files) stays on the
// node that defined it first and resumes when that node comes back. Alone, a node runs every
// flow it defines.
//
// A node starts a flow placed on it only once the __meta leader's table confirms the placement
// (its own table may be stale after a restart, and the flow may run elsewhere meanwhile); it
// stops one as soon as its own table places it elsewhere. A node placed a flow it does not
// define (its program changed), or whose actor its supervisor gave up on, withdraws.

// flowDef is a flow actor this node defines.
type flowDef struct {
	props *actor.Props
	stop  chan struct{} // closed by StopFlow: the registration gives up
	done  chan struct{} // closed when the registration has ended
}

// flowsChanged tells the root that the flows this node defines changed.
type flowsChanged struct{}

// flowsConfirmed carries the __meta leader's flow table (reconcileFlows).
type flowsConfirmed struct{ flows []FlowMeta }

// RunFlow defines a flow actor named id (a root child: "flow/<name>/source" or
// "flow/<name>/sink"). Alone, the node runs it at once and returns its PID. In a cluster it
// runs wherever __meta places it, perhaps on another node: the PID returned is nil, and
// registering the node as a candidate goes on in the background until __meta takes it.
func (n *Node) RunFlow(id string, props *actor.Props, bound bool) (*actor.PID, error) {
	if n.cluster == nil {
		return n.Spawn(id, props)
	}
	d := flowDef{props: props, stop: make(chan struct{}), done: make(chan struct{})}
	n.mu.Lock()
	if n.flowDefs == nil {
		n.flowDefs = map[string]flowDef{}
	}
	if _, ok := n.flowDefs[id]; ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("actor %q already runs", id)
	}
	n.flowDefs[id] = d
	n.mu.Unlock()
	n.system.Root.Send(n.root, flowsChanged{})
	n.cluster.wg.Add(1)
	go func() {
		defer n.cluster.wg.Done()
		defer close(d.done)
		n.registerFlow(&RegisterFlow{ID: id, Node: n.raftID, Bound: bound}, d.stop, 0)
	}()
	return nil, nil
}

// StopFlow undefines a flow actor of RunFlow: it stops here, and __meta is told (one attempt,
// of up to 2 s) that this node no longer defines it, so that another candidate takes it over.
func (n *Node) StopFlow(id string) {
	n.mu.Lock()
	d, ok := n.flowDefs[id]
	delete(n.flowDefs, id)
	n.mu.Unlock()
	if !ok {
		return
	}
	close(d.stop)
	<-d.done // the registration is over: the withdrawal follows it
	_, _ = n.system.Root.RequestFuture(n.root, flowsChanged{}, 30*time.Second).Result()
	n.registerFlow(&RegisterFlow{ID: id, Node: n.raftID, Withdraw: true}, nil, 2*time.Second)
}

// registerFlow sends a flow registration to __meta until it is committed, stop is closed, the
// node stops, or the timeout (if not 0) passes.
func (n *Node) registerFlow(m *RegisterFlow, stop <-chan struct{}, timeout time.Duration) {
	start := time.Now()
	for {
		wait := 5 * time.Second
		if timeout > 0 {
			wait = min(wait, timeout)
		}
		res, err := resultOf(n.rc.RequestFuture(n.internalPID("meta"), m, wait))
		if r, ok := res.(*ProduceReply); ok && r.Err != nil {
			err = r.Err
		}
		if err == nil {
			return
		}
		if timeout > 0 && time.Since(start) >= timeout {
			n.logger.Warn("flow registration not committed", "flow", m.ID, "withdraw", m.Withdraw, "err", err)
			return
		}
		select {
		case <-stop:
			return
		case <-n.cluster.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// reconcileFlows stops the flow actors this node's table places elsewhere, and asks the __meta
// leader for its table before starting those placed here (flowsConfirmed).
func (a *rootActor) reconcileFlows(ctx actor.Context) {
	n := a.n
	if n.cluster == nil {
		return
	}
	defs := a.flowDefs()
	want := map[string]bool{}
	for _, f := range a.flowTable {
		if f.Node != n.raftID {
			delete(a.withdrawn, f.ID) // placed elsewhere: a later placement here is a fresh one
			continue
		}
		if _, ok := defs[f.ID]; ok && !a.withdrawn[f.ID] {
			want[f.ID] = true
		} else if !ok && !a.withdrawn[f.ID] {
			a.withdraw(ctx, f.ID, "placed here, not defined here")
		}
	}
	for id, pid := range a.flowPIDs {
		if !want[id] {
			a.stopping[pid.Id] = true
			ctx.StopFuture(pid).Wait()
			delete(a.flowPIDs, id)
			n.logger.Info("flow stopped here", "flow", id)
		}
	}
	start := false
	for id := range want {
		if _, ok := a.flowPIDs[id]; !ok {
			start = true
		}
	}
	if !start || a.confirming {
		return
	}
	a.confirming = true
	root := ctx.Self()
	system := ctx.ActorSystem()
	go func() {
		var flows []FlowMeta
		if lead := n.leaderOf(partitionGroup(MetaTopic, 0)); lead != 0 {
			res, err := resultOf(n.rc.RequestFuture(n.internalPID("meta"), &ListTopics{Leader: true}, 5*time.Second))
			if t, ok := res.(*Topics); err == nil && ok {
				flows = t.Flows
			}
		}
		system.Root.Send(root, &flowsConfirmed{flows: flows})
	}()
}

// startConfirmed starts the flows that both this node's table and the leader's place here.
func (a *rootActor) startConfirmed(ctx actor.Context, m *flowsConfirmed) {
	n := a.n
	a.confirming = false
	defs := a.flowDefs()
	leader := map[string]uint64{}
	for _, f := range m.flows {
		leader[f.ID] = f.Node
	}
	for _, f := range a.flowTable {
		d, ok := defs[f.ID]
		if !ok || f.Node != n.raftID || leader[f.ID] != n.raftID || a.withdrawn[f.ID] {
			continue
		}
		if _, ok := a.flowPIDs[f.ID]; ok {
			continue
		}
		n.sup.forget(rootName + "/" + f.ID)
		pid, err := ctx.SpawnNamed(n.props(d.props), f.ID)
		if err != nil {
			// ErrNameExists: its previous actor has not finished stopping; the next pass
			// starts it.
			n.logger.Info("flow not started yet", "flow", f.ID, "err", err)
			continue
		}
		a.flowPIDs[f.ID] = pid
		n.logger.Info("flow placed here", "flow", f.ID)
	}
}

// flowTerminated handles a flow actor that stopped without the root stopping it (its
// supervisor gave up): this node withdraws, so that another candidate runs the flow.
func (a *rootActor) flowTerminated(ctx actor.Context, pid *actor.PID) {
	if a.stopping[pid.Id] {
		delete(a.stopping, pid.Id)
		return
	}
	for id, p := range a.flowPIDs {
		if p.Id == pid.Id {
			delete(a.flowPIDs, id)
			if !a.withdrawn[id] {
				// Not started again here (a bound flow stays placed here) until the node
				// restarts or the flow is placed elsewhere first.
				a.withdraw(ctx, id, "its actor stopped for good")
			}
		}
	}
}

// withdraw tells __meta, in the background, that this node gives a flow up.
func (a *rootActor) withdraw(ctx actor.Context, id, why string) {
	n := a.n
	a.withdrawn[id] = true
	n.logger.Warn("flow given up by this node", "flow", id, "why", why)
	n.cluster.wg.Add(1)
	go func() {
		defer n.cluster.wg.Done()
		n.registerFlow(&RegisterFlow{ID: id, Node: n.raftID, Withdraw: true}, nil, 10*time.Second)
	}()
}

func (a *rootActor) flowDefs() map[string]flowDef {
	n := a.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	defs := make(map[string]flowDef, len(n.flowDefs))
	for id, d := range n.flowDefs {
		defs[id] = d
	}
	return defs
}
