package wire

import (
	"errors"
	"fmt"
)

// Code classifies an error carried in a response, so that clients can branch on it.
type Code uint16

// The error codes. Retriable ones are marked; clients retry those with backoff.
const (
	CodeUnknown          Code = 1
	CodeMalformed        Code = 2 // a frame or body could not be decoded
	CodeUnsupported      Code = 3 // an API the node does not know
	CodeUnknownTopic     Code = 4 // retriable: the topic may be being created
	CodeUnknownPartition Code = 5
	CodeTopicExists      Code = 6
	CodeInvalidRequest   Code = 7  // a field out of range: partitions, replicas, names, acks
	CodeCorruptBatch     Code = 8  // a produced batch failed its checks
	CodeRecordTooLarge   Code = 9  // a batch over the limit
	CodeOffsetOutOfRange Code = 10 // fetch before the start or after the end of the log
	CodeNotLeader        Code = 11 // retriable: refresh metadata
	CodeTimeout          Code = 12 // retriable: the request was not done in time
	CodeUnavailable      Code = 13 // retriable: the partition is (re)starting or failed
	CodeOverloaded       Code = 14 // retriable: an in-flight limit is reached
	CodeStorage          Code = 15 // the log failed to write; the partition restarts
	CodeUnknownMember    Code = 16 // group: the member id is not in the group (rejoin)
	CodeRebalance        Code = 17 // group: a rebalance is in progress (rejoin)
	CodeStaleGeneration  Code = 18 // group: the generation is old (rejoin)
	CodeUnknownGroup     Code = 19
	// CodeOutOfOrderSequence: retriable: an idempotent producer's batch does not follow its
	// last one in the partition (an earlier batch is still on its way, or was lost).
	CodeOutOfOrderSequence Code = 20
	// CodeDuplicateSequence: an idempotent producer's batch was written before, too long ago for
	// its offset to be known; the batch is in the log once.
	CodeDuplicateSequence Code = 21
	// CodeUnknownProducer: retriable: the partition does not know an idempotent producer whose
	// batch is not at sequence 0 (it never saw it, or forgot it); the producer numbers anew.
	CodeUnknownProducer Code = 22
	// CodeNotEnoughNodes: retriable: a topic wants more replicas than there are nodes to hold
	// them (more may join).
	CodeNotEnoughNodes Code = 23
)

var codeNames = map[Code]string{
	CodeUnknown: "unknown error", CodeMalformed: "malformed request", CodeUnsupported: "unsupported API",
	CodeUnknownTopic: "unknown topic", CodeUnknownPartition: "unknown partition",
	CodeTopicExists: "topic exists", CodeInvalidRequest: "invalid request",
	CodeCorruptBatch: "corrupt batch", CodeRecordTooLarge: "record too large",
	CodeOffsetOutOfRange: "offset out of range", CodeNotLeader: "not leader", CodeTimeout: "timeout",
	CodeUnavailable: "partition unavailable", CodeOverloaded: "overloaded", CodeStorage: "storage error",
	CodeUnknownMember: "unknown member", CodeRebalance: "rebalance in progress",
	CodeStaleGeneration: "stale generation", CodeUnknownGroup: "unknown group",
	CodeOutOfOrderSequence: "out of order sequence", CodeDuplicateSequence: "duplicate sequence",
	CodeUnknownProducer: "unknown producer", CodeNotEnoughNodes: "not enough nodes",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("error code %d", uint16(c))
}

// Retriable reports whether a request that failed with c may succeed when sent again.
func (c Code) Retriable() bool {
	switch c {
	case CodeUnknownTopic, CodeNotLeader, CodeTimeout, CodeUnavailable, CodeOverloaded, CodeOutOfOrderSequence, CodeUnknownProducer, CodeNotEnoughNodes:
		return true
	}
	return false
}

// Error is an error carried in a response.
type Error struct {
	Code Code   `msgpack:"c"`
	Msg  string `msgpack:"m,omitempty"`
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Msg
}

// Is makes errors.Is(err, wire.ErrNotLeader) match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && t.Code == e.Code && t.Msg == ""
}

// Errorf makes an *Error with a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...)}
}

// Sentinels to compare with errors.Is.
var (
	ErrMalformed        = &Error{Code: CodeMalformed}
	ErrUnsupported      = &Error{Code: CodeUnsupported}
	ErrUnknownTopic     = &Error{Code: CodeUnknownTopic}
	ErrUnknownPartition = &Error{Code: CodeUnknownPartition}
	ErrTopicExists      = &Error{Code: CodeTopicExists}
	ErrInvalidRequest   = &Error{Code: CodeInvalidRequest}
	ErrCorruptBatch     = &Error{Code: CodeCorruptBatch}
	ErrRecordTooLarge   = &Error{Code: CodeRecordTooLarge}
	ErrOffsetOutOfRange = &Error{Code: CodeOffsetOutOfRange}
	ErrNotLeader        = &Error{Code: CodeNotLeader}
	ErrTimeout          = &Error{Code: CodeTimeout}
	ErrUnavailable      = &Error{Code: CodeUnavailable}
	ErrOverloaded       = &Error{Code: CodeOverloaded}
	ErrStorage          = &Error{Code: CodeStorage}
	ErrUnknownMember    = &Error{Code: CodeUnknownMember}
	ErrRebalance        = &Error{Code: CodeRebalance}
	ErrStaleGeneration  = &Error{Code: CodeStaleGeneration}
	ErrUnknownGroup     = &Error{Code: CodeUnknownGroup}
)

// AsError turns any error into an *Error for a response: *Error values pass through, others
// become CodeUnknown with their text.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeUnknown, Msg: err.Error()}
}
