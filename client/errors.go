package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/weirhq/weir/cluster/wire"
)

// ErrClosed is returned by the methods of a closed Client, Producer or consumer, and given to
// the records and requests that were pending when it closed.
var ErrClosed = errors.New("client: closed")

// ErrRebalanced is joined to a group commit refused because the group rebalanced (the
// member's generation is over): the records polled since the last commit will be delivered
// again, to this member or another.
var ErrRebalanced = errors.New("client: group rebalanced")

// Error is an error of one operation: the node's answer (a *wire.Error), a *ConnError, a
// client-side timeout (a *wire.Error with wire.CodeTimeout) or a context's error.
type Error struct {
	Op        string // the API: "produce", "fetch", "metadata", ...
	Topic     string // "" when the operation is not about a topic
	Partition int32  // -1 when the operation is not about one partition
	Err       error
}

func (e *Error) Error() string {
	switch {
	case e.Topic == "":
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	case e.Partition < 0:
		return fmt.Sprintf("%s %s: %v", e.Op, e.Topic, e.Err)
	}
	return fmt.Sprintf("%s %s/%d: %v", e.Op, e.Topic, e.Partition, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ConnError is a failure of the connection: dialing, writing, or reading the answer. A request
// in flight when it happened may or may not have taken effect. It is retriable.
type ConnError struct {
	Addr string
	Err  error
}

func (e *ConnError) Error() string { return fmt.Sprintf("connection to %s: %v", e.Addr, e.Err) }
func (e *ConnError) Unwrap() error { return e.Err }

// IsRetriable reports whether the operation that failed with err may succeed if tried again:
// a node error with a retriable code (wire.Code.Retriable), a client-side timeout, or a
// connection failure. A closed client and a context's error are not retriable.
func IsRetriable(err error) bool {
	if err == nil || errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *ConnError
	if errors.As(err, &ce) {
		return true
	}
	var we *wire.Error
	return errors.As(err, &we) && we.Code.Retriable()
}

// wrap makes an *Error, or returns nil for a nil err.
func wrap(op wire.API, topic string, partition int32, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op.String(), Topic: topic, Partition: partition, Err: err}
}

// wireErr turns a response's *wire.Error into an error without the typed-nil trap.
func wireErr(e *wire.Error) error {
	if e == nil {
		return nil
	}
	return e
}

// codeOf is the wire code in err, or 0.
func codeOf(err error) wire.Code {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// isRebalance reports whether err tells a group member to join again.
func isRebalance(err error) bool {
	switch codeOf(err) {
	case wire.CodeRebalance, wire.CodeUnknownMember, wire.CodeStaleGeneration:
		return true
	}
	return false
}
