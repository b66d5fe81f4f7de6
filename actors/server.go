package actors

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// ServerConfig tunes the client port. Memory held for clients is bounded by
// MaxConns × MaxInFlightBytes: a connection whose in-flight requests reach either limit is not
// read until some are answered, so TCP pushes back on the producer.
type ServerConfig struct {
	MaxConns         int
	MaxInFlight      int
	MaxInFlightBytes int
	// RequestTimeout bounds a request's wait for its actors (a produce request's own timeout
	// is used when it is shorter).
	RequestTimeout time.Duration
}

func (c *ServerConfig) defaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.MaxInFlightBytes <= 0 {
		c.MaxInFlightBytes = 128 << 20
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
}

// Server is the node's client port (package wire's protocol). Each connection has a reader and
// a writer goroutine and one goroutine per request in flight; Close stops and waits for all.
// The reader hands each request to its actors before it reads the next one, so the requests
// of one connection reach each actor in the order they were sent (see serveConn).
type Server struct {
	n   *Node
	cfg ServerConfig
	ln  net.Listener
	wg  sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newServer(n *Node, addr string, cfg ServerConfig) (*Server, error) {
	cfg.defaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("client port: %w", err)
	}
	s := &Server{n: n, cfg: cfg, ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string {
	if s.ln == nil { // the Kafka listener's handlers
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() {
	s.stop()
	s.wait()
}

// stop stops accepting and closes every connection; requests in flight still wait for their
// actors' answers (see wait).
func (s *Server) stop() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
}

// wait waits for the goroutines of the server and its connections: until every request in
// flight is answered (a long-polling fetch, a join waiting for a rebalance) or has timed out.
// Stopping the actors first answers them at once.
func (s *Server) wait() { s.wg.Wait() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.n.logger.Error("client port accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed || len(s.conns) >= s.cfg.MaxConns {
			full := !s.closed
			s.mu.Unlock()
			if full {
				s.n.logger.Warn("client port: too many connections", "limit", s.cfg.MaxConns, "remote", c.RemoteAddr().String())
				writeFrames(c, wire.ApiError, 0, &wire.AdminResponse{Err: wire.Errorf(wire.CodeOverloaded, "node has %d connections, the limit", s.cfg.MaxConns)})
			}
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

func writeFrames(w io.Writer, api wire.API, corr uint32, v any) {
	if frame, err := wire.EncodeFrame(api, corr, v); err == nil {
		_, _ = w.Write(frame)
	}
}

// budget is a connection's in-flight allowance: a count and a byte total.
type budget struct {
	mu         sync.Mutex
	cond       *sync.Cond
	n, bytes   int
	maxN, maxB int
	closed     bool
}

func (b *budget) acquire(size int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.n > 0 && (b.n >= b.maxN || b.bytes+size > b.maxB) {
		b.cond.Wait()
	}
	if b.closed {
		return false
	}
	b.n++
	b.bytes += size
	return true
}

func (b *budget) release(size int) {
	b.mu.Lock()
	b.n--
	b.bytes -= size
	b.mu.Unlock()
	b.cond.Broadcast()
}

// add counts size more bytes against the budget at once, without waiting: bytes already
// allocated, which later acquires wait for.
func (b *budget) add(size int) {
	b.mu.Lock()
	b.bytes += size
	b.mu.Unlock()
}

// idle waits until nothing is in flight; false if the budget was closed.
func (b *budget) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.n > 0 {
		b.cond.Wait()
	}
	return !b.closed
}

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// maxKeptFrameBuffer is the largest frame buffer a connection keeps for its next frame.
const maxKeptFrameBuffer = 4 << 20

// serveConn reads requests and dispatches each to its actors before reading the next, so that
// the requests of one connection reach a partition (or a coordinator) in the order they were
// sent: Kafka's per-connection ordering, which keeps pipelined produce requests to a partition
// in order. Only the wait for the actors' replies runs in a goroutine per request, and the
// responses go out through one writer goroutine as they are ready, in any order: each carries
// its request's correlation id.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	out := make(chan []byte, s.cfg.MaxInFlight+1)
	var reqs sync.WaitGroup
	b := &budget{maxN: s.cfg.MaxInFlight, maxB: s.cfg.MaxInFlightBytes}
	b.cond = sync.NewCond(&b.mu)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w := bufio.NewWriterSize(c, 64<<10)
		for f := range out {
			if _, err := w.Write(f); err != nil {
				_ = c.Close()
				for range out { // drain so that requests finish
				}
				return
			}
			if len(out) == 0 {
				if err := w.Flush(); err != nil {
					_ = c.Close()
				}
			}
		}
		_ = w.Flush()
	}()
	defer func() {
		b.close()
		reqs.Wait()
		close(out)
		<-writerDone
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	for {
		// The frame's buffer is reused for the next frame: dispatch decodes the request before
		// it returns, and decoding copies what it keeps.
		var f wire.Frame
		var err error
		f, buf, err = wire.ReadFrame(r, buf, wire.MaxFrameSize)
		if cap(buf) > maxKeptFrameBuffer {
			buf = nil
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.n.logger.Info("client connection closed on a bad frame", "remote", c.RemoteAddr().String(), "err", err)
				frame, _ := wire.EncodeFrame(wire.ApiError, 0, &wire.AdminResponse{Err: wire.Errorf(wire.CodeMalformed, "%v", err)})
				out <- frame
			}
			return
		}
		size := len(f.Body)
		if !b.acquire(size) {
			return
		}
		wait := s.dispatch(f) // here, in the order read
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			defer b.release(size)
			resp := wait()
			frame, err := wire.EncodeFrame(f.API, f.Corr, resp)
			if err != nil {
				frame, _ = wire.EncodeFrame(f.API, f.Corr, &wire.AdminResponse{Err: wire.Errorf(wire.CodeUnknown, "encode response: %v", err)})
			}
			out <- frame
		}()
	}
}

// answer waits for the replies to a dispatched request and returns its response.
type answer func() any

// answered is the answer of a request that needs no wait.
func answered(resp any) answer { return func() any { return resp } }

// dispatch decodes one request and sends it to the actors that serve it, on the connection's
// reader goroutine; the answer it returns does the waiting. Every response struct carries its
// error under the msgpack key "e", so an *AdminResponse answers a request of any API when its
// body could not be decoded.
//
// Produce, fetch, list-offsets and the group APIs are sent to their actors here, so each
// actor's mailbox holds a connection's requests in the order read. Topic commands run to the
// end here (they wait until the topic table shows their effect), so the requests read after
// one see the topic created or deleted. Metadata only reads and runs in the answer.
func (s *Server) dispatch(f wire.Frame) answer {
	bad := func(err error) answer { return answered(&wire.AdminResponse{Err: wire.AsError(err)}) }
	switch f.API {
	case wire.ApiProduce:
		var req wire.ProduceRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		return s.produce(&req)
	case wire.ApiFetch:
		var req wire.FetchRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		return s.fetch(&req)
	case wire.ApiMetadata:
		var req wire.MetadataRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		return func() any { return s.metadata(&req) }
	case wire.ApiCreateTopic:
		var req wire.CreateTopicRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		return answered(s.admin(&CreateTopic{Name: req.Name, Partitions: req.Partitions, Replicas: req.Replicas, Config: req.Config}, req.Name, true))
	case wire.ApiDeleteTopic:
		var req wire.DeleteTopicRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		return answered(s.admin(&DeleteTopic{Name: req.Name}, req.Name, false))
	case wire.ApiDrain:
		var req wire.DrainRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		resp := &wire.AdminResponse{}
		if err := s.n.SetDraining(!req.Undo); err != nil {
			resp.Err = wire.Errorf(wire.CodeInvalidRequest, "%v", err)
		}
		return answered(resp)
	case wire.ApiListOffsets:
		var req wire.ListOffsetsRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return bad(err)
		}
		return s.listOffsets(&req)
	case wire.ApiJoinGroup, wire.ApiHeartbeat, wire.ApiLeaveGroup, wire.ApiCommit, wire.ApiFetchCommit:
		return s.group(f)
	}
	return answered(&wire.AdminResponse{Err: wire.Errorf(wire.CodeUnsupported, "API %s (%d)", f.API, uint8(f.API))})
}

// request sends msg to pid (the replica of the partition group, or "") now and returns a
// function that waits for the reply.
func (s *Server) request(pid *actor.PID, group string, msg any, timeout time.Duration) func() (any, *wire.Error) {
	reply, _ := s.requestFrom(pid, group, msg, timeout)
	return reply
}

// requestOnce is request, whose answer also tells whether the request went to dead letters
// (pid does not run: the request was not served).
func (s *Server) requestOnce(pid *actor.PID, group string, msg any, timeout time.Duration) func() (any, *wire.Error, bool) {
	gone := s.n.watch(pid, group)
	f := s.n.rc.RequestFuture(pid, msg, timeout)
	return func() (any, *wire.Error, bool) {
		res, err := s.n.await(f, pid, gone)
		switch {
		case err == nil:
			return res, nil, false
		case errors.Is(err, actor.ErrTimeout):
			return nil, wire.Errorf(wire.CodeTimeout, "no answer from %s within %v", pid.Id, timeout), false
		}
		return nil, wire.Errorf(wire.CodeUnavailable, "%s: %v", pid.Id, err), errors.Is(err, actor.ErrDeadLetter)
	}
}

// idleStopGrace is how long a group request waits for its answer after its coordinator
// stopped for being idle: one it served may still be answered (a commit, by __offsets).
const idleStopGrace = time.Second

// awaitUnlessStopped waits for reply, or until stopped (nil: never) is closed and no answer
// came within idleStopGrace: the request is then reported dead (not served; to be sent again).
// A request served twice that way is a commit from outside the group (an idle coordinator has
// no members) of the same offsets, or a join answered REBALANCE_IN_PROGRESS.
func awaitUnlessStopped(reply func() (any, *wire.Error, bool), stopped <-chan struct{}) (any, *wire.Error, bool) {
	if stopped == nil {
		return reply()
	}
	type result struct {
		res  any
		e    *wire.Error
		dead bool
	}
	done := make(chan result, 1)
	go func() {
		res, e, dead := reply()
		done <- result{res, e, dead}
	}()
	select {
	case r := <-done:
		return r.res, r.e, r.dead
	case <-stopped:
	}
	t := time.NewTimer(idleStopGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.res, r.e, r.dead
	case <-t.C:
		return nil, wire.Errorf(wire.CodeUnavailable, "the group's coordinator stopped (idle) before it answered"), true
	}
}

// requestFrom is request, also returning the PID the request is sent from (its future's).
func (s *Server) requestFrom(pid *actor.PID, group string, msg any, timeout time.Duration) (func() (any, *wire.Error), *actor.PID) {
	gone := s.n.watch(pid, group)
	f := s.n.rc.RequestFuture(pid, msg, timeout)
	return func() (any, *wire.Error) {
		res, err := s.n.await(f, pid, gone)
		if err != nil {
			if errors.Is(err, actor.ErrTimeout) {
				return nil, wire.Errorf(wire.CodeTimeout, "no answer from %s within %v", pid.Id, timeout)
			}
			return nil, wire.Errorf(wire.CodeUnavailable, "%s: %v", pid.Id, err)
		}
		return res, nil
	}, f.PID()
}

// partition returns the PID of a topic's partition, or the error for the response.
//
// A topic this node does not know is answered CodeUnknownTopic at once: __meta is local and a
// topic's creation is answered only once this node serves it (Node.topicCommand), so on one
// node the answer is final for anyone who saw the creation succeed. The code stays retriable
// (wire.Code.Retriable) on purpose: a producer started before its topic is created waits for
// it through its retries (tested in package client), and with several nodes the topic table
// will reach a node some time after the creation, which is what Kafka's
// UNKNOWN_TOPIC_OR_PARTITION being retriable is for. Callers that must fail fast look the
// topic up first, as `weir produce` does: a metadata answer's per-topic error is not retried.
func (s *Server) partition(topic string, p int32) (*actor.PID, *wire.Error) {
	if topic == MetaTopic || topic == OffsetsTopic {
		return nil, wire.Errorf(wire.CodeInvalidRequest, "topic %q is internal", topic)
	}
	pid, err := s.n.Partition(topic, p)
	switch {
	case errors.Is(err, errUnknownTopic):
		return nil, wire.Errorf(wire.CodeUnknownTopic, "%v", err)
	case errors.Is(err, errUnknownPartition):
		return nil, wire.Errorf(wire.CodeUnknownPartition, "%v", err)
	case errors.Is(err, errNoReplica):
		return nil, wire.Errorf(wire.CodeUnavailable, "%v", err)
	case err != nil:
		return nil, wire.AsError(err)
	}
	return pid, nil
}

// produce checks a produce request and sends its batches to their partitions; the answer
// collects their replies.
func (s *Server) produce(req *wire.ProduceRequest) answer {
	if req.Acks != wire.AcksNone && req.Acks != wire.AcksLeader && req.Acks != wire.AcksAll {
		return answered(&wire.ProduceResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "acks %d: want 0 (none), 1 (leader) or -1 (all)", req.Acks)})
	}
	timeout := s.cfg.RequestTimeout
	if req.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(req.TimeoutMs)*time.Millisecond)
	}
	deadline := time.Now().Add(timeout)
	resp := &wire.ProduceResponse{Results: make([]wire.ProduceResult, len(req.Batches))}
	futures := make([]*actor.Future, len(req.Batches))
	pids := make([]*actor.PID, len(req.Batches))
	gone := make([]<-chan struct{}, len(req.Batches))
	for i, pb := range req.Batches {
		resp.Results[i] = wire.ProduceResult{Partition: pb.Partition, BaseOffset: -1}
		if len(pb.Batch) > storage.MaxBatchSize {
			resp.Results[i].Err = wire.Errorf(wire.CodeRecordTooLarge, "batch of %d bytes, limit %d", len(pb.Batch), storage.MaxBatchSize)
			continue
		}
		pid, e := s.partition(req.Topic, pb.Partition)
		if e != nil {
			resp.Results[i].Err = e
			continue
		}
		msg := &Produce{Batch: pb.Batch, Acks: req.Acks, Deadline: deadline.UnixMilli()}
		if req.Acks == wire.AcksNone {
			s.n.rc.Send(pid, msg)
			continue
		}
		pids[i], gone[i] = pid, s.n.watch(pid, partitionGroup(req.Topic, pb.Partition))
		futures[i] = s.n.rc.RequestFuture(pid, msg, timeout+time.Second)
	}
	return func() any {
		for i, f := range futures {
			if f == nil {
				continue
			}
			res, err := s.n.await(f, pids[i], gone[i])
			switch {
			case errors.Is(err, actor.ErrTimeout):
				resp.Results[i].Err = wire.Errorf(wire.CodeTimeout, "partition %d: no answer within %v", req.Batches[i].Partition, timeout)
				continue
			case err != nil: // the partition stopped meanwhile
				resp.Results[i].Err = wire.Errorf(wire.CodeUnavailable, "partition %d: %v", req.Batches[i].Partition, err)
				continue
			}
			r := res.(*ProduceReply)
			resp.Results[i].BaseOffset, resp.Results[i].Err = r.BaseOffset, r.Err
		}
		return resp
	}
}

func (s *Server) fetch(req *wire.FetchRequest) answer {
	pid, e := s.partition(req.Topic, req.Partition)
	if e != nil {
		return answered(&wire.FetchResponse{Err: e})
	}
	wait := time.Duration(max(req.MaxWaitMs, 0)) * time.Millisecond
	if wait > time.Minute {
		return answered(&wire.FetchResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "max wait %v is over a minute", wait)})
	}
	reply := s.request(pid, partitionGroup(req.Topic, req.Partition), &Fetch{Offset: req.Offset, MaxBytes: req.MaxBytes, MaxWaitMs: req.MaxWaitMs}, wait+s.cfg.RequestTimeout)
	return func() any {
		res, e := reply()
		if e != nil {
			return &wire.FetchResponse{Err: e}
		}
		return res.(*wire.FetchResponse)
	}
}

// poll is fetch for a long poll its caller may stop waiting for: withdraw has the partition
// answer it at once (else it stays parked until its MaxWait, and reads the log for a reader
// that is gone whenever records arrive).
func (s *Server) poll(req *wire.FetchRequest) (ans answer, withdraw func()) {
	pid, e := s.partition(req.Topic, req.Partition)
	if e != nil {
		return answered(&wire.FetchResponse{Err: e}), func() {}
	}
	wait := time.Duration(max(req.MaxWaitMs, 0)) * time.Millisecond
	if wait > time.Minute {
		return answered(&wire.FetchResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "max wait %v is over a minute", wait)}), func() {}
	}
	reply, waiter := s.requestFrom(pid, partitionGroup(req.Topic, req.Partition), &Fetch{Offset: req.Offset, MaxBytes: req.MaxBytes, MaxWaitMs: req.MaxWaitMs}, wait+s.cfg.RequestTimeout)
	ans = func() any {
		res, e := reply()
		if e != nil {
			return &wire.FetchResponse{Err: e}
		}
		return res.(*wire.FetchResponse)
	}
	return ans, func() { s.n.rc.Send(pid, &WithdrawFetch{Address: waiter.Address, ID: waiter.Id}) }
}

func (s *Server) listOffsets(req *wire.ListOffsetsRequest) answer {
	pid, e := s.partition(req.Topic, req.Partition)
	if e != nil {
		return answered(&wire.ListOffsetsResponse{Offset: -1, Err: e})
	}
	reply := s.request(pid, partitionGroup(req.Topic, req.Partition), &ListOffsets{Spec: req.Spec, Timestamp: req.Timestamp}, s.cfg.RequestTimeout)
	return func() any {
		res, e := reply()
		if e != nil {
			return &wire.ListOffsetsResponse{Offset: -1, Err: e}
		}
		return res.(*wire.ListOffsetsResponse)
	}
}

func (s *Server) metadata(req *wire.MetadataRequest) *wire.MetadataResponse {
	resp := &wire.MetadataResponse{Nodes: []wire.NodeInfo{{ID: s.n.cfg.NodeID, Addr: s.Addr()}}}
	if s.n.cluster != nil {
		resp.Nodes = resp.Nodes[:0]
		for _, mb := range s.n.Members() {
			resp.Nodes = append(resp.Nodes, wire.NodeInfo{ID: mb.Node, Addr: mb.Client})
		}
	}
	names := req.Topics
	if len(names) == 0 {
		names = s.n.TopicNames()
	}
	for _, name := range names {
		resp.Topics = append(resp.Topics, s.describe(name))
	}
	return resp
}

// describe asks every partition of a topic for its status.
func (s *Server) describe(name string) wire.TopicInfo {
	tm, ok := s.n.Topic(name)
	if !ok {
		return wire.TopicInfo{Name: name, Err: wire.Errorf(wire.CodeUnknownTopic, "topic %q does not exist", name)}
	}
	info := wire.TopicInfo{Name: name, Replicas: tm.Replicas, Config: tm.Config, Partitions: make([]wire.PartitionInfo, tm.Partitions)}
	futures := make([]*actor.Future, tm.Partitions)
	for p := range tm.Partitions {
		info.Partitions[p] = wire.PartitionInfo{Partition: p, Replicas: []string{s.n.cfg.NodeID}, HighWatermark: -1, StartOffset: -1, EndOffset: -1}
		if s.n.cluster != nil {
			info.Partitions[p].Replicas = info.Partitions[p].Replicas[:0]
			for _, id := range tm.replicasOf(p) {
				info.Partitions[p].Replicas = append(info.Partitions[p].Replicas, s.n.nodeName(id))
			}
		}
		if pid, err := s.n.Partition(name, p); err == nil {
			futures[p] = s.n.rc.RequestFuture(pid, &GetStatus{}, 5*time.Second)
		}
	}
	for p, f := range futures {
		if f == nil {
			continue
		}
		res, err := resultOf(f)
		st, ok := res.(*Status)
		if err != nil || !ok {
			continue
		}
		if addr := s.n.peerAddr(st.Leader); st.Leader != st.NodeID && addr != "" {
			// A follower answered: the leader knows the group's members.
			pid := actor.NewPID(addr, fmt.Sprintf("%s/partition/%s/%d", rootName, name, p))
			res, err := resultOf(s.n.rc.RequestFuture(pid, &GetStatus{}, 5*time.Second))
			if ls, ok := res.(*Status); err == nil && ok && ls.Err == nil && ls.Leader == ls.NodeID {
				st = ls
			}
		}
		pi := &info.Partitions[p]
		if st.Leader != 0 && (st.Leader == st.NodeID || s.n.cluster != nil) {
			pi.Leader = s.n.nodeName(st.Leader)
		}
		pi.StartOffset, pi.HighWatermark, pi.EndOffset = st.StartOffset, st.HighWatermark, st.EndOffset
		if st.Leader == st.NodeID {
			for _, id := range st.Voters {
				pi.Voters = append(pi.Voters, s.n.nodeName(id))
			}
			for _, id := range st.Learners {
				pi.Learners = append(pi.Learners, s.n.nodeName(id))
			}
		}
	}
	return info
}

// admin sends a topic command to __meta through the node.
func (s *Server) admin(msg any, name string, create bool) *wire.AdminResponse {
	return &wire.AdminResponse{Err: s.n.topicCommand(msg, name, create, false, s.cfg.RequestTimeout)}
}

// group sends a consumer-group request to the group's coordinator (commits, offset reads to
// __offsets); the answer waits for the reply.
func (s *Server) group(f wire.Frame) answer {
	timeout := s.cfg.RequestTimeout
	var group string
	var msg any
	switch f.API {
	case wire.ApiJoinGroup:
		var req wire.JoinGroupRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return answered(&wire.JoinGroupResponse{Err: wire.AsError(err)})
		}
		group, msg = req.Group, &JoinGroup{req}
	case wire.ApiHeartbeat:
		var req wire.HeartbeatRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return answered(&wire.AdminResponse{Err: wire.AsError(err)})
		}
		group, msg = req.Group, &Heartbeat{req}
	case wire.ApiLeaveGroup:
		var req wire.LeaveGroupRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return answered(&wire.AdminResponse{Err: wire.AsError(err)})
		}
		group, msg = req.Group, &LeaveGroup{req}
	case wire.ApiCommit:
		var req wire.CommitRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return answered(&wire.AdminResponse{Err: wire.AsError(err)})
		}
		for _, o := range req.Offsets {
			tm, ok := s.n.Topic(o.Topic)
			if !ok {
				return answered(&wire.AdminResponse{Err: wire.Errorf(wire.CodeUnknownTopic, "commit: topic %q does not exist", o.Topic)})
			}
			// Nor a partition the topic does not have: __offsets would keep its offset for
			// ever, so that commits naming a million of them grew every node's offsets table.
			if o.Partition < 0 || o.Partition >= tm.Partitions {
				return answered(&wire.AdminResponse{Err: wire.Errorf(wire.CodeUnknownPartition, "commit: topic %q has no partition %d", o.Topic, o.Partition)})
			}
			if o.Offset < 0 {
				return answered(&wire.AdminResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "commit: negative offset %d for %s/%d", o.Offset, o.Topic, o.Partition)})
			}
		}
		group, msg = req.Group, &CommitGroup{req}
	case wire.ApiFetchCommit:
		var req wire.FetchCommitRequest
		if err := wire.Decode(f.API, f.Body, &req); err != nil {
			return answered(&wire.FetchCommitResponse{Err: wire.AsError(err)})
		}
		reply := s.request(s.n.internalPID("offsets"), OffsetsTopic+"/0", &FetchOffsets{Group: req.Group, Partitions: req.Partitions}, timeout)
		return func() any {
			res, e := reply()
			if e != nil {
				return &wire.FetchCommitResponse{Err: e}
			}
			return res
		}
	}
	if group == "" {
		return answered(&wire.AdminResponse{Err: wire.Errorf(wire.CodeInvalidRequest, "%s: empty group name", f.API)})
	}
	pid, err := s.n.coordinatorFor(group)
	if err != nil {
		return answered(&wire.AdminResponse{Err: wire.AsError(err)})
	}
	// A request still in the coordinator's mailbox when the root stops it for being idle is
	// dropped without a dead letter: it is sent again as for one that found it stopped.
	stopped := s.n.idleStop(group, pid)
	reply := s.requestOnce(pid, OffsetsTopic+"/0", msg, timeout) // a coordinator commits through __offsets
	return func() any {
		res, e, dead := awaitUnlessStopped(reply, stopped)
		if dead {
			// The coordinator this node knew stopped (idle, or moved) before the request
			// reached it, so it was not served: the group's root is asked again, once.
			s.n.forgetCoordinator(group)
			if pid, err := s.n.coordinatorFor(group); err == nil {
				res, e, _ = s.requestOnce(pid, OffsetsTopic+"/0", msg, timeout)()
			}
		}
		if e != nil {
			if e.Code == wire.CodeTimeout || e.Code == wire.CodeUnavailable {
				s.n.forgetCoordinator(group) // it may have stopped: find it again next time
			}
			return &wire.AdminResponse{Err: e}
		}
		if r, ok := res.(*ProduceReply); ok { // a commit, answered by __offsets
			return &wire.AdminResponse{Err: r.Err}
		}
		return res
	}
}
