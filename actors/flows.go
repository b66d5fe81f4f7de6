package actors

import (
	"errors"
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

// flowDef is a flow actor this node defines.
type flowDef struct {
	props *actor.Props
	bound bool
}

// flowsChanged tells the root that the flows this node defines changed.
type flowsChanged struct{}

// RunFlow defines a flow actor named id (a root child: "flow/<name>/source" or
// "flow/<name>/sink"). Alone, the node runs it at once and returns its PID. In a cluster it
// runs wherever __meta places it, perhaps on another node: the PID returned is nil, and
// registering the node as a candidate goes on in the background until __meta takes it.
func (n *Node) RunFlow(id string, props *actor.Props, bound bool) (*actor.PID, error) {
	if n.cluster == nil {
		return n.Spawn(id, props)
	}
	n.mu.Lock()
	if n.flowDefs == nil {
		n.flowDefs = map[string]flowDef{}
	}
	if _, ok := n.flowDefs[id]; ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("actor %q already runs", id)
	}
	n.flowDefs[id] = flowDef{props: props, bound: bound}
	n.mu.Unlock()
	n.system.Root.Send(n.root, flowsChanged{})
	n.cluster.wg.Add(1)
	go func() {
		defer n.cluster.wg.Done()
		n.registerFlow(&RegisterFlow{ID: id, Node: n.raftID, Bound: bound})
	}()
	return nil, nil
}

// StopFlow undefines a flow actor of RunFlow: it stops here, and __meta is told that this node
// no longer defines it (another candidate takes it over).
func (n *Node) StopFlow(id string) {
	n.mu.Lock()
	_, ok := n.flowDefs[id]
	delete(n.flowDefs, id)
	n.mu.Unlock()
	if !ok {
		return
	}
	_, _ = n.system.Root.RequestFuture(n.root, flowsChanged{}, 30*time.Second).Result()
	n.registerFlow(&RegisterFlow{ID: id, Node: n.raftID, Withdraw: true})
}

// registerFlow sends a flow registration to __meta until it is committed, the node stops, or
// (for a withdrawal) 10 s have passed.
func (n *Node) registerFlow(m *RegisterFlow) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := resultOf(n.rc.RequestFuture(n.internalPID("meta"), m, 5*time.Second))
		if r, ok := res.(*ProduceReply); ok && r.Err != nil {
			err = r.Err
		}
		if err == nil {
			return
		}
		if m.Withdraw && time.Now().After(deadline) {
			n.logger.Warn("flow withdrawal not committed", "flow", m.ID, "err", err)
			return
		}
		select {
		case <-n.cluster.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// reconcileFlows runs the flow actors __meta placed on this node that it defines, and stops the
// others.
func (a *rootActor) reconcileFlows(ctx actor.Context) {
	n := a.n
	if n.cluster == nil {
		return
	}
	n.mu.RLock()
	defs := make(map[string]flowDef, len(n.flowDefs))
	for id, d := range n.flowDefs {
		defs[id] = d
	}
	n.mu.RUnlock()
	want := map[string]bool{}
	for _, f := range a.flowTable {
		if _, ok := defs[f.ID]; ok && f.Node == n.raftID {
			want[f.ID] = true
		}
	}
	for id, pid := range a.flowPIDs {
		if !want[id] {
			ctx.StopFuture(pid).Wait()
			delete(a.flowPIDs, id)
			n.logger.Info("flow stopped here", "flow", id)
		}
	}
	for id := range want {
		if _, ok := a.flowPIDs[id]; ok {
			continue
		}
		n.sup.forget(rootName + "/" + id)
		pid, err := ctx.SpawnNamed(n.props(defs[id].props), id)
		if err != nil && !errors.Is(err, actor.ErrNameExists) {
			n.logger.Error("flow start", "flow", id, "err", err)
			continue
		}
		a.flowPIDs[id] = pid
		n.logger.Info("flow placed here", "flow", id)
	}
}
