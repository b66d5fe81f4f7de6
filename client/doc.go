// Package client is Weir's Go client: it produces to and consumes from a node over the client
// protocol of package wire, and administers topics.
//
//	c, err := client.Dial("127.0.0.1:7420")
//	defer c.Close()
//	p, _ := c.NewProducer("orders", client.Acks(wire.AcksAll))
//	p.ProduceAsync(ctx, storage.Record{Key: []byte("user-42"), Value: v}, func(off int64, err error) { ... })
//	p.Close() // flushes
//	cons, _ := c.NewConsumer("orders", 0, client.From(client.Earliest()))
//	msgs, err := cons.Poll(ctx)
//
// # What it owns
//
// A Client owns one TCP connection to one node, and redials it when it fails: requests are
// pipelined on it with correlation ids (a writer and a reader goroutine, owned by the Client
// and stopped and waited for by Close). A Producer owns its batches, a goroutine that batches
// and sends them, and one goroutine per request in flight; its Close flushes and waits for
// them. A Consumer owns no goroutine: its fetches are requests in flight that Poll collects. A
// GroupConsumer owns one heartbeat goroutine, stopped by Close.
//
// # Concurrency
//
// Client, Producer: every method may be called from any goroutine. Consumer and GroupConsumer:
// Poll, PollRecords, Commit and Close belong to one goroutine at a time; Pause, Resume and
// Position may be called from any goroutine. Producer callbacks run on the producer's own
// goroutine, in order per partition: they must be quick and must not call the producer's
// methods (Produce could wait for room that only the callbacks' goroutine can make).
//
// # Partitioning (a contract)
//
// A record with a key (Key != nil, an empty key included) goes to partition
//
//	FNV-1a-32(key) mod partitions
//
// where FNV-1a-32 starts from the offset basis 2166136261 and, for each key byte b, does
// h ^= b; h *= 16777619 (mod 2^32), and the modulo is taken on the unsigned hash. This is
// wire.PartitionForKey; every producer, in any language, must use it so that equal keys meet in
// one partition. Records without a key go to one partition until its batch is sent, then to the
// next partition round robin ("sticky" partitioning, as in Kafka).
//
// # Errors
//
// An error a node returned unwraps to a *wire.Error, so errors.Is(err, wire.ErrUnknownTopic)
// tells one; errors carry the operation, topic and partition (*Error). A connection that failed
// with a request in flight gives a *ConnError: the request may or may not have taken effect.
// Retriable errors (wire.Code.Retriable, connection failures, client-side timeouts, which are
// wire.ErrTimeout) are retried with exponential backoff up to Retries times by producers,
// consumers and the read-only admin requests; CreateTopic and DeleteTopic are sent once.
// wire.ErrUnknownTopic is retriable, so that a Producer started before its topic is created
// waits for it (about 6.5 s with the default retries) before failing its records; to fail at
// once, look the topic up with Metadata first (its per-topic error is not retried), as
// `weir produce` does.
//
// # Delivery
//
// A producer retries a batch after a retriable error. It is idempotent by default (Idempotent):
// each batch carries a producer id and the sequence number of its first record in its
// partition, and the partition's leader writes a batch sent again (its first answer was lost,
// or a failover came in between) once, answering the copy with the first one's offset. A
// record whose batch failed for good may still have been written once. With Idempotent(false)
// a batch whose first answer was lost may be written twice. The node hands the requests of one
// connection to its partitions in the order they arrive, as Kafka does; their answers may
// come back in another order (they are matched by correlation id). With MaxInFlight(1), the
// default, the batches of a partition are written in the order they were produced. With more
// in flight, a retried batch may land after a later one, and so may a batch whose request
// raced the next one onto the connection (the Producer hands each request to the Client
// from a goroutine of its own).
package client
