package actors

import (
	"fmt"
	"sort"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// The __offsets partition holds committed positions: consumer groups' offsets and flow sources'
// positions (a source commits under the group "source:<flow>"). Each record's key is the group
// and its value a msgpack []wire.PartitionOffset; the state is the last value per (group, topic,
// partition). Retention never shortens the partition, since the state is rebuilt from it at every
// start; instead the state is checkpointed (Checkpoint: one record per group holding all of its
// offsets) and the log before a committed checkpoint is deleted.

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
	// committed, if not nil, is told of every offset applied, replayed ones included.
	committed func(group string, o wire.PartitionOffset)
}

func newOffsetsState(committed func(group string, o wire.PartitionOffset)) *offsetsState {
	return &offsetsState{groups: map[string]map[tp]wire.PartitionOffset{}, committed: committed}
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
		if s.committed != nil {
			s.committed(string(rec.Key), o)
		}
	}
	return nil
}

// checkpointBatchBytes bounds one batch of a checkpoint.
const checkpointBatchBytes = 512 << 10

// Checkpoint implements Checkpointer: a record per group with all of its offsets, groups in
// order, in batches of at most checkpointBatchBytes (a group too large for one batch is split
// over records).
func (s *offsetsState) Checkpoint() ([][]byte, int) {
	names := make([]string, 0, len(s.groups))
	for g := range s.groups {
		names = append(names, g)
	}
	sort.Strings(names)
	var (
		batches [][]byte
		recs    []storage.Record
		size    int
		n       int
	)
	flush := func() {
		if len(recs) == 0 {
			return
		}
		b, err := storage.EncodeBatch(recs)
		if err != nil {
			panic(fmt.Errorf("__offsets checkpoint: %w", err)) // records of bounded size: a bug
		}
		batches = append(batches, b)
		n += len(recs)
		recs, size = nil, 0
	}
	now := nowMillis()
	for _, g := range names {
		offs := make([]wire.PartitionOffset, 0, len(s.groups[g]))
		for _, o := range s.groups[g] {
			offs = append(offs, o)
		}
		sort.Slice(offs, func(i, j int) bool {
			a, b := offs[i], offs[j]
			return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
		})
		for len(offs) > 0 {
			chunk := offs[:min(len(offs), 1024)]
			offs = offs[len(chunk):]
			v, err := msgpack.Marshal(chunk)
			if err != nil {
				panic(fmt.Errorf("__offsets checkpoint: %w", err))
			}
			if size+len(g)+len(v) > checkpointBatchBytes {
				flush()
			}
			recs = append(recs, storage.Record{Key: []byte(g), Value: v, Timestamp: now})
			size += len(g) + len(v) + 32
		}
	}
	flush()
	return batches, n
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
