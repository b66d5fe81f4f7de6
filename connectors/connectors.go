// Package connectors owns the small interfaces between Weir's flows and the outside world:
// sources that read records, interceptors that filter and enrich them before the network, and
// sinks that store what a consumer group reads. Implementations live in sub-packages
// (connectors/source/..., connectors/sink/...). A flow runs each source and sink in a supervised
// actor (package actors); the interfaces know nothing of actors or clusters.
//
// Delivery: a source's position is committed only after the topic acknowledged the records read
// before it, and a sink's offsets only after Write returned (the records are durable in the
// sink's store). After a crash a source resumes at its last committed position and a sink at its
// group's committed offsets, so records are never lost; those in the one batch that was in
// flight may be delivered again. Sinks that promise exactly once (the HDFS and rolling-file
// sinks of the sinks issue) remove that repeat themselves.
//
// Concurrency: the runner calls a connector's methods from one goroutine at a time.
package connectors

import (
	"context"
	"errors"

	"github.com/weirhq/weir/storage"
)

// Source reads records from the outside world.
type Source interface {
	// Open prepares the source to read after position: the last position the runner committed
	// (nil on first start).
	Open(ctx context.Context, position []byte) error
	// Read returns the next records and the position after them. It returns what it has when
	// ctx is done (possibly nothing, with a nil error), and io.EOF when the source is finished.
	// A Read that returns no records may still return a position: the runner commits it if it
	// differs from the one committed last (a source that moved without records, such as a file
	// source started at the end of its files); a nil position commits nothing. Each such
	// commit is a write to __offsets: a source returns a new position without records only
	// when it moved, never on every Read.
	Read(ctx context.Context) (records []storage.Record, position []byte, err error)
	// Close releases the source.
	Close() error
}

// Acker is a Source that wants to know when what it read is stored: the runner calls Acked
// with the position of the last Read once the topic acknowledged every record read up to it and
// the position is committed. A source that answers its senders (the http source) answers then.
type Acker interface {
	Acked(position []byte)
}

// Message is a record read from a topic.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	storage.Record
}

// Sink stores records read from topics.
type Sink interface {
	// Open prepares the sink.
	Open(ctx context.Context) error
	// Write stores msgs (in offset order per partition). When it returns nil they are durable
	// in the sink's store and the runner commits their offsets.
	Write(ctx context.Context, msgs []Message) error
	// Close releases the sink.
	Close() error
}

// StagingSink is a Sink whose Write stages records that become durable later, many Writes at a
// time (the HDFS sink: a file's data is durable only once the file is closed and renamed). The
// runner fetches on after each Write, but commits for each partition only the offset Durable
// reports, asking after every Write, every second, and when a DurableNotifier says so. After a
// crash, or when the runner joins its group again, it reads on from the committed offsets: what
// was staged and not durable comes again, and Reset has thrown the staged copy away. Records the
// sink made durable may come again too (a crash between durability and the commit): the sink
// skips them, as it knows what it made durable. A sink whose Writes are durable when they
// return may be a StagingSink too, to learn from Reset when it may lose partitions (the
// rolling-file sink: Durable reports what it wrote, Reset lets go of the partitions it holds).
type StagingSink interface {
	Sink
	// Durable returns, for the partitions it has written, the offset after the last record
	// that is durable in the sink's store. The runner commits those that moved past the
	// committed offset of a partition it has.
	Durable() ([]PartitionOffset, error)
	// Reset drops everything staged and not yet durable. The runner calls it each time before
	// it (re)joins its group (so before another member can be given its partitions), and then
	// reads from the committed offsets again.
	Reset() error
}

// Borrower is a Sink whose Write only borrows msgs: once Write returns it holds no reference to
// msgs or to the byte slices of their records (it copied what it keeps). The runner then reads
// the next fetch of a partition into the memory of its last one, and decodes into the same
// slice of messages, instead of allocating both again for every Write. A sink that keeps
// messages (a test sink that collects them, say) must not be a Borrower.
type Borrower interface {
	Sink
	// BorrowsMessages marks the sink; the runner does not call it.
	BorrowsMessages()
}

// DurableNotifier is a StagingSink that makes records durable between Writes too (the HDFS
// sink's rolls by time) and says so: the runner asks Durable when told, not only at its next
// tick, so those records are committed without waiting up to a second.
type DurableNotifier interface {
	StagingSink
	// NotifyDurable gives the sink the function to call after Durable's answer changed outside
	// a Write (something became durable, or an error waits to be returned). The runner calls it
	// before Open; the function returns at once, and may be called from any goroutine.
	NotifyDurable(notify func())
}

// ErrReplay, returned (wrapped or not) by a StagingSink's Write or Durable, says that the sink
// abandoned what it had staged (a write to its store failed): the runner resets it and reads
// again from the committed offsets after a backoff, without restarting the sink.
var ErrReplay = errors.New("sink: staged records abandoned; read them again")

// PartitionOffset is an offset of a topic partition.
type PartitionOffset struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Interceptor maps one record to zero or one record: filter (false drops the record) or enrich
// (return a changed record) before it reaches the network.
type Interceptor interface {
	Intercept(r storage.Record) (storage.Record, bool)
}

// Selector routes a record to topics, as Flume's channel selectors route events to channels:
// a source with a selector produces each record (after its interceptors) to every topic Select
// returns, and drops it if there is none. Package connectors/selector has the replicating and
// multiplexing selectors.
type Selector interface {
	// Select returns the topics r goes to; each must be one of Topics.
	Select(r storage.Record) []string
	// Topics lists every topic Select may return, each once; the flow creates them. The first
	// is where the source's position is kept, so it must stay first.
	Topics() []string
}

// InterceptorFunc adapts a function to Interceptor.
type InterceptorFunc func(storage.Record) (storage.Record, bool)

// Intercept implements Interceptor.
func (f InterceptorFunc) Intercept(r storage.Record) (storage.Record, bool) { return f(r) }
