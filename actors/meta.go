package actors

import (
	"fmt"
	"regexp"
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
}

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

// ListTopics asks __meta for its table; the reply is a *Topics.
type ListTopics struct{}

// Topics is the topic table, sorted by name, as of End: the __meta offset after the last
// command applied.
type Topics struct {
	Topics []TopicMeta `msgpack:"t"`
	End    int64       `msgpack:"e"`
}

func init() {
	register(20, &CreateTopic{})
	register(21, &DeleteTopic{})
	register(22, &ListTopics{})
	register(23, &Topics{})
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
	replicas int32 // the most replicas a topic may have: the number of nodes (1 on one node)
	changed  func(Topics)
	live     bool  // replay is over: report changes
	end      int64 // offset after the last command applied
	// nodes, in a cluster, gives the nodes placement may use.
	nodes func() []cluster.NodeState
}

// Replayed is called by the replica when the table has been rebuilt from the log.
func (s *metaState) Replayed() {
	s.live = true
	if s.changed != nil {
		s.changed(s.table())
	}
}

func newMetaState(maxReplicas int32, changed func(Topics)) *metaState {
	return &metaState{topics: map[string]TopicMeta{}, replicas: maxReplicas, changed: changed}
}

func (s *metaState) table() Topics {
	out := Topics{Topics: make([]TopicMeta, 0, len(s.topics)), End: s.end}
	for _, t := range s.topics {
		out.Topics = append(out.Topics, t)
	}
	sort.Slice(out.Topics, func(i, j int) bool { return out.Topics[i].Name < out.Topics[j].Name })
	return out
}

// Apply implements StateMachine.
func (s *metaState) Apply(offset int64, rec storage.Record) *wire.Error {
	s.end = max(s.end, offset+1)
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
		if m.Replicas < 1 || m.Replicas > 7 {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "topic %q: %d replicas: want 1 to 7", m.Name, m.Replicas)}
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
			if err != nil {
				return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "%v", err)}
			}
			tm.Assignment = asg
		}
		return metaCommand("create-topic", tm), nil
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
	out, err := cluster.Place(s.nodes(), in)
	if err != nil {
		return nil, err
	}
	return out[tm.Name], nil
}

func metaCommand(op string, t TopicMeta) []byte {
	v, err := msgpack.Marshal(&t)
	if err != nil {
		panic(err) // a struct of strings and integers always encodes
	}
	b, err := storage.EncodeBatch([]storage.Record{{Key: []byte(op), Value: v, Timestamp: nowMillis()}})
	if err != nil {
		panic(err)
	}
	return b
}
