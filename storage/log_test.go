package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testConfig is a small-segment config on the real disk.
func testConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 4096
	c.IndexIntervalBytes = 256
	c.Sync = SyncNever
	return c
}

func mustOpen(t testing.TB, dir string, cfg Config) *Log {
	t.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends n batches of per records each, value "v<offset>", timestamp ts0+offset.
func appendN(t testing.TB, l *Log, n, per int, ts0 int64) {
	t.Helper()
	b := NewBatchBuilder()
	for i := 0; i < n; i++ {
		b.Reset()
		next := l.EndOffset()
		for j := 0; j < per; j++ {
			off := next + int64(j)
			if err := b.Add(Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("v%d", off)), Timestamp: ts0 + off}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := l.Append(b.Build())
		if err != nil {
			t.Fatalf("append batch %d: %v", i, err)
		}
		if got != next {
			t.Fatalf("append got offset %d, want %d", got, next)
		}
	}
}

// readAll reads every record from from to the end, checking values "v<offset>" and density.
func readAll(t testing.TB, l *Log, from int64) int64 {
	t.Helper()
	next := from
	var buf []byte
	var err error
	for next < l.EndOffset() {
		buf, err = l.Read(buf[:0], next, 1000, l.EndOffset())
		if err != nil {
			t.Fatalf("read at %d: %v", next, err)
		}
		if len(buf) == 0 {
			t.Fatalf("read at %d returned nothing before the end %d", next, l.EndOffset())
		}
		for p := buf; len(p) > 0; {
			h, err := DecodeBatch(p, func(off int64, r Record) error {
				if off < next {
					return nil
				}
				if off != next {
					return fmt.Errorf("offset %d, want %d", off, next)
				}
				if want := fmt.Sprintf("v%d", off); string(r.Value) != want {
					return fmt.Errorf("offset %d holds %q, want %q", off, r.Value, want)
				}
				next++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			p = p[h.Size():]
		}
	}
	return next - from
}

func TestAppendReadReopen(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.Sync, cfg.SyncInterval = mode, 5*time.Millisecond
			l := mustOpen(t, dir, cfg)
			appendN(t, l, 150, 7, 1000)
			if l.Segments() < 5 {
				t.Fatalf("only %d segments; the test wants several", l.Segments())
			}
			if n := readAll(t, l, 0); n != 1050 {
				t.Fatalf("read %d records, want 1050", n)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Append(mustBatch(t, 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after close: %v", err)
			}
			l = mustOpen(t, dir, cfg)
			if l.EndOffset() != 1050 {
				t.Fatalf("end after reopen %d", l.EndOffset())
			}
			for _, from := range []int64{0, 1, 6, 7, 200, 1049} {
				if n := readAll(t, l, from); n != 1050-from {
					t.Fatalf("from %d read %d", from, n)
				}
			}
			appendN(t, l, 3, 2, 1000)
			if n := readAll(t, l, 0); n != 1056 {
				t.Fatalf("after more appends read %d", n)
			}
		})
	}
}

func mustBatch(t testing.TB, n int) []byte {
	t.Helper()
	b, err := EncodeBatch(testRecords(n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadLimits(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig())
	appendN(t, l, 10, 5, 0) // batches of 5 records
	cases := []struct {
		name     string
		from     int64
		max      int
		end      int64
		batches  int
		firstOff int64
		err      error
	}{
		{"one byte still returns one batch", 12, 1, 50, 1, 10, nil},
		{"end caps batches", 0, 1 << 20, 10, 2, 0, nil},
		{"end inside a batch keeps that batch", 0, 1 << 20, 12, 3, 0, nil},
		{"at end returns nothing", 50, 100, 50, 0, 0, nil},
		{"from at the end cap", 10, 100, 10, 0, 0, nil},
		{"beyond end", 51, 100, 60, 0, 0, ErrOffsetOutOfRange},
		{"negative", -1, 100, 60, 0, 0, ErrOffsetOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf, err := l.Read(nil, c.from, c.max, c.end)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			n := 0
			for p := buf; len(p) > 0; n++ {
				h, err := ParseBatch(p)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 && h.BaseOffset != c.firstOff {
					t.Fatalf("first batch at %d, want %d", h.BaseOffset, c.firstOff)
				}
				p = p[h.Size():]
			}
			if n != c.batches {
				t.Fatalf("%d batches, want %d", n, c.batches)
			}
		})
	}
	// Read appends to dst.
	dst := []byte("prefix")
	out, err := l.Read(dst, 0, 1, 50)
	if err != nil || !bytes.HasPrefix(out, []byte("prefix")) || len(out) <= 6 {
		t.Fatalf("dst not kept: %q %v", out[:6], err)
	}
}

func TestOffsetForTime(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig())
	// Timestamps ts0+offset with ts0 = 10_000: offset o has timestamp 10_000+o.
	appendN(t, l, 80, 5, 10_000)
	if l.Segments() < 3 {
		t.Fatalf("want several segments, have %d", l.Segments())
	}
	cases := []struct {
		ts    int64
		want  int64
		found bool
	}{
		{0, 0, true},
		{10_000, 0, true},
		{10_003, 3, true},
		{10_237, 237, true},
		{10_399, 399, true},
		{10_400, 400, false},
		{1 << 62, 400, false},
	}
	for _, c := range cases {
		got, ok, err := l.OffsetForTime(c.ts)
		if err != nil || got != c.want || ok != c.found {
			t.Errorf("OffsetForTime(%d) = %d, %v, %v; want %d, %v", c.ts, got, ok, err, c.want, c.found)
		}
	}
	// Out-of-order timestamps within a batch: the first record in log order at or after ts.
	b := NewBatchBuilder()
	for _, ts := range []int64{50_000, 40_000, 60_000} {
		b.Add(Record{Value: []byte("x"), Timestamp: ts})
	}
	if _, err := l.Append(b.Build()); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := l.OffsetForTime(45_000); got != 400 || !ok {
		t.Errorf("OffsetForTime(45000) = %d, %v; want 400", got, ok)
	}
	if got, ok, _ := l.OffsetForTime(55_000); got != 402 || !ok {
		t.Errorf("OffsetForTime(55000) = %d, %v; want 402", got, ok)
	}
}

func TestTruncateTo(t *testing.T) {
	cases := []struct {
		name string
		to   int64
		err  error
	}{
		{"end is a no-op", 300, nil},
		{"last batch", 297, nil},
		{"middle of active segment", 294, nil},
		{"into an earlier segment", 90, nil},
		{"to the start", 0, nil},
		{"inside a batch", 91, ErrNotBoundary},
		{"beyond end", 301, ErrOffsetOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			l := mustOpen(t, dir, cfg)
			appendN(t, l, 100, 3, 0)
			err := l.TruncateTo(c.to)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			want := c.to
			if c.err != nil {
				want = 300
			}
			if l.EndOffset() != want {
				t.Fatalf("end %d, want %d", l.EndOffset(), want)
			}
			if last, _ := l.LastIndex(); last != uint64(want/3) {
				t.Fatalf("last index %d, want %d", last, want/3)
			}
			appendN(t, l, 40, 3, 0)
			if n := readAll(t, l, 0); n != want+120 {
				t.Fatalf("read %d, want %d", n, want+120)
			}
			l.Close()
			l = mustOpen(t, dir, cfg)
			if n := readAll(t, l, 0); n != want+120 {
				t.Fatalf("after reopen read %d, want %d", n, want+120)
			}
		})
	}
}

func TestDeleteBeforeAndRetention(t *testing.T) {
	t.Run("delete before", func(t *testing.T) {
		dir := t.TempDir()
		l := mustOpen(t, dir, testConfig())
		appendN(t, l, 100, 3, 0)
		segs := l.Segments()
		if err := l.DeleteBefore(151); err != nil {
			t.Fatal(err)
		}
		if l.StartOffset() != 151 || l.Segments() >= segs {
			t.Fatalf("start %d, segments %d (were %d)", l.StartOffset(), l.Segments(), segs)
		}
		if _, err := l.Read(nil, 150, 100, 300); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read before start: %v", err)
		}
		if n := readAll(t, l, 151); n != 149 {
			t.Fatalf("read %d", n)
		}
		if err := l.DeleteBefore(301); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("delete beyond end: %v", err)
		}
		l.Close()
		l = mustOpen(t, dir, testConfig())
		if l.StartOffset() != 151 {
			t.Fatalf("start after reopen %d", l.StartOffset())
		}
		if got, ok, _ := l.OffsetForTime(0); got != 151 || !ok {
			t.Fatalf("OffsetForTime below start = %d, %v", got, ok)
		}
		if first, _ := l.FirstIndex(); first < 2 {
			t.Fatalf("raft first index %d did not move with the deleted segments", first)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		cfg := testConfig()
		cfg.RetentionBytes = 10_000
		l := mustOpen(t, t.TempDir(), cfg)
		appendN(t, l, 200, 3, 0)
		n, err := l.ApplyRetention()
		if err != nil || n == 0 {
			t.Fatalf("deleted %d segments, %v", n, err)
		}
		if l.Size() > cfg.RetentionBytes+cfg.SegmentBytes {
			t.Fatalf("size %d after retention of %d", l.Size(), cfg.RetentionBytes)
		}
		readAll(t, l, l.StartOffset())
	})
	t.Run("age", func(t *testing.T) {
		now := time.UnixMilli(1_000_000)
		cfg := testConfig()
		cfg.RetentionAge = time.Minute
		cfg.Now = func() time.Time { return now }
		l := mustOpen(t, t.TempDir(), cfg)
		appendN(t, l, 100, 3, 1_000_000) // timestamps 1_000_000 + offset
		if n, _ := l.ApplyRetention(); n != 0 {
			t.Fatalf("deleted %d fresh segments", n)
		}
		now = time.UnixMilli(1_000_000 + 150 + time.Minute.Milliseconds() + 1)
		if _, err := l.ApplyRetention(); err != nil {
			t.Fatal(err)
		}
		// Every remaining segment but the active one must hold a record newer than 150.
		if start := l.StartOffset(); start == 0 || start > 151 {
			t.Fatalf("start offset %d after age retention", start)
		}
		readAll(t, l, l.StartOffset())
	})
}

func TestRollByAge(t *testing.T) {
	now := time.UnixMilli(5_000_000)
	cfg := testConfig()
	cfg.SegmentBytes = 1 << 20
	cfg.SegmentAge = time.Hour
	cfg.Now = func() time.Time { return now }
	l := mustOpen(t, t.TempDir(), cfg)
	appendN(t, l, 3, 2, 5_000_000)
	if l.Segments() != 1 {
		t.Fatalf("%d segments before the age", l.Segments())
	}
	now = now.Add(time.Hour + time.Second) // the first batch's newest record is 1 ms after the start
	appendN(t, l, 1, 2, 5_000_000)
	if l.Segments() != 2 {
		t.Fatalf("%d segments after the age; want a roll", l.Segments())
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"default", func(*Config) {}, ""},
		{"tiny segments", func(c *Config) { c.SegmentBytes = 10 }, "SegmentBytes"},
		{"huge segments", func(c *Config) { c.SegmentBytes = 1 << 40 }, "SegmentBytes"},
		{"index interval", func(c *Config) { c.IndexIntervalBytes = 1 }, "IndexIntervalBytes"},
		{"interval without period", func(c *Config) { c.Sync, c.SyncInterval = SyncInterval, 0 }, "SyncInterval"},
		{"unknown sync", func(c *Config) { c.Sync = 7 }, "unknown mode"},
		{"negative retention", func(c *Config) { c.RetentionBytes = -1 }, "RetentionBytes"},
		{"negative age", func(c *Config) { c.RetentionAge = -time.Second }, "RetentionAge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %s", err, c.want)
			}
			if _, err := Open(t.TempDir(), cfg); err == nil {
				t.Fatal("Open accepted an invalid config")
			}
		})
	}
	if m, err := ParseSyncMode("interval"); err != nil || m != SyncInterval {
		t.Fatal(m, err)
	}
	if _, err := ParseSyncMode("sometimes"); err == nil {
		t.Fatal("ParseSyncMode accepted nonsense")
	}
}

func TestAppendRejectsBadBatches(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig())
	good := mustBatch(t, 3)
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	for name, b := range map[string][]byte{
		"crc":     bad,
		"short":   good[:10],
		"control": controlBatch(KindNoop, nil, 0),
	} {
		if _, err := l.Append(b); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: %v, want ErrBadBatch", name, err)
		}
	}
	if l.EndOffset() != 0 {
		t.Fatal("a rejected batch changed the log")
	}
	// The caller's slice is left as it was: placement goes into a copy.
	orig := bytes.Clone(good)
	appendN(t, l, 1, 1, 0)
	if _, err := l.Append(good); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, good) {
		t.Fatal("Append modified the caller's batch")
	}
}

// segmentFiles lists a log directory's files with a suffix.
func segmentFiles(t testing.TB, dir, suffix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIndexRebuild(t *testing.T) {
	damage := map[string]func(t *testing.T, path string){
		"missing":   func(t *testing.T, p string) { os.Remove(p) },
		"truncated": func(t *testing.T, p string) { os.Truncate(p, 5) },
		"garbage": func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			for i := range b {
				b[i] = 0xff
			}
			os.WriteFile(p, b, 0o644)
		},
		"wrong entry": func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			if len(b) >= 24 {
				b[len(b)-1]-- // the last entry points one byte off
			}
			os.WriteFile(p, b, 0o644)
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, dir, testConfig())
			appendN(t, l, 150, 3, 0)
			l.Close()
			for _, p := range append(segmentFiles(t, dir, indexSuffix), segmentFiles(t, dir, timeIndexSuffix)...) {
				f(t, p)
			}
			l = mustOpen(t, dir, testConfig())
			if n := readAll(t, l, 0); n != 450 {
				t.Fatalf("read %d after rebuild", n)
			}
			for _, c := range []struct{ ts, want int64 }{{0, 0}, {123, 123}, {449, 449}} {
				if got, ok, err := l.OffsetForTime(c.ts); got != c.want || !ok || err != nil {
					t.Fatalf("OffsetForTime(%d) = %d %v %v", c.ts, got, ok, err)
				}
			}
			if len(segmentFiles(t, dir, indexSuffix)) != l.Segments()-1 {
				t.Fatalf("%d index files for %d sealed segments", len(segmentFiles(t, dir, indexSuffix)), l.Segments()-1)
			}
		})
	}
}

// activeSegment returns the path of the last segment file of a closed log.
func activeSegment(t testing.TB, dir string) string {
	segs := segmentFiles(t, dir, logSuffix)
	return segs[len(segs)-1]
}

func TestRecoveryTornTail(t *testing.T) {
	// Each case damages the end of the active segment of a log holding 20 batches of 2 records,
	// and says how many records must survive.
	cases := []struct {
		name string
		mod  func(b []byte, lastBatch int) []byte
		want int64
	}{
		{"clean", func(b []byte, _ int) []byte { return b }, 40},
		{"half a header", func(b []byte, last int) []byte { return b[:last+HeaderSize/2] }, 38},
		{"header without body", func(b []byte, last int) []byte { return b[:last+HeaderSize] }, 38},
		{"body cut by one byte", func(b []byte, _ int) []byte { return b[:len(b)-1] }, 38},
		{"zeroes appended", func(b []byte, _ int) []byte { return append(b, make([]byte, 4096)...) }, 40},
		{"garbage appended", func(b []byte, _ int) []byte { return append(b, bytes.Repeat([]byte("junk"), 100)...) }, 40},
		{"last batch scrambled", func(b []byte, last int) []byte { b[len(b)-3] ^= 0xff; return b }, 38},
		{"last header zeroed", func(b []byte, last int) []byte { clear(b[last : last+HeaderSize]); return b }, 38},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.SegmentBytes = 1 << 20
			l := mustOpen(t, dir, cfg)
			appendN(t, l, 19, 2, 0)
			lastPos := l.Size()
			appendN(t, l, 1, 2, 0)
			l.Close()
			p := activeSegment(t, dir)
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, c.mod(b, int(lastPos)), 0o644); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, cfg)
			if l.EndOffset() != c.want {
				t.Fatalf("end %d, want %d", l.EndOffset(), c.want)
			}
			if n := readAll(t, l, 0); n != c.want {
				t.Fatalf("read %d, want %d", n, c.want)
			}
			appendN(t, l, 2, 2, 0)
			l.Close()
			l = mustOpen(t, dir, cfg)
			if n := readAll(t, l, 0); n != c.want+4 {
				t.Fatalf("after appending past the cut read %d, want %d", n, c.want+4)
			}
		})
	}
}

func TestRecoveryCorruptionIsAnError(t *testing.T) {
	cases := []struct {
		name   string
		sealed bool // damage a sealed segment rather than the active one
		at     func(size int64) int64
	}{
		{"active segment, middle", false, func(size int64) int64 { return size / 2 }},
		{"active segment, first batch", false, func(int64) int64 { return segmentHeaderSize + HeaderSize + 2 }},
		{"sealed segment, last batch", true, func(size int64) int64 { return size - 3 }},
		{"sealed segment header", true, func(int64) int64 { return 9 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			if !c.sealed {
				cfg.SegmentBytes = 1 << 20
			}
			l := mustOpen(t, dir, cfg)
			appendN(t, l, 60, 3, 0)
			l.Close()
			segs := segmentFiles(t, dir, logSuffix)
			p := segs[len(segs)-1]
			if c.sealed {
				p = segs[0]
			}
			b, _ := os.ReadFile(p)
			pos := c.at(int64(len(b)))
			b[pos] ^= 0x10
			os.WriteFile(p, b, 0o644)
			_, err := Open(dir, cfg)
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open: %v, want a *CorruptError", err)
			}
			if ce.File != p {
				t.Fatalf("error names %s, want %s", ce.File, p)
			}
			if !strings.Contains(err.Error(), filepath.Base(p)) {
				t.Fatalf("message does not name the file: %v", err)
			}
			// Nothing was cut: the file is as damaged as it was.
			after, _ := os.ReadFile(p)
			if !bytes.Equal(after, b) {
				t.Fatal("open changed a corrupted file")
			}
		})
	}
}

func TestReadDetectsBitRot(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testConfig())
	appendN(t, l, 60, 3, 0)
	l.Close()
	segs := segmentFiles(t, dir, logSuffix)
	b, _ := os.ReadFile(segs[0])
	b[segmentHeaderSize+HeaderSize+1] ^= 1 // first record of the first batch
	os.WriteFile(segs[0], b, 0o644)
	l = mustOpen(t, dir, testConfig()) // only the end of sealed segments is checked on open
	_, err := l.Read(nil, 0, 100, l.EndOffset())
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != segs[0] || ce.Offset != 0 {
		t.Fatalf("read: %v, want a CorruptError for offset 0 in %s", err, segs[0])
	}
	if n := readAll(t, l, 3); n != 177 {
		t.Fatalf("reads past the damage: %d", n)
	}
}

func FuzzReopenTail(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("garbage"))
	f.Add(make([]byte, 300))
	good := mustBatch(f, 2)
	f.Add(good)
	f.Add(good[:HeaderSize+3])
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		cfg := testConfig()
		cfg.SegmentBytes = 1 << 20
		l, err := Open(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 5, 2, 0)
		l.Close()
		p := activeSegment(t, dir)
		fh, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.Write(tail)
		fh.Close()
		l, err = Open(dir, cfg)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reopen failed with a non-corruption error: %v", err)
			}
			return
		}
		defer l.Close()
		if l.EndOffset() < 10 {
			t.Fatalf("reopen lost acknowledged records: end %d", l.EndOffset())
		}
		// The first ten records are intact whatever the tail did.
		buf, err := l.Read(nil, 0, 1<<20, 10)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for p := buf; len(p) > 0; {
			h, err := DecodeBatch(p, func(off int64, r Record) error {
				if off < 10 && string(r.Value) != fmt.Sprintf("v%d", off) {
					return fmt.Errorf("offset %d holds %q", off, r.Value)
				}
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			p = p[h.Size():]
		}
		if n != 10 {
			t.Fatalf("read %d of the first 10 records", n)
		}
		if _, err := l.Append(good); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	})
}
