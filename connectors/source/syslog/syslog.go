// Package syslog is a source that receives syslog messages over UDP and TCP, RFC 5424 and RFC
// 3164, and turns each into a record: the free-form text is the value, the timestamp the
// message's time (the time it arrived if it had none), and the header fields are headers:
//
//	facility, severity   numbers (RFC 5424 section 6.2.1)
//	host, app, procid, msgid, structured_data   where the message had them
//	timestamp            the record's timestamp in milliseconds (for Flume-style time bucketing)
//	syslog.version       1 for RFC 5424, 0 for RFC 3164
//
// A message that does not parse is not dropped: the record's value is the whole message and its
// header "syslog.invalid" says what was wrong (Parse's error); an interceptor can route or drop
// such records.
//
// # Framing
//
// Over UDP each datagram is one message. Over TCP (RFC 6587) a frame that starts with a digit
// is octet-counted ("LEN SP MSG"); any other is a line ending at "\n" (a "\r" before it is
// removed). Messages longer than Config.MaxMessage are cut to it and marked with the header
// "syslog.truncated" (their length); a TCP connection whose octet count is not a number is
// closed, with a warning naming the peer.
//
// # Delivery
//
// Syslog has no acknowledgements, so nothing can be asked for again: the source's position is
// always empty, and a crash of the process loses the messages received and not yet acknowledged
// by the topic (at most Config.Buffer of them plus one batch). When the flow's actor restarts in
// the same process, the buffered messages and the batch in flight are kept (and read again), but the sockets are closed and opened again:
// datagrams sent meanwhile (the supervisor's backoff, up to seconds) are lost, and TCP
// connections are reset, losing what the connection had read and not yet parsed (up to 64 KiB)
// and what the kernel held for it; senders that reconnect go on. When the topic is slower than
// the senders, TCP connections are no longer read (the senders' own buffers fill, then they
// block or drop, as their configuration says) and UDP datagrams that find the buffer full are
// dropped and counted (Dropped). Use a file-based source where loss is not acceptable.
package syslog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/connectors/source/internal/batch"
	"github.com/weirhq/weir/connectors/source/internal/listen"
	"github.com/weirhq/weir/storage"
)

// Header names set on records.
const (
	HeaderInvalid   = "syslog.invalid"
	HeaderTruncated = "syslog.truncated"
	HeaderVersion   = "syslog.version"
)

// Config configures a Source. At least one of UDP and TCP must be set.
type Config struct {
	// UDP and TCP are the addresses to listen on (host:port; port 0 picks one, see Addrs).
	UDP, TCP string
	// TLS, if set, is the server configuration of the TCP listener (RFC 5425's syslog over
	// TLS uses octet counting, which Frames reads).
	TLS *tls.Config
	// MaxMessage is the longest message kept whole, in bytes (default 64 KiB).
	MaxMessage int
	// Buffer is how many messages may wait between the listeners and Read (default 10,000).
	Buffer int
	// ReadBuffer is the UDP socket's receive buffer in bytes (default 4 MiB; Linux grants at most
	// net.core.rmem_max); a negative value keeps the system's default.
	ReadBuffer int
	// Batch is the most records one Read returns (default 1,000); Linger how long Read waits for
	// more after the first (default 5 ms).
	Batch  int
	Linger time.Duration
	// Location is the time zone of RFC 3164 timestamps, which carry none (default time.Local).
	Location *time.Location
	// Logger receives warnings about bad TCP framing; discarded by default.
	Logger *slog.Logger
}

// Source receives syslog messages. It is a connectors.Source and a connectors.Acker.
type Source struct {
	cfg     Config
	msgs    chan storage.Record
	dropped atomic.Int64

	srv     listen.Server
	pending batch.Pending[storage.Record] // the batch in flight, read again after an actor restart
}

// New checks cfg and returns a Source; it listens from Open on.
func New(cfg Config) (*Source, error) {
	if cfg.UDP == "" && cfg.TCP == "" {
		return nil, errors.New("syslog source: set a UDP or a TCP address")
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 64 << 10
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
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, msgs: make(chan storage.Record, cfg.Buffer)}, nil
}

// Open starts listening. The position is ignored (there is nothing to resume: see Delivery).
func (s *Source) Open(_ context.Context, _ []byte) error {
	return s.srv.Open(listen.Config{UDP: s.cfg.UDP, TCP: s.cfg.TCP, TLS: s.cfg.TLS, Name: "syslog source", ReadBuffer: s.cfg.ReadBuffer},
		listen.Handlers{Datagram: s.datagram, Conn: s.serveConn})
}

// Addrs returns the addresses listened on (nil for one not configured), once open.
func (s *Source) Addrs() (udp, tcp net.Addr) { return s.srv.Addrs() }

// Dropped is how many UDP messages were dropped because the buffer was full.
func (s *Source) Dropped() int64 { return s.dropped.Load() }

// Read returns the messages received, up to Config.Batch: it waits for the first until ctx is
// done, then for more within Config.Linger. The position is always nil.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if replay := s.pending.Replay(); len(replay) > 0 {
		return replay, nil, nil
	}
	var out []storage.Record
	batch.Take(ctx, s.msgs, s.cfg.Batch, s.cfg.Linger, func(r storage.Record) {
		out = append(out, r)
		s.pending.Add(r)
	})
	return out, nil, nil
}

// Acked forgets the batch in flight: the topic has it. It implements connectors.Acker.
func (s *Source) Acked([]byte) { s.pending.Acked() }

// Close stops listening and closes the connections. Messages received and not yet
// acknowledged (those read in the batch in flight, then those not yet read) stay for a later
// Open of the same Source (an actor restart); the process ending loses them.
func (s *Source) Close() error {
	s.srv.Close()
	s.pending.Closed()
	return nil
}

// record makes the record of one message.
func (s *Source) record(msg []byte, full int) storage.Record {
	now := time.Now()
	m, err := Parse(msg, now, s.cfg.Location)
	h := map[string]string{}
	var r storage.Record
	if err != nil {
		r = storage.Record{Value: bytes.Clone(msg), Timestamp: now.UnixMilli()}
		h[HeaderInvalid] = err.Error()
	} else {
		ts := now
		if !m.Timestamp.IsZero() {
			ts = m.Timestamp
		}
		r = storage.Record{Value: bytes.Clone(m.Text), Timestamp: ts.UnixMilli()}
		h["facility"] = strconv.Itoa(m.Facility)
		h["severity"] = strconv.Itoa(m.Severity)
		h[HeaderVersion] = strconv.Itoa(m.Version)
		for k, v := range map[string]string{"host": m.Host, "app": m.App, "procid": m.ProcID, "msgid": m.MsgID, "structured_data": m.StructuredData} {
			if v != "" {
				h[k] = v
			}
		}
	}
	h["timestamp"] = strconv.FormatInt(r.Timestamp, 10)
	if full > len(msg) {
		h[HeaderTruncated] = strconv.Itoa(full)
	}
	r.Headers = h
	return r
}

// datagram handles one UDP message.
func (s *Source) datagram(b []byte) {
	msg := bytes.TrimRight(b, "\r\n")
	full := len(msg)
	msg = msg[:min(len(msg), s.cfg.MaxMessage)]
	select {
	case s.msgs <- s.record(msg, full):
	default:
		s.dropped.Add(1)
	}
}

// serveConn reads one TCP connection's frames.
func (s *Source) serveConn(c net.Conn, stop <-chan struct{}) {
	err := Frames(c, s.cfg.MaxMessage, func(msg []byte, full int) bool {
		select {
		case s.msgs <- s.record(msg, full):
			return true
		case <-stop:
			return false
		}
	})
	if err != nil {
		s.cfg.Logger.Warn("syslog source: closing a TCP connection", "peer", c.RemoteAddr().String(), "err", err)
	}
}

// Frames splits a TCP syslog stream into messages (RFC 6587: octet counting when a frame starts
// with a digit, else lines) and calls emit with each, cut to maxLen bytes, and its full length;
// emit returns false to stop. It returns nil at the end of the stream, or the framing error.
func Frames(r io.Reader, maxLen int, emit func(msg []byte, full int) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	buf := make([]byte, 0, 4096)
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil
		}
		if c >= '0' && c <= '9' {
			n := int(c - '0')
			for {
				c, err = br.ReadByte()
				if err != nil {
					return nil // the stream ended inside a frame's length
				}
				if c == ' ' {
					break
				}
				if c < '0' || c > '9' || n > 100_000_000 {
					return fmt.Errorf("octet-counted frame: length is not a number below 10^9 (byte %q)", c)
				}
				n = n*10 + int(c-'0')
			}
			keep := min(n, maxLen)
			buf = append(buf[:0], make([]byte, keep)...)
			if _, err := io.ReadFull(br, buf); err != nil {
				return nil // cut short: the sender went away
			}
			if _, err := br.Discard(n - keep); err != nil {
				return nil
			}
			msg := bytes.TrimRight(buf, "\r\n")
			if len(msg) == 0 {
				continue // an empty frame
			}
			full := n
			if keep == n {
				full = len(msg) // whole: a line ending counted in the length is no truncation
			}
			if !emit(msg, full) {
				return nil
			}
			continue
		}
		if c == '\n' {
			continue // an empty line
		}
		// A line: c and what follows up to '\n', at most maxLen bytes kept; full is its length
		// without the "\n" or "\r\n" that ends it.
		buf = append(buf[:0], c)
		full, last, pen := 1, c, byte(0)
		for {
			line, err := br.ReadSlice('\n')
			full += len(line)
			if room := maxLen - len(buf); room > 0 {
				buf = append(buf, line[:min(len(line), room)]...)
			}
			switch len(line) {
			case 0:
			case 1:
				pen, last = last, line[0]
			default:
				pen, last = line[len(line)-2], line[len(line)-1]
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == nil { // ended by '\n'
				full--
				if pen == '\r' {
					full--
				}
			}
			break
		}
		msg := bytes.TrimRight(buf, "\r\n")
		if len(msg) == 0 {
			continue // a blank line ("\r\n")
		}
		if !emit(msg, max(full, len(msg))) {
			return nil
		}
	}
}
