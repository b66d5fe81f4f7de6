package actors

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// The __offsets partition holds committed positions: consumer groups' offsets and flow sources'
// positions (a source commits under the group "source:<flow>"). Each record's key is the group
// and its value a msgpack []wire.PartitionOffset; the state is the last value per (group, topic,
// partition). Retention never shortens the partition, since the state is rebuilt from it at every
// start; instead the state is checkpointed (Checkpoint: records per group holding all of its
// offsets, each marked with the offset the state was taken at) and the log before a committed
// checkpoint is deleted. A checkpoint's records may be interleaved with commits made after it
// was taken: a checkpoint record never replaces an offset set by a record at or after that point.

// CommitOffsets stores offsets for a group; the reply is a *ProduceReply once they are committed.
type CommitOffsets struct {
	Group   string                 `msgpack:"g"`
	Offsets []wire.PartitionOffset `msgpack:"o"`
}

// DeleteTopicOffsets removes every group's committed offsets in a topic that was deleted, so that
// a topic created again under its name starts without them, as in Kafka. Flow sources' positions
// (partition -1) stay: they are positions in the source, not in the topic. The reply is a
// *ProduceReply once the deletion is committed.
type DeleteTopicOffsets struct {
	Topic string `msgpack:"t"`
}

// DeleteGroupOffsets removes a group's committed offsets (Kafka's DeleteGroups), flow sources'
// positions included if the group is a source's. Sent to the group's coordinator, which refuses
// it while the group has members and passes it on to __offsets; the reply is a *ProduceReply once
// the deletion is committed.
type DeleteGroupOffsets struct {
	Group string `msgpack:"g"`
}

// inFlightExempt marks a state machine message whose proposal the replica takes even at its
// in-flight limit: a small record that must not be lost to load.
type inFlightExempt interface{ inFlightExempt() }

func (*DeleteTopicOffsets) inFlightExempt() {}

// FetchOffsets reads a group's committed offsets; the reply is a *wire.FetchCommitResponse.
type FetchOffsets struct {
	Group      string                 `msgpack:"g"`
	Partitions []wire.TopicPartitions `msgpack:"p"`
}

func init() {
	register(30, &CommitOffsets{})
	register(31, &FetchOffsets{})
	register(32, &wire.FetchCommitResponse{})
	register(33, &DeleteTopicOffsets{})
	register(52, &DeleteGroupOffsets{})
}

type tp struct {
	topic     string
	partition int32
}

// offsetsState is the state machine of __offsets.
type offsetsState struct {
	groups map[string]map[tp]committedOffset
	// deleted is, per topic, the log offset of the last record that deleted its offsets: a
	// checkpoint taken before it must not bring them back. deletedGroups is the same per group.
	deleted       map[string]int64
	deletedGroups map[string]int64
	// committed, if not nil, is told of every offset applied, replayed ones included; forget of
	// every topic whose offsets were deleted.
	committed func(group string, o wire.PartitionOffset)
	forget    func(topic string)
	// forgetGroup, if not nil, is told of every group whose offsets were deleted.
	forgetGroup func(group string)
}

// committedOffset is a stored offset and the log offset of the record that set it (for a
// checkpoint record, the offset its state was taken at, less one).
type committedOffset struct {
	wire.PartitionOffset
	at int64
}

// checkpointHeader marks a checkpoint record; its value is the offset (decimal) after the last
// record the checkpoint's state includes. deleteTopicHeader marks a record that deletes the
// offsets of the topic it names (DeleteTopicOffsets), deleteGroupHeader one that deletes the
// offsets of the group it names (DeleteGroupOffsets).
const (
	checkpointHeader  = "checkpoint-of"
	deleteTopicHeader = "delete-topic"
	deleteGroupHeader = "delete-group"
)

func newOffsetsState(committed func(group string, o wire.PartitionOffset), forget func(topic string)) *offsetsState {
	return &offsetsState{groups: map[string]map[tp]committedOffset{}, deleted: map[string]int64{},
		deletedGroups: map[string]int64{}, committed: committed, forget: forget}
}

// Apply implements StateMachine.
func (s *offsetsState) Apply(offset int64, rec storage.Record) *wire.Error {
	if topic, ok := rec.Headers[deleteTopicHeader]; ok {
		for name, g := range s.groups {
			for k := range g {
				if k.topic == topic && k.partition >= 0 {
					delete(g, k)
				}
			}
			if len(g) == 0 {
				delete(s.groups, name)
			}
		}
		s.deleted[topic] = offset
		if s.forget != nil {
			s.forget(topic)
		}
		return nil
	}
	if group, ok := rec.Headers[deleteGroupHeader]; ok {
		delete(s.groups, group)
		s.deletedGroups[group] = offset
		if s.forgetGroup != nil {
			s.forgetGroup(group)
		}
		return nil
	}
	var offs []wire.PartitionOffset
	if err := msgpack.Unmarshal(rec.Value, &offs); err != nil {
		return wire.Errorf(wire.CodeMalformed, "__offsets record at %d: %v", offset, err)
	}
	at := offset
	cp, isCheckpoint := rec.Headers[checkpointHeader]
	if isCheckpoint {
		asOf, err := strconv.ParseInt(cp, 10, 64)
		if err != nil || asOf < 0 {
			return wire.Errorf(wire.CodeMalformed, "__offsets record at %d: checkpoint header %q", offset, cp)
		}
		at = asOf - 1
	}
	if d, ok := s.deletedGroups[string(rec.Key)]; isCheckpoint && ok && at < d {
		return nil // the group was deleted after the checkpoint was taken
	}
	g := s.groups[string(rec.Key)]
	if g == nil {
		g = map[tp]committedOffset{}
		s.groups[string(rec.Key)] = g
	}
	for _, o := range offs {
		k := tp{o.Topic, o.Partition}
		if cur, ok := g[k]; isCheckpoint && ok && cur.at > at {
			continue // committed after the checkpoint was taken
		}
		if d, ok := s.deleted[o.Topic]; isCheckpoint && ok && o.Partition >= 0 && at < d {
			continue // deleted after the checkpoint was taken
		}
		g[k] = committedOffset{o, at}
		if s.committed != nil {
			s.committed(string(rec.Key), o)
		}
	}
	return nil
}

// Checkpoint limits: a record holds offsets of one group up to checkpointRecordBytes (one offset
// with more metadata makes a record of its own), a batch records up to checkpointBatchBytes.
const (
	checkpointRecordBytes = 256 << 10
	checkpointBatchBytes  = 512 << 10
)

// Checkpoint implements Checkpointer: the offsets of every group as of asOf, groups in order.
func (s *offsetsState) Checkpoint(asOf int64) ([][]byte, int, error) {
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
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		b, err := storage.EncodeBatch(recs)
		if err != nil {
			return fmt.Errorf("__offsets checkpoint: %w", err)
		}
		batches = append(batches, b)
		n += len(recs)
		recs, size = nil, 0
		return nil
	}
	headers := map[string]string{checkpointHeader: strconv.FormatInt(asOf, 10)}
	now := nowMillis()
	addRecord := func(g string, offs []wire.PartitionOffset) error {
		v, err := msgpack.Marshal(offs)
		if err != nil {
			return fmt.Errorf("__offsets checkpoint: %w", err)
		}
		if size > 0 && size+len(g)+len(v) > checkpointBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		recs = append(recs, storage.Record{Key: []byte(g), Value: v, Headers: headers, Timestamp: now})
		size += len(g) + len(v) + 64
		return nil
	}
	for _, g := range names {
		offs := make([]wire.PartitionOffset, 0, len(s.groups[g]))
		for _, o := range s.groups[g] {
			offs = append(offs, o.PartitionOffset)
		}
		sort.Slice(offs, func(i, j int) bool {
			a, b := offs[i], offs[j]
			return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
		})
		from, bytes := 0, 0
		for i, o := range offs {
			sz := len(o.Topic) + len(o.Metadata) + 32
			if i > from && bytes+sz > checkpointRecordBytes {
				if err := addRecord(g, offs[from:i]); err != nil {
					return nil, 0, err
				}
				from, bytes = i, 0
			}
			bytes += sz
		}
		if len(offs) > from {
			if err := addRecord(g, offs[from:]); err != nil {
				return nil, 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	return batches, n, nil
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
	case *DeleteTopicOffsets:
		if m.Topic == "" {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "delete offsets: empty topic")}
		}
		v, _ := msgpack.Marshal([]wire.PartitionOffset{})
		b, err := storage.EncodeBatch([]storage.Record{{Value: v, Headers: map[string]string{deleteTopicHeader: m.Topic}, Timestamp: nowMillis()}})
		if err != nil {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "delete offsets: %v", err)}
		}
		return b, nil
	case *DeleteGroupOffsets:
		if m.Group == "" {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "delete group offsets: empty group")}
		}
		v, _ := msgpack.Marshal([]wire.PartitionOffset{})
		b, err := storage.EncodeBatch([]storage.Record{{Key: []byte(m.Group), Value: v, Headers: map[string]string{deleteGroupHeader: m.Group}, Timestamp: nowMillis()}})
		if err != nil {
			return nil, &ProduceReply{BaseOffset: -1, Err: wire.Errorf(wire.CodeInvalidRequest, "delete group offsets: %v", err)}
		}
		return b, nil
	case *ListCommitGroups:
		resp := &GroupList{}
		for g := range s.groups {
			resp.Groups = append(resp.Groups, g)
		}
		sort.Strings(resp.Groups)
		return nil, resp
	case *FetchOffsets:
		g := s.groups[m.Group]
		resp := &wire.FetchCommitResponse{}
		if len(m.Partitions) == 0 {
			for _, o := range g {
				resp.Offsets = append(resp.Offsets, o.PartitionOffset)
			}
		} else {
			for _, t := range m.Partitions {
				for _, p := range t.Partitions {
					if o, ok := g[tp{t.Topic, p}]; ok {
						resp.Offsets = append(resp.Offsets, o.PartitionOffset)
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
