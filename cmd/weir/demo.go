package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/weirhq/weir/storage"
)

// runDemo exercises the partition log the way a node will: batches of records appended with
// fsync, the log closed and reopened (recovery), and everything read back by offset and by time.
func runLogDemo(args []string, out io.Writer) error {
	fs, dir, records, batch := logDemoFlags()
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: log demo takes no arguments, got %q", errUsage, pos)
	}
	if *records <= 0 || *batch <= 0 {
		return fmt.Errorf("%w: --records and --batch must be positive", errUsage)
	}
	cfg := storage.DefaultConfig()
	cfg.SegmentBytes = 16 << 20
	l, err := storage.Open(*dir, cfg)
	if err != nil {
		return err
	}
	start := l.EndOffset()
	fmt.Fprintf(out, "log %s opened: offsets [%d, %d), %d segments\n", *dir, l.StartOffset(), start, l.Segments())

	b := storage.NewBatchBuilder()
	value := make([]byte, 100)
	t0 := time.Now()
	first := time.Now().UnixMilli()
	for n := 0; n < *records; {
		b.Reset()
		for i := 0; i < *batch && n < *records; i, n = i+1, n+1 {
			copy(value, fmt.Sprintf("record %d", start+int64(n)))
			if err := b.Add(storage.Record{Key: []byte(fmt.Sprint(n % 16)), Value: value, Timestamp: time.Now().UnixMilli()}); err != nil {
				return err
			}
		}
		if _, err := l.Append(b.Build()); err != nil {
			return err
		}
	}
	el := time.Since(t0)
	fmt.Fprintf(out, "appended %d records of 100 bytes in batches of %d with fsync per batch: %v (%.0f records/s)\n",
		*records, *batch, el.Round(time.Millisecond), float64(*records)/el.Seconds())
	if err := l.Close(); err != nil {
		return err
	}

	t0 = time.Now()
	l, err = storage.Open(*dir, cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(out, "reopened in %v: offsets [%d, %d), %d segments, %d bytes\n",
		time.Since(t0).Round(time.Microsecond), l.StartOffset(), l.EndOffset(), l.Segments(), l.Size())

	t0 = time.Now()
	var n int64
	var buf []byte
	for off := start; off < l.EndOffset(); {
		buf, err = l.Read(buf[:0], off, 1<<20, l.EndOffset())
		if err != nil {
			return err
		}
		for p := buf; len(p) > 0; {
			h, err := storage.DecodeBatch(p, func(o int64, r storage.Record) error {
				if o >= off {
					n++
				}
				return nil
			})
			if err != nil {
				return err
			}
			off = max(off, h.NextOffset())
			p = p[h.Size():]
		}
	}
	el = time.Since(t0)
	fmt.Fprintf(out, "read back and decoded %d records in %v (%.0f records/s)\n", n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	if n != int64(*records) {
		return fmt.Errorf("read %d records, appended %d", n, *records)
	}
	if off, ok, err := l.OffsetForTime(first); err == nil && ok {
		fmt.Fprintf(out, "first record at or after %s: offset %d\n", time.UnixMilli(first).Format(time.RFC3339Nano), off)
	}
	fmt.Fprintln(out, "demo done; run it again to append more, or inspect it with: weir log dump", *dir)
	return nil
}

// logDemoFlags registers the flags of `weir log demo`.
func logDemoFlags() (fs *flag.FlagSet, dir *string, records, batch *int) {
	fs = flag.NewFlagSet("log demo", flag.ContinueOnError)
	dir = fs.String("data", "./data/demo", "directory of the demo log")
	records = fs.Int("records", 200_000, "records to append")
	batch = fs.Int("batch", 1000, "records per batch")
	return fs, dir, records, batch
}
