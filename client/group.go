package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// GroupConsumer is a member of a consumer group: the group's coordinator on the node assigns
// each partition of the group's topics to one member, and the group's committed offsets say
// where a member starts. Rebalances (a member joins, leaves or goes silent) are noticed by a
// heartbeat goroutine and handled by the next Poll, which commits what it can and joins
// again; partitions the member keeps are read on from where it was, new ones from their
// committed offsets (or the ResetPolicy's end when there are none).
//
// Delivery is at least once: records polled but not committed when their partition moves to
// another member are read again there. During a rebalance the node still takes the commits of
// the generation that is ending for the partitions the member owns in it, so the commit Poll
// makes before joining again counts; once the member has a new generation, a commit with the
// old one is refused and Commit returns ErrRebalanced.
//
// Concurrency: Poll, PollRecords, Commit and Close belong to one goroutine at a time; Pause,
// Resume, Position, Assigned and Member may be called from any goroutine.
type GroupConsumer struct {
	c      *Client
	group  string
	topics []string
	cfg    groupConfig
	f      *fetcher

	rejoin chan struct{} // capacity 1: the heartbeat learnt of a rebalance
	ctx    context.Context
	cancel context.CancelFunc // stops the heartbeat goroutine
	wg     sync.WaitGroup

	member string // chosen here, so that a join cut short leaves no member the client cannot name

	mu         sync.Mutex // what the heartbeat goroutine shares
	generation int32      // of the last join answered; 0 before
	joined     bool       // false: the next Poll joins
	assigned   []wire.TopicPartitions

	// Owned by the polling goroutine.
	committed map[topicPartition]int64
	joinSent  bool // a join was sent: the coordinator may know the member
	closed    bool
}

// NewGroupConsumer returns a member of group reading topics. It joins the group on the first
// Poll, under a member id chosen here (see Member): a join that Poll's context cuts short is
// taken up by the next Poll as the same member.
func (c *Client) NewGroupConsumer(group string, topics []string, opts ...GroupOption) (*GroupConsumer, error) {
	cfg := groupConfig{fetchConfig: c.cfg.fetch(ResetLatest), sessionTimeout: 10 * time.Second,
		heartbeatInterval: time.Second, joinTimeout: time.Minute}
	for _, o := range opts {
		o.applyGroup(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if group == "" {
		return nil, errors.New("client: NewGroupConsumer: empty group name")
	}
	if len(topics) == 0 {
		return nil, errors.New("client: NewGroupConsumer: no topics")
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &GroupConsumer{c: c, group: group, member: newMemberID(), topics: append([]string(nil), topics...), cfg: cfg,
		f: newFetcher(c, cfg.fetchConfig), rejoin: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		committed: map[topicPartition]int64{}}
	g.wg.Add(1)
	go g.heartbeat()
	return g, nil
}

// newMemberID is a random member id. The coordinator takes a join under an id it does not
// know as a new member's.
func newMemberID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "go-" + hex.EncodeToString(b[:])
}

func (g *GroupConsumer) wrap(op wire.API, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op.String(), Partition: -1, Err: fmt.Errorf("group %s: %w", g.group, err)}
}

// Poll returns the next messages of the member's partitions (see Consumer.Poll), joining the
// group first when it has not joined or a rebalance was announced.
func (g *GroupConsumer) Poll(ctx context.Context) ([]Message, error) { return g.PollRecords(ctx, 0) }

// PollRecords is Poll returning at most max messages (all there are when max <= 0).
func (g *GroupConsumer) PollRecords(ctx context.Context, max int) ([]Message, error) {
	if g.closed {
		return nil, ErrClosed
	}
	g.mu.Lock()
	joined := g.joined
	g.mu.Unlock()
	if !joined {
		if err := g.join(ctx); err != nil {
			return nil, err
		}
	}
	return g.f.poll(ctx, max, g.rejoin)
}

// join commits what it can, joins the group, and fetches the partitions assigned.
func (g *GroupConsumer) join(ctx context.Context) error {
	g.mu.Lock()
	wasMember := g.generation > 0
	g.mu.Unlock()
	if wasMember {
		if err := g.commit(ctx); err != nil && !errors.Is(err, ErrRebalanced) {
			g.c.cfg.logger.Info("client: commit before rejoining failed", "group", g.group, "err", err)
		}
	}
	select { // this join answers every rebalance announced so far
	case <-g.rejoin:
	default:
	}
	req := &wire.JoinGroupRequest{Group: g.group, MemberID: g.member, Topics: g.topics,
		SessionTimeoutMs: int32(g.cfg.sessionTimeout / time.Millisecond)}
	g.joinSent = true
	var resp wire.JoinGroupResponse
	err := retry(ctx, g.cfg.retry, func() error {
		resp = wire.JoinGroupResponse{}
		if err := g.c.roundTrip(ctx, wire.ApiJoinGroup, req, &resp, g.cfg.joinTimeout); err != nil {
			return err
		}
		if e := wireErr(resp.Err); e != nil {
			if isRebalance(e) { // joined again meanwhile, or the coordinator restarted: retry
				return wire.Errorf(wire.CodeUnavailable, "%v", e)
			}
			return e
		}
		return nil
	})
	if err != nil {
		return g.wrap(wire.ApiJoinGroup, err)
	}
	// The member is in the new generation from here on, whatever fails below (the next Poll
	// joins again). Its commits carry the new generation, so the fetcher must hold no
	// partition the member does not own in it.
	g.mu.Lock()
	g.generation, g.assigned = resp.Generation, resp.Assigned
	g.mu.Unlock()
	var parts []topicPartition
	for _, t := range resp.Assigned {
		for _, p := range t.Partitions {
			parts = append(parts, topicPartition{t.Topic, p})
		}
	}
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].topic != parts[j].topic {
			return parts[i].topic < parts[j].topic
		}
		return parts[i].partition < parts[j].partition
	})
	// Partitions kept from the last generation go on from the member's position; new ones
	// start from their committed offsets.
	had := map[topicPartition]bool{}
	for _, p := range g.f.parts {
		had[p.topicPartition] = true
	}
	var kept []topicPartition
	var fresh []wire.TopicPartitions
	for _, tp := range parts {
		if had[tp] {
			kept = append(kept, tp)
			continue
		}
		if n := len(fresh); n > 0 && fresh[n-1].Topic == tp.topic {
			fresh[n-1].Partitions = append(fresh[n-1].Partitions, tp.partition)
		} else {
			fresh = append(fresh, wire.TopicPartitions{Topic: tp.topic, Partitions: []int32{tp.partition}})
		}
	}
	committed := map[topicPartition]int64{}
	if len(fresh) > 0 {
		offs, err := g.c.FetchCommitted(ctx, g.group, fresh...)
		if err != nil {
			g.f.assign(kept, nil) // the kept partitions go on; none is new
			g.forgetCommitted(kept)
			return err
		}
		for _, o := range offs {
			committed[topicPartition{o.Topic, o.Partition}] = o.Offset
		}
	}
	reset := Latest()
	if g.cfg.reset == ResetEarliest {
		reset = Earliest()
	}
	g.f.assign(parts, func(tp topicPartition) OffsetSpec {
		if off, ok := committed[tp]; ok {
			return AtOffset(off)
		}
		return reset
	})
	g.forgetCommitted(parts)
	for tp, off := range committed {
		g.committed[tp] = off
	}
	g.mu.Lock()
	g.joined = true
	g.mu.Unlock()
	g.c.cfg.logger.Info("client: joined group", "group", g.group, "member", g.member, "generation", resp.Generation,
		"members", resp.Members, "partitions", len(parts))
	return nil
}

// forgetCommitted drops the commits known of partitions not in parts.
func (g *GroupConsumer) forgetCommitted(parts []topicPartition) {
	for tp := range g.committed {
		if !containsTP(parts, tp) {
			delete(g.committed, tp)
		}
	}
}

func containsTP(parts []topicPartition, tp topicPartition) bool {
	for _, p := range parts {
		if p == tp {
			return true
		}
	}
	return false
}

// heartbeat is the heartbeat goroutine: it keeps the member in the group and, when the
// coordinator announces a rebalance, makes the next Poll join again.
func (g *GroupConsumer) heartbeat() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		req := &wire.HeartbeatRequest{Group: g.group, MemberID: g.member, Generation: g.generation}
		joined := g.joined
		g.mu.Unlock()
		if !joined {
			continue
		}
		err := g.c.admin(g.ctx, wire.ApiHeartbeat, req, min(g.cfg.requestTimeout, g.cfg.sessionTimeout))
		switch {
		case err == nil:
		case isRebalance(err):
			g.needRejoin(req.Generation)
		default:
			g.c.cfg.logger.Debug("client: heartbeat failed", "group", g.group, "err", err)
		}
	}
}

// needRejoin makes the next Poll join again, and a Poll waiting return, unless a join after
// generation happened (the news is old: the member joined since).
func (g *GroupConsumer) needRejoin(generation int32) {
	g.mu.Lock()
	stale := g.generation == generation && g.joined
	if stale {
		g.joined = false
	}
	g.mu.Unlock()
	if stale {
		select {
		case g.rejoin <- struct{}{}:
		default:
		}
	}
}

// Commit stores the positions of what Poll returned, for the partitions whose position moved
// since the last commit. When the node refuses it because the member's generation is over (a
// rebalance completed without it, or it was dropped), the error is ErrRebalanced (joined with
// the node's), and the next Poll joins again.
func (g *GroupConsumer) Commit(ctx context.Context) error {
	if g.closed {
		return ErrClosed
	}
	return g.commit(ctx)
}

func (g *GroupConsumer) commit(ctx context.Context) error {
	var offs []wire.PartitionOffset
	for _, o := range g.f.positions() {
		if off, ok := g.committed[topicPartition{o.Topic, o.Partition}]; !ok || off != o.Offset {
			offs = append(offs, o)
		}
	}
	if len(offs) == 0 {
		return nil
	}
	g.mu.Lock()
	req := &wire.CommitRequest{Group: g.group, MemberID: g.member, Generation: g.generation, Offsets: offs}
	g.mu.Unlock()
	err := retry(ctx, g.cfg.retry, func() error {
		return g.c.admin(ctx, wire.ApiCommit, req, g.cfg.requestTimeout)
	})
	if err != nil {
		if isRebalance(err) {
			g.needRejoin(req.Generation)
			return fmt.Errorf("%w: %w", ErrRebalanced, g.wrap(wire.ApiCommit, err))
		}
		return g.wrap(wire.ApiCommit, err)
	}
	for _, o := range offs {
		g.committed[topicPartition{o.Topic, o.Partition}] = o.Offset
	}
	return nil
}

// Close commits the positions of what Poll returned, leaves the group (its partitions go to
// the other members at once) and stops the heartbeat goroutine. It does not close the Client.
func (g *GroupConsumer) Close() error { return g.close(true) }

// Abort is Close without the commit: for a member that could not process what it polled last,
// whose records since the last Commit go again to whoever reads their partitions next.
func (g *GroupConsumer) Abort() error { return g.close(false) }

func (g *GroupConsumer) close(commit bool) error {
	if g.closed {
		return nil
	}
	g.closed = true
	g.cancel()
	g.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.requestTimeout)
	defer cancel()
	var errs []error
	if g.joinSent {
		if commit {
			if err := g.commit(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := g.c.admin(ctx, wire.ApiLeaveGroup, &wire.LeaveGroupRequest{Group: g.group, MemberID: g.member}, g.cfg.requestTimeout); err != nil {
			errs = append(errs, g.wrap(wire.ApiLeaveGroup, err))
		}
	}
	g.f.close()
	g.mu.Lock()
	g.joined, g.assigned = false, nil
	g.mu.Unlock()
	return errors.Join(errs...)
}

// Pause stops returning messages of some partitions of topic until Resume.
func (g *GroupConsumer) Pause(topic string, partitions ...int32) {
	for _, p := range partitions {
		g.f.pause(topicPartition{topic, p})
	}
}

// Resume undoes Pause.
func (g *GroupConsumer) Resume(topic string, partitions ...int32) {
	for _, p := range partitions {
		g.f.resume(topicPartition{topic, p})
	}
}

// Position is the offset of the next message Poll returns in a partition, or -1 if the
// member does not read it or has not resolved its position yet.
func (g *GroupConsumer) Position(topic string, partition int32) int64 {
	return g.f.position(topicPartition{topic, partition})
}

// Assigned lists the partitions of the member's current generation.
func (g *GroupConsumer) Assigned() []wire.TopicPartitions {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]wire.TopicPartitions, len(g.assigned))
	for i, t := range g.assigned {
		out[i] = wire.TopicPartitions{Topic: t.Topic, Partitions: append([]int32(nil), t.Partitions...)}
	}
	return out
}

// Member is the member's id, chosen by NewGroupConsumer, and its generation (0 before it
// joined).
func (g *GroupConsumer) Member() (id string, generation int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.member, g.generation
}
