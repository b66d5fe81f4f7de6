package wire

import (
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Acks says when a produce request is answered.
type Acks int8

const (
	// AcksNone: the node answers when it has accepted the request, before writing it.
	AcksNone Acks = 0
	// AcksLeader: when the partition leader has appended the batch to its log.
	AcksLeader Acks = 1
	// AcksAll: when the batch is committed in the partition's raft group (a majority holds it).
	AcksAll Acks = -1
)

func (a Acks) String() string {
	switch a {
	case AcksNone:
		return "none"
	case AcksLeader:
		return "leader"
	case AcksAll:
		return "all"
	}
	return fmt.Sprintf("acks(%d)", int8(a))
}

// ParseAcks reads "none", "leader" or "all".
func ParseAcks(s string) (Acks, error) {
	for _, a := range []Acks{AcksNone, AcksLeader, AcksAll} {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("acks %q: want none, leader or all", s)
}

// ProduceRequest appends one batch to each of some partitions of a topic.
type ProduceRequest struct {
	Topic     string           `msgpack:"t"`
	Acks      Acks             `msgpack:"a"`
	TimeoutMs int32            `msgpack:"w"`
	Batches   []PartitionBatch `msgpack:"b"`
}

// PartitionBatch is one storage batch for one partition.
type PartitionBatch struct {
	Partition int32  `msgpack:"p"`
	Batch     []byte `msgpack:"b"`
}

// ProduceResponse answers each PartitionBatch in request order.
type ProduceResponse struct {
	Results []ProduceResult `msgpack:"r"`
	Err     *Error          `msgpack:"e,omitempty"`
}

// ProduceResult is the offset of a batch's first record, or the error that kept it out.
// BaseOffset is -1 for acks=none.
type ProduceResult struct {
	Partition  int32  `msgpack:"p"`
	BaseOffset int64  `msgpack:"o"`
	Err        *Error `msgpack:"e,omitempty"`
}

// FetchRequest reads committed batches of one partition from Offset on, waiting up to
// MaxWaitMs for data if there is none yet.
type FetchRequest struct {
	Topic     string `msgpack:"t"`
	Partition int32  `msgpack:"p"`
	Offset    int64  `msgpack:"o"`
	MaxBytes  int32  `msgpack:"m"`
	MaxWaitMs int32  `msgpack:"w"`
}

// FetchResponse holds whole batches as stored; the first may begin before Offset and the
// reader skips records before it. Batches may be empty when nothing arrived within MaxWait.
type FetchResponse struct {
	HighWatermark int64  `msgpack:"h"`
	StartOffset   int64  `msgpack:"s"`
	Batches       []byte `msgpack:"b"`
	Err           *Error `msgpack:"e,omitempty"`
}

// MetadataRequest describes the named topics, or all topics if Topics is empty.
type MetadataRequest struct {
	Topics []string `msgpack:"t"`
}

// MetadataResponse lists topics and the nodes that serve them.
type MetadataResponse struct {
	Nodes  []NodeInfo  `msgpack:"n"`
	Topics []TopicInfo `msgpack:"t"`
	Err    *Error      `msgpack:"e,omitempty"`
}

// NodeInfo is a node's id and client address.
type NodeInfo struct {
	ID   string `msgpack:"i"`
	Addr string `msgpack:"a"`
}

// TopicInfo describes a topic.
type TopicInfo struct {
	Name       string          `msgpack:"n"`
	Replicas   int32           `msgpack:"r"`
	Config     TopicConfig     `msgpack:"c,omitempty"`
	Partitions []PartitionInfo `msgpack:"p"`
	Err        *Error          `msgpack:"e,omitempty"`
}

// PartitionInfo describes one partition: its leader and replicas (node ids), and its offsets.
type PartitionInfo struct {
	Partition     int32    `msgpack:"p"`
	Leader        string   `msgpack:"l"`
	Replicas      []string `msgpack:"r"`
	StartOffset   int64    `msgpack:"s"`
	HighWatermark int64    `msgpack:"h"`
	EndOffset     int64    `msgpack:"e"`
	// Voters and Learners are the members of the partition's raft group as its leader sees
	// them; empty when no leader answered. While replicas move they differ from Replicas (the
	// assignment): a new replica is a learner until it has caught up.
	Voters   []string `msgpack:"v,omitempty"`
	Learners []string `msgpack:"lr,omitempty"`
}

// CreateTopicRequest creates a topic.
type CreateTopicRequest struct {
	Name       string      `msgpack:"n"`
	Partitions int32       `msgpack:"p"`
	Replicas   int32       `msgpack:"r"`
	Config     TopicConfig `msgpack:"c,omitempty"`
}

// TopicConfig holds a topic's settings that override the node's. For each, 0 means the node's
// setting and RetentionUnlimited means no limit whatever the node says.
type TopicConfig struct {
	// RetentionMs deletes a partition's segments whose newest record is older (milliseconds).
	RetentionMs int64 `msgpack:"rm,omitempty"`
	// RetentionBytes deletes a partition's oldest segments while it is larger.
	RetentionBytes int64 `msgpack:"rb,omitempty"`
}

// RetentionUnlimited is the TopicConfig value for "no limit".
const RetentionUnlimited = -1

// maxRetentionMs is the longest retention age that a time.Duration holds (292 years).
const maxRetentionMs = math.MaxInt64 / int64(time.Millisecond)

// Validate reports a setting out of range.
func (c TopicConfig) Validate() error {
	switch {
	case c.RetentionMs < RetentionUnlimited || c.RetentionMs > maxRetentionMs:
		return fmt.Errorf("retention %d ms: want a positive number up to %d, 0 (the node's) or -1 (unlimited)", c.RetentionMs, maxRetentionMs)
	case c.RetentionBytes < RetentionUnlimited:
		return fmt.Errorf("retention %d bytes: want a positive number, 0 (the node's) or -1 (unlimited)", c.RetentionBytes)
	}
	return nil
}

// DeleteTopicRequest deletes a topic and its data.
type DeleteTopicRequest struct {
	Name string `msgpack:"n"`
}

// DrainRequest marks the node that receives it as draining (its replicas move to other nodes,
// and it is given no new ones), or, with Undo, as not draining; answered by an AdminResponse.
type DrainRequest struct {
	Undo bool `msgpack:"u,omitempty"`
}

// AdminResponse answers the admin requests that return nothing but success or an error.
type AdminResponse struct {
	Err *Error `msgpack:"e,omitempty"`
}

// Offset specs for ListOffsetsRequest.
const (
	OffsetEarliest  = -2
	OffsetLatest    = -1
	OffsetTimestamp = -3 // Timestamp holds unix milliseconds
)

// ListOffsetsRequest resolves a start position: the earliest or latest offset, or the first
// offset whose timestamp is at or after Timestamp.
type ListOffsetsRequest struct {
	Topic     string `msgpack:"t"`
	Partition int32  `msgpack:"p"`
	Spec      int64  `msgpack:"s"`
	Timestamp int64  `msgpack:"ts"`
}

// ListOffsetsResponse holds the resolved offset.
type ListOffsetsResponse struct {
	Offset int64  `msgpack:"o"`
	Err    *Error `msgpack:"e,omitempty"`
}

// Encode encodes a message body.
func Encode(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Decode decodes a message body into v, naming the API in the error.
func Decode(api API, body []byte, v any) error {
	if err := msgpack.Unmarshal(body, v); err != nil {
		return Errorf(CodeMalformed, "%s body: %v", api, err)
	}
	return nil
}

// Consumer groups. A member joins with the topics it wants; the group's coordinator waits for
// the members it knows to (re)join, assigns every partition of those topics to exactly one member
// (range assignment per topic, members sorted by id) and answers each Join with the member's id,
// the generation and its assignment. Members heartbeat every few seconds; a heartbeat answered
// with ErrRebalance means the member must stop fetching, commit, and join again. A member silent
// for SessionTimeoutMs is removed and the others rebalance.

// JoinGroupRequest joins (or rejoins, with its MemberID) a group.
type JoinGroupRequest struct {
	Group            string   `msgpack:"g"`
	MemberID         string   `msgpack:"m"`
	Topics           []string `msgpack:"t"`
	SessionTimeoutMs int32    `msgpack:"s"`
	// ClientID and ClientHost describe a member that joined through the Kafka listener: its
	// client id and address, which DescribeGroups reports.
	ClientID   string `msgpack:"ci,omitempty"`
	ClientHost string `msgpack:"ch,omitempty"`
}

// JoinGroupResponse is the member's share of the group's partitions for this generation.
type JoinGroupResponse struct {
	MemberID   string            `msgpack:"m"`
	Generation int32             `msgpack:"g"`
	Assigned   []TopicPartitions `msgpack:"a"`
	Members    int32             `msgpack:"n"`
	Err        *Error            `msgpack:"e,omitempty"`
}

// TopicPartitions names some partitions of a topic.
type TopicPartitions struct {
	Topic      string  `msgpack:"t"`
	Partitions []int32 `msgpack:"p"`
}

// HeartbeatRequest keeps a member in its group.
type HeartbeatRequest struct {
	Group      string `msgpack:"g"`
	MemberID   string `msgpack:"m"`
	Generation int32  `msgpack:"n"`
}

// LeaveGroupRequest removes a member at once (the others rebalance without waiting for its
// session to time out).
type LeaveGroupRequest struct {
	Group    string `msgpack:"g"`
	MemberID string `msgpack:"m"`
}

// CommitRequest stores a group's offsets durably (in the __offsets partition). A member passes
// its id and generation, and the commit is refused if they are stale; a consumer outside any
// group membership (MemberID empty) may commit for the group freely.
type CommitRequest struct {
	Group      string            `msgpack:"g"`
	MemberID   string            `msgpack:"m"`
	Generation int32             `msgpack:"n"`
	Offsets    []PartitionOffset `msgpack:"o"`
}

// PartitionOffset is the next offset a group will read in a partition, with optional metadata
// (a source's position, for instance).
type PartitionOffset struct {
	Topic     string `msgpack:"t"`
	Partition int32  `msgpack:"p"`
	Offset    int64  `msgpack:"o"`
	Metadata  []byte `msgpack:"d,omitempty"`
}

// FetchCommitRequest reads a group's committed offsets for some partitions (all of them when
// Partitions is empty).
type FetchCommitRequest struct {
	Group      string            `msgpack:"g"`
	Partitions []TopicPartitions `msgpack:"p"`
}

// FetchCommitResponse holds the committed offsets; a partition with none is absent.
type FetchCommitResponse struct {
	Offsets []PartitionOffset `msgpack:"o"`
	Err     *Error            `msgpack:"e,omitempty"`
}

// PartitionForKey is the partition of a record with a key: the FNV-1a 32-bit hash of the key
// bytes, modulo the number of partitions. Every producer must use it so that equal keys meet in
// one partition whichever client wrote them.
func PartitionForKey(key []byte, partitions int32) int32 {
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for _, c := range key {
		h ^= uint32(c)
		h *= prime32
	}
	return int32(h % uint32(partitions))
}
