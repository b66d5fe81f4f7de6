package actors

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/weirhq/weir/cluster"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// The __meta partition holds the topic table. Each record is one command: its key names the
// operation ("create-topic", "delete-topic") and its value is a msgpack TopicMeta. The table is
// the result of applying them in order; every node that replays __meta gets the same table.

// Internal topic names.
const (
	MetaTopic    = "__meta"
	OffsetsTopic = "__offsets"
)

// TopicMeta describes a topic. ID is the __meta offset of the command that created it, so a
// topic deleted and created again under the same name gets new directories.
type TopicMeta struct {
	Name       string           `msgpack:"n"`
	Partitions int32            `msgpack:"p"`
	Replicas   int32            `msgpack:"r"`
	ID         int64            `msgpack:"i"`
	Config     wire.TopicConfig `msgpack:"c,omitempty"`
	// Assignment holds each partition's replica node ids, the preferred leader first; nil on a
	// node that runs alone (its one replica).
	Assignment [][]uint64 `msgpack:"a,omitempty"`
	// Moved marks the partitions whose replicas changed since the topic was created: a replica
	// that starts with an empty log joins such a partition's group (its leader adds it) instead
	// of bootstrapping it.
	Moved []bool `msgpack:"m,omitempty"`
}

// moved reports whether partition p's replicas changed since the topic was created.
func (t TopicMeta) moved(p int32) bool { return int(p) < len(t.Moved) && t.Moved[p] }

// replicasOf is partition p's replica node ids: its assignment, or node 1 for a topic created
// while its node ran alone (a node that ran alone has id 1 and keeps it in a cluster).
func (t TopicMeta) replicasOf(p int32) []uint64 {
	if int(p) < len(t.Assignment) {
		return t.Assignment[p]
	}
	return []uint64{1}
}

// Dir is the topic's directory under the node's data directory.
func (t TopicMeta) Dir() string { return fmt.Sprintf("%s.%d", t.Name, t.ID) }

// CreateTopic asks __meta to create a topic; the reply is a *ProduceReply.
type CreateTopic struct {
	Name       string           `msgpack:"n"`
	Partitions int32            `msgpack:"p"`
	Replicas   int32            `msgpack:"r"`
	Config     wire.TopicConfig `msgpack:"c,omitempty"`
}

// DeleteTopic asks __meta to delete a topic; the reply is a *ProduceReply.
type DeleteTopic struct {
	Name string `msgpack:"n"`
}

// ListTopics asks __meta for its table; the reply is a *Topics. With Leader, only a leader that
// has applied an entry of its own term answers it (others answer a *ProduceReply with
// not-leader or unavailable): its table holds every command committed before its term.
type ListTopics struct {
	Leader bool `msgpack:"l,omitempty"`
}

// Rebalance asks __meta's leader to place every topic's replicas again (cluster.Place) and to
// commit the assignments that change; the reply is a *ProduceReply. Unsettled lists, by topic,
// the partitions whose raft groups do not have their assignment's membership yet (a move in
// progress, or no leader): they keep their assignment.
type Rebalance struct {
	Unsettled map[string][]int32 `msgpack:"u"`
}

// Topics is the topic table, sorted by name, as of End: the __meta offset after the last
// command applied; in a cluster also the flows and where they run.
type Topics struct {
	Topics []TopicMeta `msgpack:"t"`
	End    int64       `msgpack:"e"`
	Flows  []FlowMeta  `msgpack:"f,omitempty"`
}

// FlowMeta is a flow actor (a source or a sink runner) as __meta places it in a cluster: the
// nodes that define it (every node running the same program does), and the one that runs it.
// A bound flow (a source reading the node's own files) runs on the node that defined it first,
// and waits for it when it is away.
type FlowMeta struct {
	ID         string   `msgpack:"i"` // the actor's name, "flow/<name>/source" or "flow/<name>/sink"
	Candidates []uint64 `msgpack:"c"`
	Bound      bool     `msgpack:"b,omitempty"`
	Node       uint64   `msgpack:"n,omitempty"` // 0: not placed yet
	Withdraw   bool     `msgpack:"w,omitempty"` // in a flow-candidate command: the candidates leave
	// BoundTo is the node a bound flow runs on: its first candidate, kept when candidates
	// withdraw (a source of a node's files stays with the node across restarts).
	BoundTo uint64 `msgpack:"t,omitempty"`
}

// RegisterFlow tells __meta that a node defines a flow actor, or with Withdraw that it no
// longer does; the reply is a *ProduceReply.
type RegisterFlow struct {
	ID       string `msgpack:"i"`
	Node     uint64 `msgpack:"n"`
	Bound    bool   `msgpack:"b,omitempty"`
	Withdraw bool   `msgpack:"w,omitempty"`
}

func init() {
	register(20, &CreateTopic{})
	register(21, &DeleteTopic{})
	register(22, &ListTopics{})
	register(23, &Topics{})
	register(24, &Rebalance{})
	register(25, &RegisterFlow{})
}

// Limits on topics.
const (
	MaxPartitions = 1024
	maxTopicName  = 200
)

var topicNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateTopicName checks a user topic's name: letters, digits, '.', '_' and '-', at most 200
// characters, not "." or "..", and not starting with "__" (reserved for internal topics).
func ValidateTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("topic name is empty")
	case len(name) > maxTopicName:
		return fmt.Errorf("topic name is %d characters, more than %d", len(name), maxTopicName)
	case !topicNameRE.MatchString(name):
		return fmt.Errorf("topic name %q: use letters, digits, '.', '_' and '-' only", name)
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case strings.HasPrefix(name, "__"):
		return fmt.Errorf("topic name %q: names starting with __ are internal", name)
	}
	return nil
}

// metaState is the state machine of __meta.
type metaState struct {
	topics   map[string]TopicMeta
	flows    map[string]FlowMeta
	replicas int32 // the most replicas a topic may have: the number of nodes (1 on one node)
	changed  func(Topics)
	live     bool  // replay is over: report changes
	end      int64 // offset after the last command applied
	// nodes, in a cluster, gives the nodes placement may use, among them those of referenced
	// (the nodes the assignments name) that are away for less than the re-placement timeout.
	nodes func(referenced []uint64) []cluster.NodeState
}

// Replayed is called by the replica when the table has been rebuilt from the log.
func (s *metaState) Replayed() {
	s.live = true
	if s.changed != nil {
		s.changed(s.table())
	}
}

// MaxReplicas is the largest replication factor of a topic.
const MaxReplicas = 7

func newMetaState(maxReplicas int32, changed func(Topics)) *metaState {
	return &metaState{topics: map[string]TopicMeta{}, flows: map[string]FlowMeta{}, replicas: maxReplicas, changed: changed}
}

func (s *metaState) table() Topics {
	out := Topics{Topics: make([]TopicMeta, 0, len(s.topics)), End: s.end}
	for _, t := range s.topics {
		out.Topics = append(out.Topics, t)
	}
	sort.Slice(out.Topics, func(i, j int) bool { return out.Topics[i].Name < out.Topics[j].Name })
	for _, id := range sortedKeys(s.flows) {
		f := s.flows[id]
		f.Candidates = slices.Clone(f.Candidates)
		out.Flows = append(out.Flows, f)
	}
	return out
}

// Apply implements StateMachine.
func (s *metaState) Apply(offset int64, rec storage.Record) *wire.Error {
	s.end = max(s.end, offset+1)
	if op := string(rec.Key); op == "flow-candidate" || op == "flow-assign" {
		var f FlowMeta
		if err := msgpack.Unmarshal(rec.Value, &f); err != nil {
			return wire.Errorf(wire.CodeMalformed, "__meta record at %d: %v", offset, err)
		}
		cur := s.flows[f.ID]
		cur.ID = f.ID
		switch {
		case op == "flow-candidate" && f.Withdraw:
			cur.Candidates = slices.DeleteFunc(cur.Candidates, func(id uint64) bool { return slices.Contains(f.Candidates, id) })
			if slices.Contains(f.Candidates, cur.Node) && cur.Node != cur.BoundTo {
				cur.Node = 0
			}
		case op == "flow-candidate":
			if len(cur.Candidates) == 0 && cur.BoundTo == 0 {
				cur.Bound = f.Bound
				if f.Bound && len(f.Candidates) > 0 {
					cur.BoundTo = f.Candidates[0]
				}
			}
			for _, id := range f.Candidates {
				if !slices.Contains(cur.Candidates, id) {
					cur.Candidates = append(cur.Candidates, id)
				}
			}
		default:
			cur.Node = f.Node
		}
		s.flows[f.ID] = cur
		if s.live && s.changed != nil {
			s.changed(s.table())
		}
		return nil
	}
	var t TopicMeta
	if err := msgpack.Unmarshal(rec.Value, &t); err != nil {
		// A command this version cannot read is skipped, not fatal: it came from a newer node.
		return wire.Errorf(wire.CodeMalformed, "__meta record at %d: %v", offset, err)
	}
	switch string(rec.Key) {
	case "create-topic":
		if _, ok := s.topics[t.Name]; ok {
			return wire.Errorf(wire.CodeTopicExists, "topic %q exists", t.Name)
		}
		t.ID = offset
		s.topics[t.Name] = t
	case "delete-topic":
		if _, ok := s.topics[t.Name]; !ok {
			return wire.Errorf(wire.CodeUnknownTopic, "topic %q does not exist", t.Name)
		}
		delete(s.topics, t.Name)
	case "set-assignment":
		cur, ok := s.topics[t.Name]
		if !ok || cur.ID != t.ID || len(t.Assignment) != int(cur.Partitions) {
			return wire.Errorf(wire.CodeUnknownTopic, "topic %q (id %d) with %d partitions does not exist", t.Name, t.ID, len(t.Assignment))
		}
		moved := make([]bool, cur.Partitions)
		copy(moved, cur.Moved)
		for p := range moved {
			if !sameNodes(cur.replicasOf(int32(p)), t.Assignment[p]) {
				moved[p] = true
			}
		}
		cur.Assignment, cur.Moved = t.Assignment, moved
		s.topics[t.Name] = cur
	default:
		return wire.Errorf(wire.CodeMalformed, "__meta record at %d: unknown command %q", offset, rec.Key)
	}
	if s.live && s.changed != nil {
		s.changed(s.table())
	}
	return nil
}

// Handle implements StateMachine.
func (s *metaState) Handle(msg any) ([]byte, any) {
	switch m := msg.(type) {
	case *ListTopics:
		t := s.table()
		return nil, &t
	case *CreateTopic:
		if err := ValidateTopicName(m.Name); err != nil {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "%v", err)}
		}
		if m.Partitions < 1 || m.Partitions > MaxPartitions {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "topic %q: %d partitions: want 1 to %d", m.Name, m.Partitions, MaxPartitions)}
		}
		if s.nodes == nil && (m.Replicas < 1 || m.Replicas > s.replicas) {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "topic %q: %d replicas: want 1 to %d (the number of nodes)", m.Name, m.Replicas, s.replicas)}
		}
		if m.Replicas < 1 || m.Replicas > MaxReplicas {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "topic %q: %d replicas: want 1 to %d", m.Name, m.Replicas, MaxReplicas)}
		}
		if err := m.Config.Validate(); err != nil {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "topic %q: %v", m.Name, err)}
		}
		if _, ok := s.topics[m.Name]; ok {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeTopicExists, "topic %q exists", m.Name)}
		}
		tm := TopicMeta{Name: m.Name, Partitions: m.Partitions, Replicas: m.Replicas, Config: m.Config}
		if s.nodes != nil {
			asg, err := s.place(tm)
			if errors.Is(err, cluster.ErrNotEnoughNodes) {
				return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeNotEnoughNodes, "%s", strings.TrimPrefix(err.Error(), cluster.ErrNotEnoughNodes.Error()+": "))}
			} else if err != nil {
				return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "%v", err)}
			}
			tm.Assignment = asg
		}
		return metaCommand("create-topic", tm), nil
	case *Rebalance:
		return s.rebalance(m)
	case *RegisterFlow:
		// Always proposed, also when the applied table already says so: a registration or a
		// withdrawal still on its way to being applied could otherwise overtake this one.
		if _, ok := s.flows[m.ID]; !ok && m.Withdraw {
			return nil, &ProduceReply{}
		}
		return metaBatch([]storage.Record{flowRecord("flow-candidate", FlowMeta{ID: m.ID, Candidates: []uint64{m.Node}, Bound: m.Bound, Withdraw: m.Withdraw})})
	case *DeleteTopic:
		if _, ok := s.topics[m.Name]; !ok {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeUnknownTopic, "topic %q does not exist", m.Name)}
		}
		return metaCommand("delete-topic", TopicMeta{Name: m.Name}), nil
	}
	return nil, nil
}

// place assigns a new topic's partitions to nodes, around the existing topics' replicas.
func (s *metaState) place(tm TopicMeta) ([][]uint64, error) {
	in := []cluster.TopicPlacement{{Name: tm.Name, Partitions: tm.Partitions, Replicas: tm.Replicas}}
	for _, t := range s.topics {
		cur := make([][]uint64, t.Partitions)
		for p := range cur {
			cur[p] = t.replicasOf(int32(p))
		}
		in = append(in, cluster.TopicPlacement{Name: t.Name, Partitions: t.Partitions, Replicas: t.Replicas, Current: cur})
	}
	out, err := cluster.Place(s.nodes(s.referenced()), in)
	if err != nil {
		return nil, err
	}
	return out[tm.Name], nil
}

// rebalance places every topic again and returns the commands that change assignments, one
// batch; or a reply when nothing changes (or the node runs alone).
func (s *metaState) rebalance(m *Rebalance) ([]byte, any) {
	if s.nodes == nil {
		return nil, &ProduceReply{}
	}
	nodes := s.nodes(s.referenced())
	recs := s.placeFlows(nodes)
	if len(s.topics) == 0 {
		return metaBatch(recs)
	}
	var in []cluster.TopicPlacement
	for _, t := range s.topics {
		in = append(in, cluster.TopicPlacement{Name: t.Name, Partitions: t.Partitions, Replicas: t.Replicas, Current: t.assignment()})
	}
	out, err := cluster.Place(nodes, in)
	if err != nil {
		return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "placement: %v", err)}
	}
	for _, name := range sortedKeys(out) {
		t := s.topics[name]
		cur, next := t.assignment(), out[name]
		for _, p := range m.Unsettled[name] {
			if p >= 0 && int(p) < len(next) {
				next[p] = cur[p]
			}
		}
		changed := false
		for p := range next {
			// A change of order alone (the preferred leader) is not worth a command.
			changed = changed || !sameNodes(cur[p], next[p])
		}
		if changed {
			recs = append(recs, metaRecord("set-assignment", TopicMeta{Name: t.Name, ID: t.ID, Partitions: t.Partitions, Assignment: next}))
		}
	}
	return metaBatch(recs)
}

// metaBatch is the batch of commands to propose, or an empty reply when there is none.
func metaBatch(recs []storage.Record) ([]byte, any) {
	if len(recs) == 0 {
		return nil, &ProduceReply{}
	}
	b, err := storage.EncodeBatch(recs)
	if err != nil {
		panic(err)
	}
	return b, nil
}

// placeFlows returns the flow-assign commands that place flows: a flow stays on its node while
// that node is usable (live, or away for less than the re-placement timeout, and not
// draining); else it goes to the usable, live candidate running fewest flows. A bound flow runs
// on its first candidate, whatever its state.
func (s *metaState) placeFlows(nodes []cluster.NodeState) []storage.Record {
	state := map[uint64]cluster.NodeState{}
	for _, n := range nodes {
		state[n.ID] = n
	}
	usable := func(id uint64) bool { st, ok := state[id]; return ok && st.Live && !st.Draining }
	load := map[uint64]int{}
	for _, f := range s.flows {
		if f.Node != 0 {
			load[f.Node]++
		}
	}
	var recs []storage.Record
	for _, id := range sortedKeys(s.flows) {
		f := s.flows[id]
		want := f.Node
		switch {
		case len(f.Candidates) == 0 && f.BoundTo == 0:
			continue
		case f.Bound:
			want = f.BoundTo
			if want == 0 {
				want = f.Candidates[0]
			}
		case want == 0 || !slices.Contains(f.Candidates, want) || !usable(want):
			best := uint64(0)
			for _, c := range f.Candidates {
				if st := state[c]; usable(c) && !st.Down && (best == 0 || load[c] < load[best] || (load[c] == load[best] && c < best)) {
					best = c
				}
			}
			if best == 0 {
				continue // no candidate can run it now
			}
			want = best
		}
		if want != f.Node {
			load[f.Node]--
			load[want]++
			recs = append(recs, flowRecord("flow-assign", FlowMeta{ID: id, Node: want}))
		}
	}
	return recs
}

// referenced lists the nodes the topics' assignments name.
func (s *metaState) referenced() []uint64 {
	var ids []uint64
	for _, t := range s.topics {
		for p := int32(0); p < t.Partitions; p++ {
			ids = append(ids, t.replicasOf(p)...)
		}
	}
	for _, f := range s.flows {
		ids = append(ids, f.Candidates...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// assignment is every partition's replicas.
func (t TopicMeta) assignment() [][]uint64 {
	out := make([][]uint64, t.Partitions)
	for p := range out {
		out[p] = append([]uint64(nil), t.replicasOf(int32(p))...)
	}
	return out
}

// sameNodes reports whether two replica lists hold the same nodes, in any order.
func sameNodes(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for _, id := range a {
		if !slices.Contains(b, id) {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func metaRecord(op string, t TopicMeta) storage.Record { return encodedRecord(op, &t) }

func flowRecord(op string, f FlowMeta) storage.Record { return encodedRecord(op, &f) }

// encodedRecord is a __meta command: op as the key, v in msgpack as the value.
func encodedRecord(op string, v any) storage.Record {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err) // structs of strings and integers always encode
	}
	return storage.Record{Key: []byte(op), Value: b, Timestamp: nowMillis()}
}

func metaCommand(op string, t TopicMeta) []byte {
	b, err := storage.EncodeBatch([]storage.Record{metaRecord(op, t)})
	if err != nil {
		panic(err)
	}
	return b
}
