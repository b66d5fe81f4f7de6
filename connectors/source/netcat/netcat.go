// Package netcat is a source of text lines over TCP, and of datagrams over UDP, as Flume's
// netcat and netcatudp sources: every line a TCP client sends (ended by "\n", a "\r" before it
// removed) is a record, and so is every UDP datagram (a trailing line ending removed). Lines
// longer than Config.MaxLine are cut to it, with header "netcat.truncated" holding their length.
//
// With Config.Ack, each TCP line is answered "OK\n" once the topic acknowledged it (Flume's
// ack-every-event; the runner reports it through connectors.Acker), so a client that counts
// its OKs knows what is stored. A client that half-closes its connection still gets its OKs; one
// that does not read them is given up on after a second.
//
// # Delivery
//
// Nothing can be asked for again: the position is empty, and a crash loses the lines received
// and not yet acknowledged (up to Config.Buffer plus a batch; with Ack, the client saw no OK for
// them). When the topic is slower than the clients, TCP connections are no longer read, and
// UDP datagrams that find the buffer full are dropped and counted (Dropped). An actor restart
// keeps the buffered lines and reads the batch that was in flight again, but closes the
// sockets: clients reconnect (and get no OK for that batch).
package netcat

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/connectors/source/internal/batch"
	"github.com/weirhq/weir/connectors/source/internal/listen"
	"github.com/weirhq/weir/storage"
)

// HeaderTruncated is set on a record whose line was cut to Config.MaxLine.
const HeaderTruncated = "netcat.truncated"

// Config configures a Source. At least one of TCP and UDP must be set.
type Config struct {
	// TCP and UDP are the addresses to listen on (port 0 picks one; see Addrs).
	TCP, UDP string
	// TLS, if set, is the server configuration of the TCP listener.
	TLS *tls.Config
	// MaxLine is the longest line kept whole, in bytes (default 64 KiB).
	MaxLine int
	// Ack answers each TCP line "OK\n" once the topic acknowledged it.
	Ack bool
	// Buffer is how many lines may wait between the listeners and Read (default 10,000).
	Buffer int
	// ReadBuffer is the UDP socket's receive buffer in bytes (default 4 MiB; Linux grants at most
	// net.core.rmem_max); a negative value keeps the system's default.
	ReadBuffer int
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

	srv     listen.Server
	pending batch.Pending[item] // the batch in flight, read again after an actor restart
}

type item struct {
	rec storage.Record
	c   *conn // the connection to answer OK, with Ack
}

// conn is a client with Ack: its OKs are written one batch at a time, and it is kept open
// after the client stopped sending until its lines are answered.
type conn struct {
	mu       sync.Mutex
	c        net.Conn
	pending  int           // lines received and not yet answered
	dead     bool          // a write failed: no more OKs
	answered chan struct{} // signalled when pending falls
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
	return s.srv.Open(listen.Config{UDP: s.cfg.UDP, TCP: s.cfg.TCP, TLS: s.cfg.TLS, Name: "netcat source", ReadBuffer: s.cfg.ReadBuffer},
		listen.Handlers{Datagram: s.datagram, Conn: s.serveConn})
}

// Addrs returns the addresses listened on (nil for one not configured), once open.
func (s *Source) Addrs() (tcp, udp net.Addr) {
	udp, tcp = s.srv.Addrs()
	return tcp, udp
}

// Dropped is how many UDP datagrams were dropped because the buffer was full.
func (s *Source) Dropped() int64 { return s.dropped.Load() }

// Read returns the lines received, up to Config.Batch: it waits for the first until ctx is
// done, then for more within Config.Linger. The position is always nil.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if replay := s.pending.Replay(); len(replay) > 0 {
		out := make([]storage.Record, len(replay))
		for i, it := range replay {
			out[i] = it.rec
		}
		return out, nil, nil
	}
	var out []storage.Record
	batch.Take(ctx, s.items, s.cfg.Batch, s.cfg.Linger, func(it item) {
		out = append(out, it.rec)
		s.pending.Add(it)
	})
	return out, nil, nil
}

// Acked answers "OK" for every line Read returned (with Config.Ack). It implements
// connectors.Acker.
func (s *Source) Acked([]byte) {
	acked := s.pending.Acked()
	per := map[*conn]int{}
	var order []*conn
	for _, it := range acked {
		if it.c != nil {
			if per[it.c] == 0 {
				order = append(order, it.c)
			}
			per[it.c]++
		}
	}
	for _, c := range order {
		n := per[c]
		c.mu.Lock()
		if !c.dead {
			// One write per client and batch; a client that does not read its OKs is given up
			// on after a second, not waited for line by line.
			_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.c.Write(bytes.Repeat([]byte("OK\n"), n)); err != nil {
				c.dead = true
			}
		}
		c.pending -= n
		c.mu.Unlock()
		select {
		case c.answered <- struct{}{}:
		default:
		}
	}
}

// Close stops listening and closes the connections; lines received and not yet read stay for a
// later Open (an actor restart). Lines read and not acknowledged get no OK.
func (s *Source) Close() error {
	s.srv.Close()
	// The batch in flight was not acknowledged: it is read again after the next Open (its
	// clients' connections are gone, so they get no OK for it).
	s.pending.Closed()
	return nil
}

func (s *Source) record(line []byte, full int) storage.Record {
	r := storage.Record{Value: bytes.Clone(line), Timestamp: time.Now().UnixMilli()}
	if full > len(line) {
		r.Headers = map[string]string{HeaderTruncated: strconv.Itoa(full)}
	}
	return r
}

// datagram handles one UDP datagram.
func (s *Source) datagram(b []byte) {
	msg := bytes.TrimRight(b, "\r\n")
	full := len(msg)
	msg = msg[:min(len(msg), s.cfg.MaxLine)]
	select {
	case s.items <- item{rec: s.record(msg, full)}:
	default:
		s.dropped.Add(1)
	}
}

// serveConn reads one TCP connection's lines.
func (s *Source) serveConn(c net.Conn, stop <-chan struct{}) {
	var ack *conn
	if s.cfg.Ack {
		ack = &conn{c: c, answered: make(chan struct{}, 1)}
	}
	br := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	for {
		buf = buf[:0]
		full, ending := 0, 0
		var last, pen byte // the last two bytes read, for the line ending
		for {
			chunk, err := br.ReadSlice('\n')
			full += len(chunk)
			if room := s.cfg.MaxLine - len(buf); room > 0 {
				buf = append(buf, chunk[:min(len(chunk), room)]...)
			}
			switch n := len(chunk); {
			case n >= 2:
				pen, last = chunk[n-2], chunk[n-1]
			case n == 1:
				pen, last = last, chunk[0]
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if full > 0 && errors.Is(err, io.EOF) {
					break // a last line without "\n"
				}
				// The client went away (or the source closed it), maybe mid-line: what was
				// cut off is not a line. With Ack, wait for its lines' answers first.
				s.waitAnswered(ack, stop)
				return
			}
			if last == '\n' {
				ending = 1
				if pen == '\r' {
					ending = 2
				}
			}
			break
		}
		full -= ending
		line := buf[:min(len(buf), full)] // without the ending, if it was kept
		if ack != nil {
			ack.mu.Lock()
			ack.pending++
			ack.mu.Unlock()
		}
		select {
		case s.items <- item{rec: s.record(line, full), c: ack}:
		case <-stop:
			return
		}
	}
}

// waitAnswered waits until every line of the client (with Ack) was answered, or the source
// closes: a client that half-closed its connection still gets its OKs.
func (s *Source) waitAnswered(c *conn, stop <-chan struct{}) {
	if c == nil {
		return
	}
	for {
		c.mu.Lock()
		n := c.pending
		c.mu.Unlock()
		if n <= 0 {
			return
		}
		select {
		case <-c.answered:
		case <-stop:
			return
		}
	}
}
