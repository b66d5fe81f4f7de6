package actors

import (
	"sort"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// The __offsets partition holds committed positions: consumer groups' offsets and flow sources'
// positions (a source commits under the group "source:<flow>"). Each record's key is the group
// and its value a msgpack []wire.PartitionOffset; the state is the last value per (group, topic,
// partition). The partition is never shortened by retention, since the state is rebuilt from it
// at every start (compaction is future work: see docs/runtime.md).

// CommitOffsets stores offsets for a group; the reply is a *ProduceReply once they are committed.
type CommitOffsets struct {
	Group   string                 `msgpack:"g"`
	Offsets []wire.PartitionOffset `msgpack:"o"`
}

// FetchOffsets reads a group's committed offsets; the reply is a *wire.FetchCommitResponse.
type FetchOffsets struct {
	Group      string                 `msgpack:"g"`
	Partitions []wire.TopicPartitions `msgpack:"p"`
}

func init() {
	register(30, &CommitOffsets{})
	register(31, &FetchOffsets{})
	register(32, &wire.FetchCommitResponse{})
}

type tp struct {
	topic     string
	partition int32
}

// offsetsState is the state machine of __offsets.
type offsetsState struct {
	groups map[string]map[tp]wire.PartitionOffset
}

func newOffsetsState() *offsetsState {
	return &offsetsState{groups: map[string]map[tp]wire.PartitionOffset{}}
}

// Apply implements StateMachine.
func (s *offsetsState) Apply(offset int64, rec storage.Record) *wire.Error {
	var offs []wire.PartitionOffset
	if err := msgpack.Unmarshal(rec.Value, &offs); err != nil {
		return wire.Errorf(wire.CodeMalformed, "__offsets record at %d: %v", offset, err)
	}
	g := s.groups[string(rec.Key)]
	if g == nil {
		g = map[tp]wire.PartitionOffset{}
		s.groups[string(rec.Key)] = g
	}
	for _, o := range offs {
		g[tp{o.Topic, o.Partition}] = o
	}
	return nil
}

// Handle implements StateMachine.
func (s *offsetsState) Handle(msg any) ([]byte, any) {
	switch m := msg.(type) {
	case *CommitOffsets:
		if m.Group == "" {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "commit: empty group")}
		}
		v, err := msgpack.Marshal(m.Offsets)
		if err != nil {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "commit: %v", err)}
		}
		b, err := storage.EncodeBatch([]storage.Record{{Key: []byte(m.Group), Value: v, Timestamp: nowMillis()}})
		if err != nil {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "commit: %v", err)}
		}
		return b, nil
	case *FetchOffsets:
		g := s.groups[m.Group]
		resp := &wire.FetchCommitResponse{}
		if len(m.Partitions) == 0 {
			for _, o := range g {
				resp.Offsets = append(resp.Offsets, o)
			}
		} else {
			for _, t := range m.Partitions {
				for _, p := range t.Partitions {
					if o, ok := g[tp{t.Topic, p}]; ok {
						resp.Offsets = append(resp.Offsets, o)
					}
				}
			}
		}
		sort.Slice(resp.Offsets, func(i, j int) bool {
			a, b := resp.Offsets[i], resp.Offsets[j]
			return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
		})
		return nil, resp
	}
	return nil, nil
}
