package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// Client is a connection to one node of a cluster: requests from any goroutine are pipelined
// on it, each answer matched to its request by correlation id. When the connection fails, the
// requests in flight on it fail with a *ConnError and the next request dials again, the next
// of the addresses given to Dial first (any node serves any request: it forwards to the
// partition's leader).
type Client struct {
	addr  string
	addrs []string
	cfg   clientConfig

	queue  chan *call // requests for the writer goroutine
	ctx    context.Context
	cancel context.CancelFunc // called by Close: stops the writer and a dial in progress
	wg     sync.WaitGroup     // the writer and the connections' readers
	corr   atomic.Uint32

	mu      sync.Mutex
	pending map[uint32]*call
	cur     *conn // the live connection, or nil
	next    int   // index in addrs of the address to dial first
	closed  bool
}

// Dial connects to the node at addr ("host:port"), or to the first of a comma-separated list
// of nodes that answers.
func Dial(addr string, opts ...Option) (*Client, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{addr: addr, cfg: cfg, queue: make(chan *call, 1024), ctx: ctx, cancel: cancel,
		pending: map[uint32]*call{}}
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.addrs = append(c.addrs, a)
		}
	}
	if len(c.addrs) == 0 {
		cancel()
		return nil, fmt.Errorf("client: no node address in %q", addr)
	}
	if _, err := c.dial(); err != nil {
		cancel()
		return nil, err
	}
	c.wg.Add(1)
	go c.writeLoop()
	return c, nil
}

// Addr is the address (or comma-separated addresses) given to Dial.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection, fails every request in flight with ErrClosed and waits for the
// Client's goroutines. Producers and consumers of the Client must be closed first: what they
// still send fails.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cn := c.cur
	c.mu.Unlock()
	c.cancel()
	if cn != nil {
		c.connDead(cn, ErrClosed)
	}
	c.wg.Wait()
	c.mu.Lock()
	left := c.pending
	c.pending = map[uint32]*call{}
	c.mu.Unlock()
	for _, cl := range left {
		finish(cl, nil, ErrClosed)
	}
	return nil
}

// retry runs fn until it succeeds, fails with an error that is not retriable, or has been
// retried r.retries times, sleeping the backoff between attempts.
func retry(ctx context.Context, r retryPolicy, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !IsRetriable(err) || attempt > r.retries {
			return err
		}
		if serr := sleep(ctx, r.backoff(attempt)); serr != nil {
			return fmt.Errorf("%w; last error: %w", serr, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// admin sends a request answered by a wire.AdminResponse, once, and returns the transport's
// error or the node's.
func (c *Client) admin(ctx context.Context, api wire.API, req any, timeout time.Duration) error {
	var resp wire.AdminResponse
	if err := c.roundTrip(ctx, api, req, &resp, timeout); err != nil {
		return err
	}
	return wireErr(resp.Err)
}

// CreateTopic creates a topic. It is sent once, not retried: errors.Is(err,
// wire.ErrTopicExists) tells a topic that exists (perhaps created by an earlier attempt).
func (c *Client) CreateTopic(ctx context.Context, name string, partitions, replicas int32) error {
	return c.CreateTopicWithConfig(ctx, name, partitions, replicas, wire.TopicConfig{})
}

// CreateTopicWithConfig is CreateTopic with the topic's own settings (retention) over the node's.
func (c *Client) CreateTopicWithConfig(ctx context.Context, name string, partitions, replicas int32, cfg wire.TopicConfig) error {
	err := c.admin(ctx, wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: name, Partitions: partitions, Replicas: replicas, Config: cfg}, c.cfg.requestTimeout)
	return wrap(wire.ApiCreateTopic, name, -1, err)
}

// DeleteTopic deletes a topic and its data. It is sent once, not retried.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	err := c.admin(ctx, wire.ApiDeleteTopic, &wire.DeleteTopicRequest{Name: name}, c.cfg.requestTimeout)
	return wrap(wire.ApiDeleteTopic, name, -1, err)
}

// Drain marks the node the client is connected to (the first address it was given that
// answers) as draining: its replicas move to other nodes, and it is given no new ones;
// `weir topic describe` shows when it holds none. With undo it is no longer draining. The mark
// is kept across the node's restarts. It is sent once, not retried.
func (c *Client) Drain(ctx context.Context, undo bool) error {
	err := c.admin(ctx, wire.ApiDrain, &wire.DrainRequest{Undo: undo}, c.cfg.requestTimeout)
	return wrap(wire.ApiDrain, "", -1, err)
}

// Metadata describes the named topics, or all topics when none is named. A named topic that
// does not exist is listed with its error (TopicInfo.Err, wire.ErrUnknownTopic); the error
// returned is about the request as a whole.
func (c *Client) Metadata(ctx context.Context, topics ...string) (*wire.MetadataResponse, error) {
	resp, err := c.metadata(ctx, c.cfg.retry, topics...)
	if err != nil {
		return nil, wrap(wire.ApiMetadata, "", -1, err)
	}
	return resp, nil
}

// metadata sends a metadata request, retried per r when it fails as a whole (not for the
// errors of single topics).
func (c *Client) metadata(ctx context.Context, r retryPolicy, topics ...string) (*wire.MetadataResponse, error) {
	var resp *wire.MetadataResponse
	err := retry(ctx, r, func() error {
		resp = &wire.MetadataResponse{}
		if err := c.roundTrip(ctx, wire.ApiMetadata, &wire.MetadataRequest{Topics: topics}, resp, c.cfg.requestTimeout); err != nil {
			return err
		}
		return wireErr(resp.Err)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Partitions returns the number of partitions of an existing topic. A topic that does not
// exist is an error at once (errors.Is(err, wire.ErrUnknownTopic)), without the retries a
// Producer makes; the request itself is retried like Metadata.
func (c *Client) Partitions(ctx context.Context, topic string) (int32, error) {
	return c.topicPartitions(ctx, topic, c.cfg.retry)
}

// topicPartitions returns the number of partitions of a topic: one metadata request, retried
// per r when it fails as a whole. The topic's own error (wire.ErrUnknownTopic) is returned,
// not retried: a Producer retries it on its own schedule.
func (c *Client) topicPartitions(ctx context.Context, topic string, r retryPolicy) (int32, error) {
	resp, err := c.metadata(ctx, r, topic)
	if err == nil {
		var n int32
		if n, err = partitionCount(resp, topic); err == nil {
			return n, nil
		}
	}
	return 0, wrap(wire.ApiMetadata, topic, -1, err)
}

// partitionCount finds a topic in a metadata answer and counts its partitions.
func partitionCount(resp *wire.MetadataResponse, topic string) (int32, error) {
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.Err != nil {
			return 0, t.Err
		}
		if len(t.Partitions) == 0 {
			return 0, wire.Errorf(wire.CodeUnknownTopic, "topic %q has no partitions", topic)
		}
		return int32(len(t.Partitions)), nil
	}
	return 0, wire.Errorf(wire.CodeUnknownTopic, "topic %q is not in the metadata answer", topic)
}

// ListOffsets resolves a position in a partition: the first offset still in the log
// (Earliest), the high watermark (Latest), the first record at or after a time (AtTime; the
// high watermark if there is none), or an offset as given (AtOffset, without asking).
func (c *Client) ListOffsets(ctx context.Context, topic string, partition int32, at OffsetSpec) (int64, error) {
	if at.kind == specOffset {
		if at.offset < 0 {
			return -1, wrap(wire.ApiListOffsets, topic, partition, wire.Errorf(wire.CodeInvalidRequest, "negative offset %d", at.offset))
		}
		return at.offset, nil
	}
	return c.listOffsets(ctx, topic, partition, at, c.cfg.retry)
}

func (c *Client) listOffsets(ctx context.Context, topic string, partition int32, at OffsetSpec, r retryPolicy) (int64, error) {
	req := &wire.ListOffsetsRequest{Topic: topic, Partition: partition, Spec: at.wireSpec(), Timestamp: at.ts}
	var off int64
	err := retry(ctx, r, func() error {
		var resp wire.ListOffsetsResponse
		if err := c.roundTrip(ctx, wire.ApiListOffsets, req, &resp, c.cfg.requestTimeout); err != nil {
			return err
		}
		off = resp.Offset
		return wireErr(resp.Err)
	})
	if err != nil {
		return -1, wrap(wire.ApiListOffsets, topic, partition, err)
	}
	return off, nil
}

// FetchCommitted reads a group's committed offsets for some partitions (all the group has
// when parts is empty); a partition with no commit is absent.
func (c *Client) FetchCommitted(ctx context.Context, group string, parts ...wire.TopicPartitions) ([]wire.PartitionOffset, error) {
	var resp wire.FetchCommitResponse
	err := retry(ctx, c.cfg.retry, func() error {
		resp = wire.FetchCommitResponse{}
		if err := c.roundTrip(ctx, wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: group, Partitions: parts}, &resp, c.cfg.requestTimeout); err != nil {
			return err
		}
		return wireErr(resp.Err)
	})
	if err != nil {
		return nil, &Error{Op: wire.ApiFetchCommit.String(), Topic: "", Partition: -1, Err: fmt.Errorf("group %s: %w", group, err)}
	}
	return resp.Offsets, nil
}
