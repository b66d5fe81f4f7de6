package actors

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
)

// The Kafka protocol listener (issue 7, first slice): a node opened with NodeConfig.KafkaAddr
// also speaks the Kafka wire protocol, so that Kafka clients produce to and fetch from Weir's own
// topics. Requests are decoded and responses encoded with franz-go's kmsg; each request is
// translated into the same calls the node's own client port makes (Server.produce, fetch,
// listOffsets, metadata), so topics, offsets and leaders are Weir's.
//
// This slice serves one node: ApiVersions, Metadata, Produce (record batch v2, CRC32C checked;
// none, gzip, snappy, lz4 and zstd compression), ListOffsets, Fetch and the consumer group APIs
// (kafka_groups.go). Topic admin, InitProducerId and the addresses of other nodes come next
// (docs/kafka.md).

// kafkaClusterID is the cluster id Metadata reports and ApiVersions v5 checks.
const kafkaClusterID = "weir"

// kafkaRebootstrapRequired answers an ApiVersions v5 meant for another cluster or node.
const kafkaRebootstrapRequired = 129

// maxKafkaFrame bounds one request (Kafka's socket.request.max.bytes is 100 MiB), and
// maxKafkaFrameBeforeAuth one before a connection that must authenticate did (Kafka's
// sasl.server.max.receive.size).
const (
	maxKafkaFrame           = 100 << 20
	maxKafkaFrameBeforeAuth = 512 << 10
)

// kafkaIdleTimeout closes a connection that sends no request for so long (Kafka's
// connections.max.idle.ms); kafkaFrameTimeout one that takes longer to send a request whose
// size it announced.
const (
	kafkaIdleTimeout  = 10 * time.Minute
	kafkaFrameTimeout = time.Minute
)

// kafkaWriteTimeout closes a connection whose client takes none of an answer's bytes for so
// long (it stopped reading): the writer would block on the full socket for ever, and the reader,
// waiting for in-flight slots only the writer releases, never reaches its idle timeout. A
// variable for tests.
var kafkaWriteTimeout = kafkaIdleTimeout

// readFrame reads a request body of n bytes; a large one is read into a buffer that grows as
// the bytes arrive, so that a size announced and not sent costs nothing. A frame of at most
// maxPooledFrame bytes is read into a buffer from kafkaFrames when it has one large enough.
func readFrame(r io.Reader, n int) ([]byte, error) {
	if n <= maxPooledFrame {
		var b []byte
		if p, ok := kafkaFrames.Get().(*[]byte); ok && cap(*p) >= n {
			b = (*p)[:n]
		} else {
			b = make([]byte, n)
		}
		_, err := io.ReadFull(r, b)
		return b, err
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// kafkaFrames holds the frames of produce requests served: a produce copies the records it
// keeps into Weir batches before the next request is read, so its frame is read into again
// (a 6-partition request of the Java producer's 16 KiB batches is 100 KiB, as much again as the
// batches it converts to). Frames of other requests are not put back: their decoded requests
// may keep slices of them (a group member's metadata, a fetch in its goroutine).
var kafkaFrames sync.Pool

// maxPooledFrame bounds the frames read into pooled buffers (a larger one grows as it arrives).
const maxPooledFrame = 1 << 20

// reuseFrame puts a produce request's frame back into kafkaFrames once it was served.
func reuseFrame(b []byte) {
	if cap(b) <= maxPooledFrame {
		kafkaFrames.Put(&b)
	}
}

// kafkaAPIs are the APIs and versions served: the version ranges the clients of issue 7 use,
// within what this code fills in.
var kafkaAPIs = []struct{ key, min, max int16 }{
	{int16(kmsg.Produce), 3, 9},
	{int16(kmsg.Fetch), 4, 12},
	{int16(kmsg.ListOffsets), 1, 10}, // v7 max timestamp, v8 earliest local, v9 latest tiered
	{int16(kmsg.Metadata), 1, 12},
	{int16(kmsg.ApiVersions), 0, 5}, // v4 is v3; v5 adds the cluster and node the client expects
	{int16(kmsg.FindCoordinator), 0, 4},
	{int16(kmsg.JoinGroup), 0, 9},
	{int16(kmsg.SyncGroup), 0, 5},
	{int16(kmsg.Heartbeat), 0, 4},
	{int16(kmsg.LeaveGroup), 0, 5},
	{int16(kmsg.OffsetCommit), 0, 8},
	{int16(kmsg.OffsetFetch), 0, 7},
	{int16(kmsg.CreateTopics), 0, 7},
	{int16(kmsg.DeleteTopics), 0, 6},
	{int16(kmsg.InitProducerID), 0, 4},
	{int16(kmsg.ListGroups), 0, 5},
	{int16(kmsg.DescribeGroups), 0, 6},
	{int16(kmsg.DescribeConfigs), 0, 4},
	{int16(kmsg.DescribeCluster), 0, 2},
	{int16(kmsg.DescribeTopicPartitions), 0, 0},
	{int16(kmsg.DeleteGroups), 0, 3}, // v3 (Kafka 4.4) adds error messages
}

// kafkaSASLAPIs are served when SASL users are configured. SaslHandshake v0 is listed because
// clients look for it (librdkafka's SASL feature check), but only the framed SaslAuthenticate
// that follows a handshake is read: a client that sends the unframed tokens of v0 instead has
// its connection closed.
var kafkaSASLAPIs = []struct{ key, min, max int16 }{
	{int16(kmsg.SASLHandshake), 0, 1},
	{int16(kmsg.SASLAuthenticate), 0, 2},
}

func kafkaVersions(key int16) (lo, hi int16, ok bool) {
	for _, a := range kafkaSASLAPIs {
		if a.key == key {
			return a.min, a.max, true
		}
	}
	for _, a := range kafkaAPIs {
		if a.key == key {
			return a.min, a.max, true
		}
	}
	return 0, 0, false
}

// kafkaListener accepts Kafka protocol connections.
type kafkaListener struct {
	n      *Node
	srv    *Server // the request handlers of the client port (no listener of its own)
	ln     net.Listener
	logger *slog.Logger

	assigned kafkaAssignments // consumer groups: each member's share, for its SyncGroup
	sec      KafkaSecurity
	fetchMem *fetchMemory // the bytes fetches read and hold until answered, over all connections

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newKafkaListener(n *Node, addr string, cfg ServerConfig, sec KafkaSecurity, fetchMemory int) (*kafkaListener, error) {
	cfg.defaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kafka port: %w", err)
	}
	if sec.TLS != nil {
		ln = tls.NewListener(ln, sec.TLS)
	}
	k := &kafkaListener{n: n, srv: &Server{n: n, cfg: cfg}, ln: ln, logger: n.logger.With("listener", "kafka"), conns: map[net.Conn]struct{}{}, sec: sec,
		fetchMem: newFetchMemory(fetchMemory)}
	k.wg.Add(1)
	go k.accept()
	return k, nil
}

// Addr is the address the listener listens on.
func (k *kafkaListener) Addr() string { return k.ln.Addr().String() }

// advertised is the address clients are told to connect to.
func (k *kafkaListener) advertised() string {
	if k.n.cfg.KafkaAdvertise != "" {
		return k.n.cfg.KafkaAdvertise
	}
	return k.Addr()
}

func (k *kafkaListener) accept() {
	defer k.wg.Done()
	for {
		c, err := k.ln.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		if k.conns == nil {
			k.mu.Unlock()
			c.Close()
			return
		}
		if len(k.conns) >= k.srv.cfg.MaxConns {
			k.mu.Unlock()
			k.logger.Warn("kafka: too many connections; closing a new one", "limit", k.srv.cfg.MaxConns, "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		k.conns[c] = struct{}{}
		k.mu.Unlock()
		k.wg.Add(1)
		go k.serve(c)
	}
}

// stop stops accepting and closes every connection; wait then waits for their goroutines
// (which may wait for actors' answers: the node stops its actors in between).
func (k *kafkaListener) stop() {
	k.ln.Close()
	k.mu.Lock()
	for c := range k.conns {
		c.Close()
	}
	k.conns = nil
	k.mu.Unlock()
}

func (k *kafkaListener) wait() { k.wg.Wait() }

// kafkaMaxInFlight bounds the requests a connection has read and not answered yet (Kafka's
// clients keep at most 5 in flight); ServerConfig.MaxInFlight lowers it, and
// ServerConfig.MaxInFlightBytes bounds the bytes of those requests' frames and of the batches
// their produces decompressed to. A connection at either bound is not read until answers went
// out, so TCP pushes back on the client.
const kafkaMaxInFlight = 16

// kafkaPending is a request read and not answered yet: resp is set (nil: the connection is
// closed instead of answering) when done is closed.
type kafkaPending struct {
	done  chan struct{}
	resp  []byte        // the response frame, without its size
	wait  func() []byte // if set, returns resp: the writer calls it in its turn (a produce)
	size  int           // the request frame's size, held against the connection's budget
	close bool          // close the connection after this answer (a failed authentication)
	sent  chan struct{} // a fetch's: closed by the writer once it wrote the answer
	acked chan struct{} // a produce's: closed by the writer once the partitions answered
}

// kafkaReady is the done channel of answers complete when read.
var kafkaReady = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// serve reads a connection's requests and answers them in the order read (Kafka clients
// pipeline requests and match the answers by order). It reads on while earlier requests are in
// progress, up to kafkaMaxInFlight of them and MaxInFlightBytes of their frames: each request
// is handed to its actors here, in the order read (so pipelined produces reach a partition in
// the order sent, which an idempotent producer's sequences need), and a writer goroutine writes
// the answers in order as they complete. Before a connection that must authenticate did, each
// answer goes out before the next request is read.
func (k *kafkaListener) serve(c net.Conn) {
	defer k.wg.Done()
	b := &budget{maxN: min(k.srv.cfg.MaxInFlight, kafkaMaxInFlight), maxB: k.srv.cfg.MaxInFlightBytes}
	b.cond = sync.NewCond(&b.mu)
	queue := make(chan *kafkaPending, kafkaMaxInFlight) // never full: the budget admits fewer
	quit := make(chan struct{})                         // the answers are not wanted any more
	var reqs sync.WaitGroup                             // goroutines completing answers
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer b.close() // a reader waiting for the budget gives up
		if err := k.write(c, queue, quit, b); err != nil {
			k.logger.Debug("kafka: connection write", "remote", c.RemoteAddr().String(), "err", err)
		}
		_ = c.Close() // a reader blocked on the connection gives up
	}()
	graceful := false // the reader stopped on purpose: the answers queued still go out
	defer func() {
		if !graceful {
			// The answers are not wanted: a writer blocked on a client that does not read
			// gives up at once.
			close(quit)
			_ = c.Close()
		}
		close(queue)
		<-writerDone
		if graceful {
			close(quit)
		}
		reqs.Wait()
		c.Close()
		k.mu.Lock()
		if k.conns != nil {
			delete(k.conns, c)
		}
		k.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	var size [4]byte
	st := &kafkaConn{remote: c.RemoteAddr().String(), writerDone: writerDone}
	for {
		if !k.authenticated(st) && !b.idle() {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(kafkaIdleTimeout))
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return
		}
		limit := int32(maxKafkaFrame)
		if !k.authenticated(st) {
			limit = maxKafkaFrameBeforeAuth
		}
		n := int32(binary.BigEndian.Uint32(size[:]))
		if n < 8 || n > limit {
			k.logger.Warn("kafka: closing a connection: request size out of range", "remote", c.RemoteAddr().String(), "size", n, "limit", limit)
			graceful = true
			return
		}
		if !b.acquire(int(n)) {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(kafkaFrameTimeout))
		body, err := readFrame(r, int(n))
		if err != nil {
			return
		}
		p, err := k.handle(body, st, quit, &reqs)
		if int16(binary.BigEndian.Uint16(body)) == int16(kmsg.Produce) {
			// Served up to its wait: the batches it sends were copied out of the frame.
			reuseFrame(body)
		}
		held := st.held
		st.held = 0
		if err != nil {
			b.release(int(n))
			k.logger.Warn("kafka: closing a connection", "remote", c.RemoteAddr().String(), "err", err)
			graceful = true
			return
		}
		if p == nil { // produce with acks=0: no answer
			b.release(int(n))
			continue
		}
		b.add(held)
		p.size, p.close = int(n)+held, st.closing
		queue <- p
		if p.close {
			graceful = true
			return
		}
	}
}

// write writes the answers of queue in order, each when complete, until queue is closed, an
// answer closes the connection or quit is closed. It flushes whenever it would wait, so no
// answer is held behind one still in progress (a long-polling fetch).
func (k *kafkaListener) write(c net.Conn, queue <-chan *kafkaPending, quit <-chan struct{}, b *budget) error {
	w := bufio.NewWriterSize(deadlineWriter{c}, 64<<10)
	var size [4]byte
	for {
		var p *kafkaPending
		ok := true
		select {
		case p, ok = <-queue:
		default:
			if err := w.Flush(); err != nil {
				return err
			}
			select {
			case p, ok = <-queue:
			case <-quit:
				return nil
			}
		}
		if !ok {
			return w.Flush()
		}
		select {
		case <-p.done:
		default:
			if err := w.Flush(); err != nil {
				return err
			}
			select {
			case <-p.done:
			case <-quit:
				return nil
			}
		}
		if p.wait != nil {
			select {
			case <-quit: // not wanted: its futures expire on their own
				return nil
			default:
			}
			if err := w.Flush(); err != nil { // the answers before it go out first
				return err
			}
			p.resp = p.wait()
			if p.acked != nil {
				close(p.acked)
			}
		}
		b.release(p.size)
		if p.resp == nil {
			return w.Flush()
		}
		binary.BigEndian.PutUint32(size[:], uint32(len(p.resp)))
		if _, err := w.Write(size[:]); err != nil {
			return err
		}
		if _, err := w.Write(p.resp); err != nil {
			return err
		}
		if p.sent != nil {
			close(p.sent)
		}
		if p.close {
			return w.Flush()
		}
	}
}

// deadlineWriter writes to a connection in chunks of at most 1 MiB, each of which must be
// taken within kafkaWriteTimeout: a client that stops reading is cut off, one that reads a large
// answer slowly is not.
type deadlineWriter struct{ c net.Conn }

func (d deadlineWriter) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		_ = d.c.SetWriteDeadline(time.Now().Add(kafkaWriteTimeout))
		m, err := d.c.Write(b[n:min(len(b), n+1<<20)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// kafkaHeader is a request's header.
type kafkaHeader struct {
	key, version int16
	corr         int32
	clientID     string
}

// parseKafkaHeader reads the request header (v1, or v2 with tagged fields for flexible
// versions) and returns the rest: the request body.
func parseKafkaHeader(b []byte) (kafkaHeader, kmsg.Request, []byte, error) {
	var h kafkaHeader
	if len(b) < 10 {
		return h, nil, nil, errors.New("request header: too short")
	}
	h.key = int16(binary.BigEndian.Uint16(b))
	h.version = int16(binary.BigEndian.Uint16(b[2:]))
	h.corr = int32(binary.BigEndian.Uint32(b[4:]))
	idLen := int16(binary.BigEndian.Uint16(b[8:]))
	b = b[10:]
	if idLen > 0 {
		if int(idLen) > len(b) {
			return h, nil, nil, errors.New("request header: client id past the end")
		}
		h.clientID, b = string(b[:idLen]), b[idLen:]
	}
	req := kmsg.RequestForKey(h.key)
	if req == nil {
		return h, nil, b, nil
	}
	req.SetVersion(h.version)
	if req.IsFlexible() {
		// Tagged fields of the header: a count, then (tag, size, data) each.
		n, used := binary.Uvarint(b)
		if used <= 0 {
			return h, nil, nil, errors.New("request header: bad tagged fields")
		}
		b = b[used:]
		for range n {
			_, u1 := binary.Uvarint(b)
			if u1 <= 0 {
				return h, nil, nil, errors.New("request header: bad tag")
			}
			size, u2 := binary.Uvarint(b[u1:])
			if u2 <= 0 || uint64(len(b)-u1-u2) < size {
				return h, nil, nil, errors.New("request header: bad tag size")
			}
			b = b[u1+u2+int(size):]
		}
	}
	return h, req, b, nil
}

// handle reads one request frame and starts serving it, on the connection's reader: it returns
// the pending answer, complete or completed by a goroutine of its own (counted in reqs, and
// told by quit that the answer is not wanted); nil when none is due (acks=0); or an error that
// closes the connection.
//
// Produces are handed to their partitions here, before the next request is read, and the
// writer waits for the partitions' replies when their answer is due. Fetches, which may
// long-poll, run in a goroutine of their own. The other APIs are answered here: they are quick, or change what the requests
// read after them see (topics, the connection's authentication, a group's state).
func (k *kafkaListener) handle(frame []byte, st *kafkaConn, quit <-chan struct{}, reqs *sync.WaitGroup) (*kafkaPending, error) {
	// A ListOffsets or Fetch sees the records of the produces sent before it on the connection
	// (as with Kafka, which serves a connection's requests one at a time): it waits for their
	// answers. A fetch waits in its goroutine, below.
	produced := st.lastProduce
	if key := int16(binary.BigEndian.Uint16(frame)); key == int16(kmsg.ListOffsets) && produced != nil {
		select {
		case <-produced:
		case <-st.writerDone:
			return nil, errors.New("connection closed")
		}
	}
	resp, later, fetch, err := k.start(frame, st, quit)
	switch {
	case err != nil:
		return nil, err
	case resp != nil:
		return &kafkaPending{done: kafkaReady, resp: resp}, nil
	case later == nil && fetch == nil:
		return nil, nil
	case fetch == nil:
		// The writer waits for it in its turn: the actors' answer then wakes the writer itself,
		// not a goroutine that would hand it over.
		p := &kafkaPending{done: kafkaReady, wait: later, acked: make(chan struct{})}
		st.lastProduce = p.acked
		return p, nil
	}
	// A fetch starts once the one before it on the connection was answered: pipelined fetches
	// would otherwise each read up to their MaxBytes at once and hold the answers (bytes
	// MaxInFlightBytes does not count) behind a long poll or a client slow to read.
	p := &kafkaPending{done: make(chan struct{}), sent: make(chan struct{})}
	prev := st.lastFetch
	st.lastFetch = p.sent
	reqs.Add(1)
	go func() {
		defer reqs.Done()
		for _, before := range []chan struct{}{prev, produced} {
			if before == nil { // none before it
				continue
			}
			select {
			case <-before:
			case <-quit:
				close(p.done) // not wanted
				return
			}
		}
		a := fetch()
		if a != nil {
			p.resp = a.frame
		}
		close(p.done)
		// The answer holds its fetch memory until the writer wrote it, or gave up on the
		// connection.
		select {
		case <-p.sent:
		case <-quit:
		}
		a.done()
	}()
	return p, nil
}

// start serves one request frame up to its wait: it returns the response frame (without its
// size) when complete, else a function that waits and returns it (the writer calls it when the
// answer is due), or for a fetch one that serves it (in a goroutine of its own from now, as it
// may long-poll), or none of these when no answer is due (acks=0), or an error that closes the
// connection.
func (k *kafkaListener) start(frame []byte, st *kafkaConn, quit <-chan struct{}) ([]byte, func() []byte, func() *fetchAnswer, error) {
	h, req, body, err := parseKafkaHeader(frame)
	if err != nil {
		return nil, nil, nil, err
	}
	if !k.authenticated(st) && h.key != int16(kmsg.ApiVersions) && h.key != int16(kmsg.SASLHandshake) && h.key != int16(kmsg.SASLAuthenticate) {
		return nil, nil, nil, fmt.Errorf("API key %d before SASL authentication (client %q)", h.key, h.clientID)
	}
	lo, hi, ok := kafkaVersions(h.key)
	if h.key == int16(kmsg.ApiVersions) && (h.version < lo || h.version > hi) {
		// Answered at version 0 with UNSUPPORTED_VERSION and the list, as brokers do, so the
		// client can pick a version.
		resp := k.apiVersions()
		resp.SetVersion(0)
		resp.ErrorCode = 35
		return kafkaResponse(h, resp), nil, nil, nil
	}
	if req == nil {
		return nil, nil, nil, fmt.Errorf("API key %d is not a Kafka API (client %q)", h.key, h.clientID)
	}
	if !ok {
		// A Kafka API not served (ApiVersions does not list it): UNSUPPORTED_VERSION where
		// its response has a top-level error code, else the connection is closed.
		if resp := unsupportedVersion(req); resp != nil {
			k.logger.Info("kafka: API not served", "api", h.key, "version", h.version, "client", h.clientID)
			return kafkaResponse(h, resp), nil, nil, nil
		}
		return nil, nil, nil, fmt.Errorf("API key %d is not served (client %q)", h.key, h.clientID)
	}
	if h.version < lo || h.version > hi {
		// A served API at a version not served: UNSUPPORTED_VERSION where the response has
		// a top-level error code (its body is not read), else the connection is closed.
		if resp := unsupportedVersion(req); resp != nil {
			k.logger.Info("kafka: version not served", "api", h.key, "version", h.version, "served", fmt.Sprintf("%d-%d", lo, hi), "client", h.clientID)
			return kafkaResponse(h, resp), nil, nil, nil
		}
		return nil, nil, nil, fmt.Errorf("API key %d version %d is not served (%d to %d are; client %q)", h.key, h.version, lo, hi, h.clientID)
	}
	if err := req.ReadFrom(body); err != nil {
		return nil, nil, nil, fmt.Errorf("API key %d version %d: malformed request: %v", h.key, h.version, err)
	}
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		av := k.apiVersions()
		if r.Version >= 5 && r.ClusterID != nil && r.NodeID >= 0 &&
			(*r.ClusterID != kafkaClusterID || r.NodeID != k.brokerID(k.n.raftID)) {
			// KIP-1242: the client reached another cluster or node than the one it meant (an
			// address reused after a move); it bootstraps again.
			k.logger.Info("kafka: ApiVersions for another broker", "cluster", *r.ClusterID, "node", r.NodeID, "client", h.clientID)
			av.ErrorCode = kafkaRebootstrapRequired
		}
		resp = av
	case *kmsg.SASLHandshakeRequest:
		resp = k.saslHandshake(r, st)
	case *kmsg.SASLAuthenticateRequest:
		resp = k.saslAuthenticate(r, st)
	case *kmsg.MetadataRequest:
		resp = k.metadata(r)
	case *kmsg.ProduceRequest:
		wait, held := k.produce(r)
		if r.Acks == 0 {
			// No answer is due (and none to wait for: the batches were sent without asking
			// for a reply); a failure closes the connection, as Kafka does, so that the
			// producer refreshes its metadata.
			for _, t := range wait().Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						return nil, nil, nil, fmt.Errorf("acks=0 produce to %s/%d failed: error %d", t.Topic, p.Partition, p.ErrorCode)
					}
				}
			}
			return nil, nil, nil, nil
		}
		// Its batches, which may have decompressed to many times the request's size, count
		// against the connection's bytes in flight until answered.
		st.held = held
		return nil, func() []byte {
			pr := wait()
			pr.SetVersion(h.version)
			return kafkaResponse(h, pr)
		}, nil, nil
	case *kmsg.ListOffsetsRequest:
		resp = k.listOffsets(r)
	case *kmsg.FetchRequest:
		return nil, nil, func() *fetchAnswer { return k.fetchAnswer(h, r, quit) }, nil
	case *kmsg.FindCoordinatorRequest:
		resp = k.findCoordinator(r)
	case *kmsg.JoinGroupRequest:
		resp = k.joinGroup(r, h.clientID, st.remote)
	case *kmsg.SyncGroupRequest:
		resp = k.syncGroup(r)
	case *kmsg.HeartbeatRequest:
		resp = k.heartbeat(r)
	case *kmsg.LeaveGroupRequest:
		resp = k.leaveGroup(r)
	case *kmsg.OffsetCommitRequest:
		resp = k.offsetCommit(r)
	case *kmsg.OffsetFetchRequest:
		resp = k.offsetFetch(r)
	case *kmsg.CreateTopicsRequest:
		resp = k.createTopics(r)
	case *kmsg.DeleteTopicsRequest:
		resp = k.deleteTopics(r)
	case *kmsg.InitProducerIDRequest:
		resp = k.initProducerID(r)
	default:
		if resp = k.describeRequest(req); resp == nil {
			return nil, nil, nil, fmt.Errorf("API key %d is not served", h.key)
		}
	}
	resp.SetVersion(h.version)
	return kafkaResponse(h, resp), nil, nil, nil
}

// kafkaResponse encodes a response frame: correlation id, tagged fields for flexible versions
// (not for ApiVersions, whose response header is always v0), the body.
func kafkaResponse(h kafkaHeader, resp kmsg.Response) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(h.corr))
	if resp.IsFlexible() && resp.Key() != int16(kmsg.ApiVersions) {
		out = append(out, 0)
	}
	return resp.AppendTo(out)
}

func (k *kafkaListener) apiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	apis := kafkaAPIs
	if len(k.sec.Users) > 0 {
		apis = append(slices.Clone(apis), kafkaSASLAPIs...)
	}
	for _, a := range apis {
		v := kmsg.NewApiVersionsResponseApiKey()
		v.ApiKey, v.MinVersion, v.MaxVersion = a.key, a.min, a.max
		resp.ApiKeys = append(resp.ApiKeys, v)
	}
	return resp
}

// kafkaCode maps a Weir error to the Kafka error code clients act on.
func kafkaCode(e *wire.Error) int16 {
	if e == nil {
		return 0
	}
	switch e.Code {
	case wire.CodeUnknownTopic, wire.CodeUnknownPartition:
		return 3 // UNKNOWN_TOPIC_OR_PARTITION (retriable)
	case wire.CodeOffsetOutOfRange:
		return 1 // OFFSET_OUT_OF_RANGE
	case wire.CodeCorruptBatch:
		return 2 // CORRUPT_MESSAGE
	case wire.CodeNotLeader, wire.CodeUnavailable:
		return 6 // NOT_LEADER_OR_FOLLOWER: refresh metadata and retry
	case wire.CodeTimeout:
		return 7 // REQUEST_TIMED_OUT
	case wire.CodeRecordTooLarge:
		return 10 // MESSAGE_TOO_LARGE
	case wire.CodeNotEnoughNodes:
		return 19 // NOT_ENOUGH_REPLICAS
	case wire.CodeOverloaded:
		return 7 // REQUEST_TIMED_OUT: retriable
	case wire.CodeInvalidRequest, wire.CodeMalformed:
		return 42 // INVALID_REQUEST
	case wire.CodeOutOfOrderSequence:
		return 45 // OUT_OF_ORDER_SEQUENCE_NUMBER
	case wire.CodeDuplicateSequence:
		return 46 // DUPLICATE_SEQUENCE_NUMBER
	case wire.CodeUnknownProducer:
		return 59 // UNKNOWN_PRODUCER_ID
	case wire.CodeStorage:
		return 56 // KAFKA_STORAGE_ERROR (retriable)
	}
	return -1 // UNKNOWN_SERVER_ERROR
}

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// firstOfEach returns s without the elements seen before in it, in the order first named: a
// request naming a topic, group or member again is served (and answered) once for it.
func firstOfEach[T comparable](s []T) []T {
	// Sized as they grow: a request of many repeats has few distinct names.
	seen := map[T]bool{}
	var out []T
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
