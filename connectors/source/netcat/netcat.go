// Package netcat is a source of text lines over TCP, and of datagrams over UDP, as Flume's
// netcat and netcatudp sources: every line a TCP client sends (ended by "\n", a "\r" before it
// removed) is a record, and so is every UDP datagram (a trailing line ending removed). Lines
// longer than Config.MaxLine are cut to it, with header "netcat.truncated" holding their length.
//
// With Config.Ack, each TCP line is answered "OK\n" once the topic acknowledged it (Flume's
// ack-every-event; the runner reports it through connectors.Acker), so a client that counts
// its OKs knows what is stored.
//
// # Delivery
//
// Nothing can be asked for again: the position is empty, and a crash loses the lines received
// and not yet acknowledged (up to Config.Buffer plus a batch; with Ack, the client saw no OK for
// them). When the topic is slower than the clients, TCP connections are no longer read, and
// UDP datagrams that find the buffer full are dropped and counted (Dropped). An actor restart
// keeps the buffered lines, but closes the sockets: clients reconnect.
package netcat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/storage"
)

// HeaderTruncated is set on a record whose line was cut to Config.MaxLine.
const HeaderTruncated = "netcat.truncated"

// Config configures a Source. At least one of TCP and UDP must be set.
type Config struct {
	// TCP and UDP are the addresses to listen on (port 0 picks one; see Addrs).
	TCP, UDP string
	// MaxLine is the longest line kept whole, in bytes (default 64 KiB).
	MaxLine int
	// Ack answers each TCP line "OK\n" once the topic acknowledged it.
	Ack bool
	// Buffer is how many lines may wait between the listeners and Read (default 10,000).
	Buffer int
	// Batch is the most records one Read returns (default 1,000); Linger how long Read waits for
	// more after the first (default 5 ms).
	Batch  int
	Linger time.Duration
}

// Source receives lines. It is a connectors.Source and a connectors.Acker.
type Source struct {
	cfg     Config
	items   chan item
	dropped atomic.Int64

	mu       sync.Mutex
	tcp      net.Listener
	udp      net.PacketConn
	conns    map[net.Conn]struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	inflight []*conn // one entry per acknowledged-to-be line with Ack
}

type item struct {
	rec storage.Record
	c   *conn // the connection to answer OK, with Ack
}

// conn serialises the OKs written to one client.
type conn struct {
	mu sync.Mutex
	c  net.Conn
}

// New checks cfg and returns a Source; it listens from Open on.
func New(cfg Config) (*Source, error) {
	if cfg.TCP == "" && cfg.UDP == "" {
		return nil, errors.New("netcat source: set a TCP or a UDP address")
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 64 << 10
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 10_000
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	return &Source{cfg: cfg, items: make(chan item, cfg.Buffer)}, nil
}

// Open starts listening; the position is ignored.
func (s *Source) Open(_ context.Context, _ []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return nil
	}
	s.conns = map[net.Conn]struct{}{}
	stop := make(chan struct{})
	if s.cfg.UDP != "" {
		pc, err := net.ListenPacket("udp", s.cfg.UDP)
		if err != nil {
			return fmt.Errorf("netcat source: listen on udp %s: %w", s.cfg.UDP, err)
		}
		s.udp = pc
		s.wg.Add(1)
		go s.serveUDP(pc)
	}
	if s.cfg.TCP != "" {
		ln, err := net.Listen("tcp", s.cfg.TCP)
		if err != nil {
			if s.udp != nil {
				s.udp.Close()
				s.udp = nil
				s.mu.Unlock()
				s.wg.Wait()
				s.mu.Lock()
			}
			return fmt.Errorf("netcat source: listen on tcp %s: %w", s.cfg.TCP, err)
		}
		s.tcp = ln
		s.wg.Add(1)
		go s.serveTCP(ln, stop)
	}
	s.stop = stop
	return nil
}

// Addrs returns the addresses listened on (nil for one not configured), once open.
func (s *Source) Addrs() (tcp, udp net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp != nil {
		tcp = s.tcp.Addr()
	}
	if s.udp != nil {
		udp = s.udp.LocalAddr()
	}
	return tcp, udp
}

// Dropped is how many UDP datagrams were dropped because the buffer was full.
func (s *Source) Dropped() int64 { return s.dropped.Load() }

// Read returns the lines received, up to Config.Batch: it waits for the first until ctx is
// done, then for more within Config.Linger. The position is always nil.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	var out []storage.Record
	take := func(it item) {
		out = append(out, it.rec)
		if it.c != nil {
			s.mu.Lock()
			s.inflight = append(s.inflight, it.c)
			s.mu.Unlock()
		}
	}
	select {
	case it := <-s.items:
		take(it)
	case <-ctx.Done():
		return nil, nil, nil
	}
	t := time.NewTimer(s.cfg.Linger)
	defer t.Stop()
	for len(out) < s.cfg.Batch {
		select {
		case it := <-s.items:
			take(it)
		case <-t.C:
			return out, nil, nil
		}
	}
	return out, nil, nil
}

// Acked answers "OK" for every line Read returned (with Config.Ack). It implements
// connectors.Acker.
func (s *Source) Acked([]byte) {
	s.mu.Lock()
	acks := s.inflight
	s.inflight = nil
	s.mu.Unlock()
	for _, c := range acks {
		c.mu.Lock()
		_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.c.Write([]byte("OK\n")) // a client gone away gets no OK
		c.mu.Unlock()
	}
}

// Close stops listening and closes the connections; lines received and not yet read stay for a
// later Open (an actor restart). Lines read and not acknowledged get no OK.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.stop == nil {
		s.mu.Unlock()
		return nil
	}
	close(s.stop)
	s.stop = nil
	if s.tcp != nil {
		s.tcp.Close()
		s.tcp = nil
	}
	if s.udp != nil {
		s.udp.Close()
		s.udp = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.inflight = nil
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Source) record(line []byte, full int) storage.Record {
	r := storage.Record{Value: bytes.Clone(line), Timestamp: time.Now().UnixMilli()}
	if full > len(line) {
		r.Headers = map[string]string{HeaderTruncated: strconv.Itoa(full)}
	}
	return r
}

func (s *Source) serveUDP(pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		msg := bytes.TrimRight(buf[:n], "\r\n")
		full := len(msg)
		msg = msg[:min(len(msg), s.cfg.MaxLine)]
		select {
		case s.items <- item{rec: s.record(msg, full)}:
		default:
			s.dropped.Add(1)
		}
	}
}

func (s *Source) serveTCP(ln net.Listener, stop chan struct{}) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-stop: // closed meanwhile
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(c, stop)
	}
}

func (s *Source) serveConn(c net.Conn, stop chan struct{}) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var ack *conn
	if s.cfg.Ack {
		ack = &conn{c: c}
	}
	br := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	for {
		buf = buf[:0]
		full, ending := 0, 0
		for {
			chunk, err := br.ReadSlice('\n')
			full += len(chunk)
			if room := s.cfg.MaxLine - len(buf); room > 0 {
				buf = append(buf, chunk[:min(len(chunk), room)]...)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil && full == 0 {
				return // the client closed the connection
			}
			if n := len(chunk); n > 0 && chunk[n-1] == '\n' {
				ending = 1
				if n > 1 && chunk[n-2] == '\r' {
					ending = 2
				}
			}
			break
		}
		full -= ending
		line := buf[:min(len(buf), full)] // without the ending, if it was kept
		select {
		case s.items <- item{rec: s.record(line, full), c: ack}:
		case <-stop:
			return
		}
	}
}
