package lines

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/storage"
)

func open(t *testing.T, cfg Config, pos []byte) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readAll reads until EOF and returns the records and the last position.
func readAll(t *testing.T, s *Source) ([]storage.Record, []byte) {
	t.Helper()
	var all []storage.Record
	var last []byte
	for range 10000 {
		recs, pos, err := s.Read(context.Background())
		if errors.Is(err, io.EOF) {
			return all, last
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
		last = pos
	}
	t.Fatal("no EOF after 10000 reads")
	return nil, nil
}

func values(recs []storage.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

func position(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }

func TestLines(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		input string
		want  []string // values; "key|value" when keys are expected
		trunc map[int]string
	}{
		{name: "lines", input: "a\nbb\n\nccc\n", want: []string{"a", "bb", "", "ccc"}},
		{name: "partial last line", input: "a\nb", want: []string{"a", "b"}},
		{name: "crlf", input: "a\r\nb\r\n\r\nc\r", want: []string{"a", "b", "", "c\r"}},
		{name: "empty input", input: "", want: nil},
		{name: "only newline", input: "\n", want: []string{""}},
		{name: "key separator", cfg: Config{KeySeparator: "="}, input: "k=v\nnokey\n=v2\nk2=a=b\n",
			want: []string{"k|v", "|nokey", "|v2", "k2|a=b"}},
		{name: "multi-byte separator", cfg: Config{KeySeparator: " :: "}, input: "host1 :: up\n",
			want: []string{"host1|up"}},
		{name: "truncate", cfg: Config{MaxLine: 4}, input: "abcd\nabcdef\nab\nabcd\r\nabcde\r\n",
			want: []string{"abcd", "abcd", "ab", "abcd", "abcd"}, trunc: map[int]string{1: "6", 4: "5"}},
		{name: "skip", cfg: Config{MaxLine: 4, Overlong: Skip}, input: "abcd\nabcdef\nab\nxyzzyx",
			want: []string{"abcd", "ab"}},
		{name: "overlong across read buffers", cfg: Config{MaxLine: 10}, input: strings.Repeat("x", 3*readBuffer+7) + "\nnext\n",
			want: []string{"xxxxxxxxxx", "next"}, trunc: map[int]string{0: "196615"}},
		{name: "long line within max", cfg: Config{MaxLine: 2 * readBuffer}, input: strings.Repeat("y", readBuffer+3) + "\r\nz",
			want: []string{strings.Repeat("y", readBuffer+3), "z"}},
		{name: "small batches", cfg: Config{Batch: 2}, input: "1\n2\n3\n4\n5\n", want: []string{"1", "2", "3", "4", "5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Reader = strings.NewReader(c.input)
			s := open(t, c.cfg, nil)
			recs, pos := readAll(t, s)
			var got []string
			for i, r := range recs {
				v := string(r.Value)
				if c.cfg.KeySeparator != "" {
					v = string(r.Key) + "|" + v
				}
				got = append(got, v)
				if want := c.trunc[i]; r.Headers[HeaderTruncated] != want {
					t.Errorf("record %d: truncated header %q, want %q", i, r.Headers[HeaderTruncated], want)
				}
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") || len(got) != len(c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			lines := int64(strings.Count(c.input, "\n"))
			if c.input != "" && !strings.HasSuffix(c.input, "\n") {
				lines++
			}
			if lines > 0 && position(pos) != lines {
				t.Fatalf("position %d after %d lines", position(pos), lines)
			}
		})
	}
}

func TestOverlongFails(t *testing.T) {
	s := open(t, Config{MaxLine: 3, Overlong: Fail, Reader: strings.NewReader("ok\nfine\nlater\n")}, nil)
	recs, _, err := s.Read(context.Background())
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "ok" {
		t.Fatalf("lines before the overlong one: %q, %v", values(recs), err)
	}
	for range 2 { // the failure is sticky
		_, _, err = s.Read(context.Background())
		var e *LineTooLongError
		if !errors.Is(err, ErrLineTooLong) || !errors.As(err, &e) || e.Line != 2 || e.Length != 4 || e.Max != 3 {
			t.Fatalf("overlong line under Fail: %v", err)
		}
	}
}

func TestEOFEndsCleanly(t *testing.T) {
	pr, pw := io.Pipe()
	s := open(t, Config{Reader: pr}, nil)
	go func() {
		pw.Write([]byte("one\ntw"))
		pw.Write([]byte("o\nthree"))
		pw.Close()
	}()
	recs, pos := readAll(t, s)
	if got := values(recs); strings.Join(got, ",") != "one,two,three" {
		t.Fatalf("got %q", got)
	}
	if position(pos) != 3 {
		t.Fatalf("position %d", position(pos))
	}
	// EOF stays EOF, also after a restart.
	if _, _, err := s.Read(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("second read at the end: %v", err)
	}
	s.Close()
	if err := s.Open(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("read at the end after reopening: %v", err)
	}
}

func TestReaderErrorStopsSource(t *testing.T) {
	pr, pw := io.Pipe()
	s := open(t, Config{Reader: pr}, nil)
	boom := errors.New("boom")
	go func() {
		pw.Write([]byte("a\n"))
		pw.CloseWithError(boom)
	}()
	var got []string
	for {
		recs, _, err := s.Read(context.Background())
		got = append(got, values(recs)...)
		if err != nil {
			if !errors.Is(err, boom) || errors.Is(err, io.EOF) {
				t.Fatalf("read error: %v", err)
			}
			break
		}
	}
	if strings.Join(got, ",") != "a" {
		t.Fatalf("got %q before the error", got)
	}
}

func TestReadReturnsWhenContextEnds(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	s := open(t, Config{Reader: pr}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	recs, pos, err := s.Read(ctx)
	if err != nil || len(recs) != 0 || position(pos) != 0 {
		t.Fatalf("read of an idle pipe: %d records, position %x, %v", len(recs), pos, err)
	}
	go pw.Write([]byte("late\n"))
	recs, _, err = s.Read(context.Background())
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "late" {
		t.Fatalf("line after an idle read: %q, %v", values(recs), err)
	}
}

// countingReader is an endless input of short lines that counts the bytes taken from it.
type countingReader struct{ n atomic.Int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "line\n"[(r.n.Load()+int64(i))%5]
	}
	r.n.Add(int64(len(p)))
	return len(p), nil
}

// TestReadsOnlyWhatIsAsked checks the flow control: an endless fast input is read only as far as
// Read takes lines, plus at most the read buffer and the line in hand.
func TestReadsOnlyWhatIsAsked(t *testing.T) {
	r := &countingReader{}
	s := open(t, Config{Reader: r, Batch: 10}, nil)
	for n := 0; n < 30; {
		recs, _, err := s.Read(context.Background())
		if err != nil || len(recs) > 10 {
			t.Fatalf("read: %d records, %v", len(recs), err)
		}
		n += len(recs)
	}
	time.Sleep(50 * time.Millisecond) // give the reading goroutine time to run ahead, if it would
	// 30 lines of 5 bytes lie in the first buffer's worth; one more line may be in hand.
	if n, bound := r.n.Load(), int64(readBuffer+len("line\n")); n > bound {
		t.Fatalf("%d bytes read from the input for 30 lines; the read-ahead bound is %d", n, bound)
	}
}

// TestRestartReplaysBatchInFlight plays the runner: a batch read but not acknowledged before
// the actor restarts is delivered again; an acknowledged one is not.
func TestRestartReplaysBatchInFlight(t *testing.T) {
	pr, pw := io.Pipe()
	s := open(t, Config{Reader: pr, Batch: 2, Linger: -1}, nil)
	go func() {
		for _, l := range []string{"1", "2", "3", "4", "5"} {
			pw.Write([]byte(l + "\n"))
		}
		pw.Close()
	}()
	read := func() ([]string, []byte) {
		t.Helper()
		var got []string
		for len(got) == 0 {
			recs, pos, err := s.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got = values(recs)
			if len(got) > 0 {
				return got, pos
			}
		}
		return nil, nil
	}
	var delivered []string
	first, committed := read()
	delivered = append(delivered, first...)
	// The second batch is read, then the actor restarts before the topic acknowledged it.
	lost, _ := read()
	s.Close()
	if err := s.Open(context.Background(), committed); err != nil {
		t.Fatal(err)
	}
	again, pos := read()
	if strings.Join(again, ",") != strings.Join(lost, ",") {
		t.Fatalf("after a restart at the committed position: %q, want the batch in flight %q", again, lost)
	}
	delivered = append(delivered, again...)
	// Now it was acknowledged (committed) and the actor restarts again: no replay.
	s.Close()
	if err := s.Open(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	for {
		recs, _, err := s.Read(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		delivered = append(delivered, values(recs)...)
	}
	if got := strings.Join(delivered, ","); got != "1,2,3,4,5" {
		t.Fatalf("delivered %s", got)
	}
}

// TestCloseKeepsLineInHand closes the source while its goroutine holds a line and reopens it:
// the line is not lost.
func TestCloseKeepsLineInHand(t *testing.T) {
	s := open(t, Config{Reader: strings.NewReader("a\nb\nc\n"), Batch: 1}, nil)
	recs, pos, err := s.Read(context.Background())
	if err != nil || len(recs) != 1 {
		t.Fatal(recs, err)
	}
	time.Sleep(10 * time.Millisecond) // the goroutine now waits to hand over "b"
	s.Close()
	if err := s.Open(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	rest, _ := readAll(t, s)
	if got := strings.Join(values(rest), ","); got != "b,c" {
		t.Fatalf("after reopening: %s", got)
	}
}

func TestNewProcessCountsOnFromPosition(t *testing.T) {
	s := open(t, Config{Reader: strings.NewReader("x\ny\n")}, encodePosition(40))
	_, pos := readAll(t, s)
	if position(pos) != 42 {
		t.Fatalf("position %d, want 42", position(pos))
	}
}

func TestBadInput(t *testing.T) {
	for _, cfg := range []Config{{MaxLine: -1}, {Batch: -1}, {BatchBytes: -1}, {Overlong: 7}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	s, _ := New(Config{Reader: &bytes.Buffer{}})
	if err := s.Open(context.Background(), []byte{1, 2, 3}); err == nil {
		t.Fatal("3-byte position accepted")
	}
	if _, _, err := s.Read(context.Background()); err == nil {
		t.Fatal("read before open")
	}
	s2 := open(t, Config{Reader: strings.NewReader("a\n")}, nil)
	readAll(t, s2)
	s2.Close()
	if err := s2.Open(context.Background(), encodePosition(7)); err == nil {
		t.Fatal("a position this process never handed out was accepted")
	}
}

func TestTimestampsFromClock(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, Config{Reader: strings.NewReader("a\n"), Now: func() time.Time { return at }}, nil)
	recs, _ := readAll(t, s)
	if len(recs) != 1 || recs[0].Timestamp != at.UnixMilli() {
		t.Fatalf("timestamps: %+v", recs)
	}
}

// FuzzLines compares the source with a plain split of the input under the Truncate policy.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\nb\r\n\nlong line here\nlast"), uint8(4))
	f.Add([]byte("\r\r\n\n\r"), uint8(1))
	f.Fuzz(func(t *testing.T, input []byte, max uint8) {
		maxLine := int(max%16) + 1
		var want []string
		if len(input) > 0 {
			parts := strings.Split(string(input), "\n")
			if strings.HasSuffix(string(input), "\n") {
				parts = parts[:len(parts)-1]
			}
			for i, p := range parts {
				if i < len(parts)-1 || strings.HasSuffix(string(input), "\n") {
					p = strings.TrimSuffix(p, "\r")
				}
				want = append(want, p[:min(len(p), maxLine)])
			}
		}
		s := open(t, Config{Reader: bytes.NewReader(input), MaxLine: maxLine, Linger: -1}, nil)
		recs, _ := readAll(t, s)
		got := values(recs)
		if len(got) != len(want) {
			t.Fatalf("%q: got %q, want %q", input, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q: got %q, want %q", input, got, want)
			}
		}
	})
}

// TestBadConfig: each bad field is refused by name; the largest MaxLine works.
func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxLine: -1}, "MaxLine -1"},
		{Config{MaxLine: math.MaxInt}, "MaxLine"},
		{Config{Batch: -1}, "Batch -1"},
		{Config{BatchBytes: -1}, "BatchBytes -1"},
		{Config{Overlong: 7}, "Overlong policy 7"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.cfg, err, c.want)
		}
	}
	s := open(t, Config{Reader: strings.NewReader("a\nbb\n"), MaxLine: MaxMaxLine}, nil)
	if recs, _ := readAll(t, s); len(recs) != 2 || string(recs[1].Value) != "bb" {
		t.Fatalf("MaxLine %d: %d records", MaxMaxLine, len(recs))
	}
}

// TestCloseStopsReading: once Close returns, the reading goroutine is gone (it was not blocked
// in the reader, so Close waits for it).
func TestCloseStopsReading(t *testing.T) {
	for range 20 {
		s := open(t, Config{Reader: &countingReader{}, Batch: 10}, nil)
		if _, _, err := s.Read(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// Close returns once pump's deferred close ran: the goroutine may still be returning
		// for a moment (seen under -race on a busy machine), but must be gone soon after.
		buf := make([]byte, 1<<20)
		for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
			stacks := string(buf[:runtime.Stack(buf, true)])
			if !strings.Contains(stacks, "lines.(*Source).pump") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the reading goroutine is still running a second after Close:\n%s", stacks)
			}
		}
	}
}
