package actors

import "github.com/weirhq/weir/cluster/wire"

// Messages between actors. Those that may cross nodes are registered with a tag (envelope.go);
// the rest (ticks, self-notifications) never leave their actor.

// Produce asks a partition leader to append one records batch. Acks none gets no reply; the
// others get a *ProduceReply when the batch is appended (leader) or committed (all).
type Produce struct {
	Batch    []byte    `msgpack:"b"`
	Acks     wire.Acks `msgpack:"a"`
	Deadline int64     `msgpack:"d"` // unix milliseconds; 0: none
	// Forwarded is set when a follower forwarded the request to its leader: it is not
	// forwarded again.
	Forwarded bool `msgpack:"f,omitempty"`
}

// ProduceReply answers Produce: the offset of the batch's first record, or an error.
type ProduceReply struct {
	BaseOffset int64       `msgpack:"o"`
	Err        *wire.Error `msgpack:"e,omitempty"`
}

// Fetch asks a partition for committed batches; the reply is a *wire.FetchResponse.
type Fetch struct {
	Offset    int64 `msgpack:"o"`
	MaxBytes  int32 `msgpack:"m"`
	MaxWaitMs int32 `msgpack:"w"`
	Forwarded bool  `msgpack:"f,omitempty"`
	// Into is memory the reply's batches may be read into (from its start, growing it if it is
	// too small), so that a reader fetching again and again need not allocate each time: the
	// sender gives it up until the reply came. Never sent to another node.
	Into []byte `msgpack:"-"`
}

// WithdrawFetch tells a partition that the fetch it holds for the waiter at Address and ID (the
// future its Fetch was sent from) is no longer wanted: the partition answers it at once, empty,
// instead of keeping it parked until its MaxWait. No reply.
type WithdrawFetch struct {
	Address   string `msgpack:"a"`
	ID        string `msgpack:"i"`
	Forwarded bool   `msgpack:"f,omitempty"`
}

// GetStatus asks a partition for its *Status.
type GetStatus struct{}

// Status describes a partition replica.
type Status struct {
	Group         string      `msgpack:"g"`
	NodeID        uint64      `msgpack:"n"`
	Leader        uint64      `msgpack:"l"`
	Term          uint64      `msgpack:"t"`
	StartOffset   int64       `msgpack:"s"`
	HighWatermark int64       `msgpack:"h"`
	EndOffset     int64       `msgpack:"e"`
	Voters        []uint64    `msgpack:"v"`
	Learners      []uint64    `msgpack:"lr,omitempty"`
	Parked        int         `msgpack:"pk,omitempty"` // fetches waiting for records
	Err           *wire.Error `msgpack:"err,omitempty"`
}

// ListOffsets resolves a start position in a partition; the reply is a *wire.ListOffsetsResponse.
type ListOffsets struct {
	Spec      int64 `msgpack:"s"`
	Timestamp int64 `msgpack:"t"`
	Forwarded bool  `msgpack:"f,omitempty"`
}

// RaftMessage carries one raft message (protobuf bytes) between replicas of a group.
type RaftMessage struct {
	Group string `msgpack:"g"`
	Data  []byte `msgpack:"d"`
}

// SetMembers tells a replica the membership its group should have. Only the leader acts on
// it: one configuration change at a time, a new voter first added as a learner and promoted
// once it has caught up, and voters removed only after the additions. No reply.
type SetMembers struct {
	Voters   []uint64 `msgpack:"v"`
	Learners []uint64 `msgpack:"l,omitempty"`
}

func init() {
	register(10, &SetMembers{})
	register(1, &Produce{})
	register(2, &ProduceReply{})
	register(3, &Fetch{})
	register(4, &wire.FetchResponse{})
	register(5, &GetStatus{})
	register(6, &Status{})
	register(7, &ListOffsets{})
	register(8, &wire.ListOffsetsResponse{})
	register(11, &WithdrawFetch{})
	register(9, &RaftMessage{})
}

// Messages an actor sends itself.
type (
	tick         struct{}
	processReady struct{}
)
