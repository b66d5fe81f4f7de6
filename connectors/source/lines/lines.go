// Package lines is a source that reads text lines from an io.Reader, os.Stdin by default: one
// record per line, the way `tail -F app.log | weir ...` or a program's piped output reaches a
// flow.
//
// # Records
//
// A record's value is the line without its ending ("\n" or "\r\n"). A last line without a
// newline before EOF is a record too; empty lines are records with an empty value (an
// interceptor drops them if they are noise). With Config.KeySeparator set, a line that holds the
// separator is split at its first occurrence: the key is what comes before it and the value what
// comes after; a line without it has no key. The timestamp is the time the line was read.
//
// Lines longer than Config.MaxLine bytes follow Config.Overlong: Truncate (the default) keeps
// the first MaxLine bytes and sets the header HeaderTruncated to the line's full length; Skip
// drops the line; Fail makes Read return a *LineTooLongError (errors.Is ErrLineTooLong) after the
// lines before it, and on every Read after that: the flow's actor then fails, is restarted, fails
// again, and the supervisor gives up on it and reports it on /healthz. Memory stays bounded in
// every case: the rest of an overlong line is read and discarded, never held.
//
// # Flow control
//
// One goroutine reads the reader and hands the lines over one at a time through an unbuffered
// channel, so beyond what Read returned the source holds at most one line and the content of its
// read buffer (64 KiB): a producer faster than the topic is slowed by the pipe, not buffered.
// Read returns up to Config.Batch lines (or about Config.BatchBytes bytes): it waits for the
// first line until its context is done, then takes the lines that follow within Config.Linger.
//
// # Position and restarts
//
// The position is the number of lines handed out and acknowledged, 8 bytes big endian. A pipe or
// terminal cannot be read twice, so it is no resume point in the input; what it buys is this:
//
//   - When the flow's actor is restarted in the same process (the runner closes and reopens the
//     same Source), the lines of the batch that was in flight are kept in memory and delivered
//     again when Open is given the position before them; nothing read is lost, and the batch may
//     reach the topic twice, as the runtime's at-least-once bound allows.
//   - When the process dies (crash, kill, power loss), everything it had read and not yet seen
//     acknowledged is lost: the batch in flight, the line in hand and the read buffer, up to
//     about Batch lines plus 64 KiB. A new process counts on from the committed position but
//     reads its own standard input from where that input starts: if it is the same file again
//     (`weir ... < file`), its lines are delivered again; the position is not used to skip them.
//
// Use a file source where loss on a crash is not acceptable.
//
// # Concurrency
//
// The runner calls Open, Read and Close from one goroutine at a time. The reading goroutine
// belongs to the Source: Open starts it and Close stops it and waits for it, except when it is
// blocked in a Read of the reader. A read of a pipe or terminal cannot be interrupted, so Close
// then returns at once and the goroutine ends when that read returns, keeping the line it got for
// the next Open; it never reads again after Close. A goroutine blocked in a reader that never
// returns is only released by closing the reader's other end.
package lines

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/weirhq/weir/storage"
)

// HeaderTruncated is the header set on a record whose line was cut to MaxLine bytes; its value
// is the length of the whole line in bytes, in decimal.
const HeaderTruncated = "lines.truncated"

// positionLen is the length of a position: the line count, big endian.
const positionLen = 8

// readBuffer is the size of the read buffer, the most read ahead of what Read returned.
const readBuffer = 64 << 10

// Overlong says what happens to a line longer than MaxLine.
type Overlong int

// The policies for overlong lines.
const (
	Truncate Overlong = iota // keep the first MaxLine bytes, set HeaderTruncated
	Skip                     // drop the line
	Fail                     // stop the source with a *LineTooLongError
)

// ErrLineTooLong is matched (errors.Is) by the error Read returns under the Fail policy.
var ErrLineTooLong = errors.New("lines: line too long")

// LineTooLongError reports an overlong line under the Fail policy.
type LineTooLongError struct {
	Line   int64 // 1-based number of the line among those this process read
	Length int64 // its length in bytes, without the line ending
	Max    int   // Config.MaxLine
}

func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("lines: line %d of the input is %d bytes, more than the maximum %d", e.Line, e.Length, e.Max)
}

// Unwrap makes errors.Is(err, ErrLineTooLong) hold.
func (e *LineTooLongError) Unwrap() error { return ErrLineTooLong }

// Config configures a line source.
type Config struct {
	// Reader is read to its end (default os.Stdin).
	Reader io.Reader
	// MaxLine is the longest line kept whole, in bytes without the line ending (default 1 MiB).
	MaxLine int
	// Overlong is what happens to a longer line (default Truncate).
	Overlong Overlong
	// KeySeparator, if not empty, splits a line into key and value at its first occurrence.
	KeySeparator string
	// Batch is the most lines one Read returns (default 100).
	Batch int
	// BatchBytes ends a Read once its lines hold this many bytes (default 1 MiB); a Read may go
	// over it by one line.
	BatchBytes int
	// Linger is how long Read waits for more lines after the first (default 5 ms; negative:
	// not at all).
	Linger time.Duration
	// Now is the clock for record timestamps (time.Now by default).
	Now func() time.Time
}

// MaxMaxLine is the largest MaxLine: a line is held in memory whole.
const MaxMaxLine = 1 << 30

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	switch {
	case c.MaxLine < 0 || c.MaxLine > MaxMaxLine:
		return fmt.Errorf("lines: MaxLine %d: want 0 (default 1 MiB) to %d bytes", c.MaxLine, MaxMaxLine)
	case c.Batch < 0:
		return fmt.Errorf("lines: Batch %d: want 0 (default 100) or more lines", c.Batch)
	case c.BatchBytes < 0:
		return fmt.Errorf("lines: BatchBytes %d: want 0 (default 1 MiB) or more bytes", c.BatchBytes)
	case c.Overlong < Truncate || c.Overlong > Fail:
		return fmt.Errorf("lines: unknown Overlong policy %d", c.Overlong)
	}
	return nil
}

// item is one line as the reading goroutine hands it over.
type item struct {
	line []byte
	full int64 // length of the whole line when it was truncated, else -1
	skip bool  // an overlong line under Skip: counted, not delivered
}

// batch is what one Read returned: kept until acknowledged, to be replayed after a restart.
type batch struct {
	recs      []storage.Record
	base, end int64 // positions before and after it
}

// Source reads lines.
type Source struct {
	cfg Config

	// Owned by the caller of Open, Read and Close.
	next      int64 // position after the last line handed out
	last      batch // the last batch returned, not known to be acknowledged
	replay    bool  // the next Read returns last again
	opened    bool
	stickyErr error // terminal condition already seen by Read (io.EOF or a failure)

	// Shared with the reading goroutine.
	items chan item     // unbuffered: one line at a time
	done  chan struct{} // closed after the last item, when term is set

	mu      sync.Mutex
	term    error         // io.EOF or why reading stopped; set before done is closed
	running bool          // a reading goroutine exists
	reading bool          // it is inside a Read of the reader
	quit    chan struct{} // closed by Close; replaced by Open
	exited  chan struct{} // closed when the running goroutine returns
	held    *item         // a line read but not handed over before Close

	// Owned by whichever reading goroutine runs (only one ever does).
	br    *bufio.Reader
	eof   bool  // the reader returned EOF after a last line without newline
	count int64 // lines read by this process, for error messages
}

// New returns a line source.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Reader == nil {
		cfg.Reader = os.Stdin
	}
	if cfg.MaxLine == 0 {
		cfg.MaxLine = 1 << 20
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.BatchBytes == 0 {
		cfg.BatchBytes = 1 << 20
	}
	if cfg.Linger == 0 {
		cfg.Linger = 5 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{
		cfg:   cfg,
		items: make(chan item),
		done:  make(chan struct{}),
		br:    bufio.NewReaderSize(cfg.Reader, readBuffer),
	}, nil
}

// Open implements connectors.Source. position is nil on the flow's first start, else the line
// count the runner committed (see the package doc for what it means after a restart).
func (s *Source) Open(_ context.Context, position []byte) error {
	if s.opened {
		return errors.New("lines: Open of an open source")
	}
	var pos int64
	switch len(position) {
	case 0:
	case positionLen:
		pos = int64(binary.BigEndian.Uint64(position))
		if pos < 0 {
			return fmt.Errorf("lines: negative position %d", pos)
		}
	default:
		return fmt.Errorf("lines: position of %d bytes, want %d", len(position), positionLen)
	}
	switch {
	case s.last.end == s.last.base:
		// Nothing in flight: a new process (or nothing read yet), or the last batch was
		// acknowledged before a restart.
		if s.next != 0 && pos != s.next {
			return fmt.Errorf("lines: position %d, but this source handed out %d lines", pos, s.next)
		}
		s.next = pos
		s.last = batch{base: pos, end: pos}
	case pos == s.last.base:
		s.replay = true // the batch in flight was not acknowledged: deliver it again
	case pos == s.last.end:
		s.last = batch{base: pos, end: pos}
	default:
		return fmt.Errorf("lines: position %d is neither %d nor %d, the bounds of the batch in flight", pos, s.last.base, s.last.end)
	}
	s.opened = true

	s.mu.Lock()
	defer s.mu.Unlock()
	s.quit = make(chan struct{})
	if !s.running && s.term == nil {
		s.running = true
		s.exited = make(chan struct{})
		go s.pump(s.exited)
	}
	return nil
}

// Read implements connectors.Source: up to Batch lines, the position after them, and io.EOF once
// the reader is exhausted and every line was handed out.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if !s.opened {
		return nil, nil, errors.New("lines: Read of a source that is not open")
	}
	if s.replay {
		s.replay = false
		return s.last.recs, encodePosition(s.last.end), nil
	}
	if len(s.last.recs) > 0 {
		// The runner reads again only after it committed a batch that held records. A batch
		// of skipped lines only is not committed by itself: it stays in flight with the next.
		s.last = batch{base: s.next, end: s.next}
	}
	if s.stickyErr != nil {
		return nil, encodePosition(s.next), s.stickyErr
	}

	var recs []storage.Record
	var linger <-chan time.Time
	lines, size := 0, 0
	for lines < s.cfg.Batch && size < s.cfg.BatchBytes {
		if lines == 1 && s.cfg.Linger > 0 {
			t := time.NewTimer(s.cfg.Linger)
			defer t.Stop()
			linger = t.C
		}
		it, ok := s.take(ctx, linger, lines > 0 && linger == nil)
		if !ok {
			break
		}
		lines++
		size += len(it.line)
		if !it.skip {
			recs = append(recs, s.record(it))
		}
	}
	if lines == 0 {
		return nil, encodePosition(s.next), s.stickyErr
	}
	s.next += int64(lines)
	s.last = batch{recs: recs, base: s.last.base, end: s.next}
	return recs, encodePosition(s.next), nil
}

// take returns the next line: at once if poll, else waiting until one comes, the input ends,
// timeout fires or ctx is done. At the end of the input it sets stickyErr.
func (s *Source) take(ctx context.Context, timeout <-chan time.Time, poll bool) (item, bool) {
	if poll {
		select {
		case it := <-s.items:
			return it, true
		default:
			return item{}, false
		}
	}
	select {
	case it := <-s.items:
		return it, true
	case <-s.done:
		s.stickyErr = s.terminal()
	case <-timeout:
	case <-ctx.Done():
	}
	return item{}, false
}

// terminal returns why reading ended: io.EOF at the end of the input.
func (s *Source) terminal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term
}

func (s *Source) record(it item) storage.Record {
	r := storage.Record{Value: it.line, Timestamp: s.cfg.Now().UnixMilli()}
	if sep := s.cfg.KeySeparator; sep != "" {
		if i := bytes.Index(it.line, []byte(sep)); i >= 0 {
			r.Key, r.Value = it.line[:i:i], it.line[i+len(sep):]
		}
	}
	if it.full >= 0 {
		r.Headers = map[string]string{HeaderTruncated: strconv.FormatInt(it.full, 10)}
	}
	return r
}

// Close implements connectors.Source. The lines of the batch in flight are kept for a following
// Open (see the package doc).
func (s *Source) Close() error {
	if !s.opened {
		return nil
	}
	s.opened = false
	s.replay = false
	s.mu.Lock()
	close(s.quit)
	wait := s.running && !s.reading
	exited := s.exited
	s.mu.Unlock()
	if wait {
		<-exited
	}
	return nil
}

// pump is the reading goroutine: it reads a line, hands it over, and reads the next, until the
// input ends, reading fails or Close asks it to stop.
func (s *Source) pump(exited chan struct{}) {
	defer close(exited)
	for {
		s.mu.Lock()
		it := s.held
		s.held = nil
		if it == nil {
			select {
			case <-s.quit:
				s.running = false
				s.mu.Unlock()
				return
			default:
			}
			s.reading = true
			s.mu.Unlock()
			line, err := s.readLine()
			s.mu.Lock()
			s.reading = false
			if err != nil {
				s.term = err
				s.running = false
				close(s.done)
				s.mu.Unlock()
				return
			}
			it = &line
		}
		quit := s.quit
		s.mu.Unlock()
		for handed := false; !handed; {
			select {
			case s.items <- *it:
				handed = true
			case <-quit:
				s.mu.Lock()
				if s.quit == quit {
					// Closed and not reopened: keep the line for the next Open.
					s.held = it
					s.running = false
					s.mu.Unlock()
					return
				}
				quit = s.quit // reopened meanwhile: offer the line again
				s.mu.Unlock()
			}
		}
	}
}

// readLine reads the next line under the MaxLine policy. It returns io.EOF at the end of the
// input and a wrapped error if the reader fails.
func (s *Source) readLine() (item, error) {
	if s.eof {
		return item{}, io.EOF
	}
	max := s.cfg.MaxLine
	var buf []byte
	var total int64 // bytes of the line read so far, its ending included
	var prev byte   // the last byte of the previous fragment
	for {
		frag, err := s.br.ReadSlice('\n')
		if keep := max + 2 - len(buf); keep > 0 { // +2: room for the "\r\n" of a line of MaxLine bytes
			buf = append(buf, frag[:min(keep, len(frag))]...)
		}
		total += int64(len(frag))
		if errors.Is(err, bufio.ErrBufferFull) {
			prev = frag[len(frag)-1]
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return item{}, fmt.Errorf("lines: read: %w", err)
		}
		if err != nil && total == 0 {
			return item{}, io.EOF
		}
		if err != nil {
			s.eof = true // a last line without newline; EOF on the next call
		}
		s.count++
		length := total
		if err == nil { // the line ends with '\n', maybe "\r\n"
			length--
			before := prev
			if len(frag) > 1 {
				before = frag[len(frag)-2]
			}
			if before == '\r' {
				length--
			}
		}
		if length <= int64(max) {
			return item{line: buf[:length:length], full: -1}, nil
		}
		switch s.cfg.Overlong {
		case Skip:
			return item{skip: true, full: length}, nil
		case Fail:
			return item{}, &LineTooLongError{Line: s.count, Length: length, Max: max}
		}
		return item{line: buf[:max:max], full: length}, nil
	}
}

func encodePosition(n int64) []byte {
	b := make([]byte, positionLen)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}
