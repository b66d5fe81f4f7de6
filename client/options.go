package client

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// Options are typed by what they configure, as in franz-go: an Option configures a Client, a
// ProducerOption a Producer, a ConsumerOption a Consumer and a GroupOption a GroupConsumer.
// An option that makes sense for several (Retries, MaxWait) implements several interfaces; one
// that does not cannot be passed where it means nothing: the compiler refuses it.
type (
	// Option configures a Client.
	Option interface{ applyClient(*clientConfig) }
	// ProducerOption configures a Producer.
	ProducerOption interface{ applyProducer(*producerConfig) }
	// ConsumerOption configures a Consumer.
	ConsumerOption interface{ applyConsumer(*consumerConfig) }
	// GroupOption configures a GroupConsumer.
	GroupOption interface{ applyGroup(*groupConfig) }
	// FetchOption configures fetching, for a Consumer or a GroupConsumer.
	FetchOption interface {
		ConsumerOption
		GroupOption
	}
	// RetryOption configures retries, for a Client (its default for the others) and for each
	// producer or consumer.
	RetryOption interface {
		Option
		ProducerOption
		ConsumerOption
		GroupOption
	}
)

// retryPolicy says how often and how patiently retriable errors are retried.
type retryPolicy struct {
	retries                int
	backoffMin, backoffMax time.Duration
}

// backoff is the wait before retry number attempt (1 for the first retry): the minimum
// doubled per attempt, capped at the maximum.
func (r retryPolicy) backoff(attempt int) time.Duration {
	d := r.backoffMin
	for i := 1; i < attempt && d < r.backoffMax; i++ {
		d *= 2
	}
	return min(d, r.backoffMax)
}

func (r retryPolicy) validate() error {
	if r.retries < 0 {
		return fmt.Errorf("client: Retries(%d): want 0 or more", r.retries)
	}
	if r.backoffMin <= 0 || r.backoffMax < r.backoffMin {
		return fmt.Errorf("client: RetryBackoff(%v, %v): want 0 < min <= max", r.backoffMin, r.backoffMax)
	}
	return nil
}

type clientConfig struct {
	dialTimeout    time.Duration
	requestTimeout time.Duration
	retry          retryPolicy
	logger         *slog.Logger
}

func defaultClientConfig() clientConfig {
	return clientConfig{
		dialTimeout:    5 * time.Second,
		requestTimeout: 30 * time.Second,
		retry:          retryPolicy{retries: 10, backoffMin: 50 * time.Millisecond, backoffMax: time.Second},
		logger:         slog.New(slog.DiscardHandler),
	}
}

func (c *clientConfig) validate() error {
	if c.dialTimeout <= 0 {
		return errors.New("client: DialTimeout must be positive")
	}
	if c.requestTimeout <= 0 {
		return errors.New("client: RequestTimeout must be positive")
	}
	return c.retry.validate()
}

type clientOpt func(*clientConfig)

func (o clientOpt) applyClient(c *clientConfig) { o(c) }

// DialTimeout bounds connecting to the node (5 s by default).
func DialTimeout(d time.Duration) Option {
	return clientOpt(func(c *clientConfig) { c.dialTimeout = d })
}

// RequestTimeout bounds each request's wait for its answer (30 s by default); a fetch waits
// its MaxWait on top of it. A request not answered in time fails with wire.ErrTimeout.
func RequestTimeout(d time.Duration) Option {
	return clientOpt(func(c *clientConfig) { c.requestTimeout = d })
}

// Logger receives the client's logs (connections lost, retries); discarded by default.
func Logger(l *slog.Logger) Option {
	return clientOpt(func(c *clientConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

type retryOpt func(*retryPolicy)

func (o retryOpt) applyClient(c *clientConfig)     { o(&c.retry) }
func (o retryOpt) applyProducer(c *producerConfig) { o(&c.retry) }
func (o retryOpt) applyConsumer(c *consumerConfig) { o(&c.retry) }
func (o retryOpt) applyGroup(c *groupConfig)       { o(&c.retry) }

// Retries is how many times a request that failed with a retriable error is sent again
// (10 by default; 0: never). A producer counts per batch, a consumer per partition
// (consecutive failures), a metadata lookup per lookup.
func Retries(n int) RetryOption {
	return retryOpt(func(r *retryPolicy) { r.retries = n })
}

// RetryBackoff is the wait before the first retry, doubled for each next one up to max
// (50 ms and 1 s by default).
func RetryBackoff(min, max time.Duration) RetryOption {
	return retryOpt(func(r *retryPolicy) { r.backoffMin, r.backoffMax = min, max })
}

type producerConfig struct {
	acks             wire.Acks
	linger           time.Duration
	batchBytes       int
	maxInFlight      int
	maxBufferedBytes int
	maxRecordBytes   int
	retry            retryPolicy
	requestTimeout   time.Duration
	idempotent       bool
}

func (c *clientConfig) producer() producerConfig {
	return producerConfig{
		acks:             wire.AcksAll,
		linger:           DefaultLinger,
		batchBytes:       1 << 20,
		maxInFlight:      1,
		maxBufferedBytes: 32 << 20,
		maxRecordBytes:   storage.MaxBatchSize - storage.HeaderSize,
		retry:            c.retry,
		requestTimeout:   c.requestTimeout,
		idempotent:       true,
	}
}

func (c *producerConfig) validate() error {
	switch {
	case c.acks != wire.AcksNone && c.acks != wire.AcksLeader && c.acks != wire.AcksAll:
		return fmt.Errorf("client: Acks(%d): want wire.AcksNone, AcksLeader or AcksAll", c.acks)
	case c.linger < 0:
		return fmt.Errorf("client: Linger(%v): must not be negative", c.linger)
	case c.batchBytes <= storage.HeaderSize || c.batchBytes > storage.MaxBatchSize:
		return fmt.Errorf("client: BatchBytes(%d): want (%d, %d]", c.batchBytes, storage.HeaderSize, storage.MaxBatchSize)
	case c.maxInFlight < 1:
		return fmt.Errorf("client: MaxInFlight(%d): want 1 or more", c.maxInFlight)
	case c.idempotent && c.acks != wire.AcksNone && c.maxInFlight > maxIdempotentInFlight:
		return fmt.Errorf("client: MaxInFlight(%d): an idempotent producer has at most %d in flight (or set Idempotent(false))", c.maxInFlight, maxIdempotentInFlight)
	case c.maxRecordBytes < 1 || c.maxRecordBytes > storage.MaxBatchSize-storage.HeaderSize:
		return fmt.Errorf("client: MaxRecordBytes(%d): want [1, %d]", c.maxRecordBytes, storage.MaxBatchSize-storage.HeaderSize)
	case c.maxBufferedBytes < 1:
		return fmt.Errorf("client: MaxBufferedBytes(%d): must be positive", c.maxBufferedBytes)
	}
	return c.retry.validate()
}

type producerOpt func(*producerConfig)

func (o producerOpt) applyProducer(c *producerConfig) { o(c) }

// Acks says when the node answers a batch (wire.AcksAll by default): when it is committed,
// when the leader appended it, or at once (wire.AcksNone: offsets are reported as -1).
func Acks(a wire.Acks) ProducerOption { return producerOpt(func(c *producerConfig) { c.acks = a }) }

// DefaultLinger is the producer's default Linger. Under load batches grow by themselves while
// the previous request is in flight (MaxInFlight), so a short linger costs no peak throughput:
// on the 2-core benchmark machine 2 ms against 5 ms kept the peak (2.3 M records/s) and took
// the p99 latency at half of it from 10.0-10.7 ms to 7.1-7.3 ms (docs/benchmarks.md).
const DefaultLinger = 2 * time.Millisecond

// Linger is how long a batch waits for more records before it is sent (DefaultLinger by
// default); a full batch, Flush and Close send at once.
func Linger(d time.Duration) ProducerOption {
	return producerOpt(func(c *producerConfig) { c.linger = d })
}

// BatchBytes is the size at which a partition's batch is sent without lingering (1 MiB by
// default). A record larger than it travels in a batch of its own.
func BatchBytes(n int) ProducerOption {
	return producerOpt(func(c *producerConfig) { c.batchBytes = n })
}

// MaxInFlight is how many batches of one partition may await their answer at once (1 by
// default, which keeps a partition's records in order across retries).
func MaxInFlight(n int) ProducerOption {
	return producerOpt(func(c *producerConfig) { c.maxInFlight = n })
}

// maxIdempotentInFlight is the most batches per partition an idempotent producer may have in
// flight: a partition's leader remembers each producer's last 5 batches, to answer their copies
// with their offsets (as Kafka does).
const maxIdempotentInFlight = 5

// Idempotent says whether batches carry a producer id and sequence numbers, so that a batch
// sent again (a retry after a timeout, a lost answer or a failover) is written once (true by
// default; it does not apply with wire.AcksNone, which never retries). See the package
// documentation, Delivery.
func Idempotent(on bool) ProducerOption {
	return producerOpt(func(c *producerConfig) { c.idempotent = on })
}

// MaxBufferedBytes bounds the records produced but not yet answered (32 MiB by default,
// counted as their encoded size): Produce blocks while it is reached. A record larger than the
// bound is let in when nothing else is buffered.
func MaxBufferedBytes(n int) ProducerOption {
	return producerOpt(func(c *producerConfig) { c.maxBufferedBytes = n })
}

// MaxRecordBytes is the largest record accepted, as counted in a batch: its key, value and
// header keys and values, plus 25 bytes of framing and 10 more per header. A larger one fails
// at once with wire.ErrRecordTooLarge. The default and the maximum is what fits in one
// storage batch.
func MaxRecordBytes(n int) ProducerOption {
	return producerOpt(func(c *producerConfig) { c.maxRecordBytes = n })
}

// ResetPolicy says where a consumer goes when it has no valid position: a group with no
// committed offset for a partition, or a fetch out of the log's range (retention deleted the
// records, or an offset beyond the end was asked for).
type ResetPolicy int

const (
	// ResetNone returns wire.ErrOffsetOutOfRange from Poll (for a group without committed
	// offsets it starts at the latest offset).
	ResetNone ResetPolicy = iota
	// ResetEarliest moves to the first record still in the log.
	ResetEarliest
	// ResetLatest moves to the end of the log: only records produced from now on are read.
	ResetLatest
)

func (r ResetPolicy) String() string {
	switch r {
	case ResetNone:
		return "none"
	case ResetEarliest:
		return "earliest"
	case ResetLatest:
		return "latest"
	}
	return fmt.Sprintf("reset(%d)", int(r))
}

type fetchConfig struct {
	maxWait        time.Duration
	maxBytes       int32
	reset          ResetPolicy
	retry          retryPolicy
	requestTimeout time.Duration
}

func (c *clientConfig) fetch(reset ResetPolicy) fetchConfig {
	return fetchConfig{maxWait: 500 * time.Millisecond, maxBytes: 1 << 20, reset: reset, retry: c.retry, requestTimeout: c.requestTimeout}
}

func (c *fetchConfig) validate() error {
	switch {
	case c.maxWait < 0 || c.maxWait > time.Minute:
		return fmt.Errorf("client: MaxWait(%v): want [0, 1m]", c.maxWait)
	case c.maxBytes <= 0:
		return fmt.Errorf("client: FetchMaxBytes(%d): must be positive", c.maxBytes)
	case c.reset < ResetNone || c.reset > ResetLatest:
		return fmt.Errorf("client: ResetOffset(%d): unknown policy", c.reset)
	}
	return c.retry.validate()
}

type fetchOpt func(*fetchConfig)

func (o fetchOpt) applyConsumer(c *consumerConfig) { o(&c.fetchConfig) }
func (o fetchOpt) applyGroup(c *groupConfig)       { o(&c.fetchConfig) }

// MaxWait is how long a Poll waits for records when there are none (500 ms by default): the
// node holds a fetch at the end of the log that long (long polling).
func MaxWait(d time.Duration) FetchOption { return fetchOpt(func(c *fetchConfig) { c.maxWait = d }) }

// FetchMaxBytes bounds one fetch's answer per partition (1 MiB by default; the node caps it,
// and always returns at least one whole batch).
func FetchMaxBytes(n int32) FetchOption {
	return fetchOpt(func(c *fetchConfig) { c.maxBytes = n })
}

// ResetOffset sets the ResetPolicy (ResetNone for a Consumer, ResetLatest for a GroupConsumer
// by default, as in Kafka).
func ResetOffset(r ResetPolicy) FetchOption {
	return fetchOpt(func(c *fetchConfig) { c.reset = r })
}

type consumerConfig struct {
	fetchConfig
	from OffsetSpec
}

type consumerOpt func(*consumerConfig)

func (o consumerOpt) applyConsumer(c *consumerConfig) { o(c) }

// From is where a Consumer starts (Earliest() by default).
func From(s OffsetSpec) ConsumerOption { return consumerOpt(func(c *consumerConfig) { c.from = s }) }

type groupConfig struct {
	fetchConfig
	sessionTimeout    time.Duration
	heartbeatInterval time.Duration
	joinTimeout       time.Duration
}

func (c *groupConfig) validate() error {
	switch {
	case c.sessionTimeout <= 0:
		return fmt.Errorf("client: SessionTimeout(%v): must be positive", c.sessionTimeout)
	case c.heartbeatInterval <= 0 || c.heartbeatInterval >= c.sessionTimeout:
		return fmt.Errorf("client: HeartbeatInterval(%v): want (0, SessionTimeout %v)", c.heartbeatInterval, c.sessionTimeout)
	case c.joinTimeout <= 0:
		return fmt.Errorf("client: JoinTimeout(%v): must be positive", c.joinTimeout)
	}
	return c.fetchConfig.validate()
}

type groupOpt func(*groupConfig)

func (o groupOpt) applyGroup(c *groupConfig) { o(c) }

// SessionTimeout is how long the group's coordinator keeps a member that does not heartbeat
// (10 s by default; the node accepts 500 ms to 5 min).
func SessionTimeout(d time.Duration) GroupOption {
	return groupOpt(func(c *groupConfig) { c.sessionTimeout = d })
}

// HeartbeatInterval is the period of heartbeats (1 s by default); it is also how soon a
// member learns of a rebalance. It must be shorter than the session timeout.
func HeartbeatInterval(d time.Duration) GroupOption {
	return groupOpt(func(c *groupConfig) { c.heartbeatInterval = d })
}

// JoinTimeout bounds one join: the coordinator answers when the group's members have all
// joined again, or after its rebalance timeout (60 s by default).
func JoinTimeout(d time.Duration) GroupOption {
	return groupOpt(func(c *groupConfig) { c.joinTimeout = d })
}
