package storage

// Benchmarks of the partition log on the real disk (vfs.OS under b.TempDir()). Results and the
// commands that produce them are in docs/benchmarks.md. Every benchmark reports bytes/s (through
// b.SetBytes) and records/s.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/storage/vfs"
)

const (
	benchRecordsPerBatch = 1000
	benchTS0             = 1_700_000_000_000 // unix milliseconds
)

// benchValue returns a value of n bytes that does not compress to nothing.
func benchValue(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}

// benchBuild encodes one batch of n records with the given value, timestamps ts, ts+1, ...; the
// result is the builder's buffer (valid until its next Reset).
func benchBuild(b testing.TB, bb *BatchBuilder, n int, value []byte, ts int64) []byte {
	bb.Reset()
	for i := 0; i < n; i++ {
		if err := bb.Add(Record{Value: value, Timestamp: ts + int64(i)}); err != nil {
			b.Fatal(err)
		}
	}
	return bb.Build()
}

// benchConfig is DefaultConfig on the real disk with the given sync mode.
func benchConfig(sync SyncMode) Config {
	c := DefaultConfig()
	c.FS = vfs.OS
	c.Sync = sync
	return c
}

func benchOpen(b *testing.B, dir string, cfg Config) *Log {
	b.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	return l
}

func reportRecords(b *testing.B, records int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(records)/s, "records/s")
	}
}

// benchFill appends batches of 1,000 records of valueSize bytes until the log holds at least
// total bytes of batches, with SyncNever and one Sync at the end. It returns the bytes of
// batches written (segment headers excluded) and the number of records.
func benchFill(b *testing.B, dir string, cfg Config, total int64, valueSize int) (int64, int) {
	b.Helper()
	cfg.Sync = SyncNever
	l := benchOpen(b, dir, cfg)
	bb := NewBatchBuilder()
	value := benchValue(valueSize)
	var written int64
	records := 0
	for ts := int64(benchTS0); written < total; ts += benchRecordsPerBatch {
		batch := benchBuild(b, bb, benchRecordsPerBatch, value, ts)
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
		written += int64(len(batch))
		records += benchRecordsPerBatch
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	return written, records
}

// BenchmarkAppend100BBatch1000NoSync is the producer path without fsync: each iteration encodes
// 1,000 records with 100-byte values into a batch (msgpack encoding and CRC are timed) and appends
// it. Target: at least 2,000,000 records/s.
func BenchmarkAppend100BBatch1000NoSync(b *testing.B) {
	cfg := benchConfig(SyncNever)
	cfg.SegmentBytes = 512 << 20
	l := benchOpen(b, b.TempDir(), cfg)
	defer l.Close()
	bb := NewBatchBuilder()
	value := benchValue(100)
	b.SetBytes(int64(len(benchBuild(b, bb, benchRecordsPerBatch, value, benchTS0))))
	b.ReportAllocs()
	b.ResetTimer()
	ts := int64(benchTS0)
	for i := 0; i < b.N; i++ {
		batch := benchBuild(b, bb, benchRecordsPerBatch, value, ts)
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
		ts += benchRecordsPerBatch
	}
	b.StopTimer()
	reportRecords(b, b.N*benchRecordsPerBatch)
}

// BenchmarkAppend1KiBBatch1MiBFsync compares the log with SyncAlways against the disk itself.
// "log" appends batches of 1,000 records of 1 KiB (about 1 MiB each) and fsyncs after every one;
// "plain" writes the same number of bytes to an os.File and calls Sync after each write. The
// batch is built once, outside the timer, so that both measure the disk path only (encoding is
// measured by BenchmarkAppend100BBatch1000NoSync and BenchmarkEncodeBatch). Target: log at least
// 50% of plain.
func BenchmarkAppend1KiBBatch1MiBFsync(b *testing.B) {
	batch := benchBatch1MiB(b)
	b.Run("log", func(b *testing.B) {
		l := benchOpen(b, b.TempDir(), benchConfig(SyncAlways))
		defer l.Close()
		b.SetBytes(int64(len(batch)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := l.Append(batch); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportRecords(b, b.N*benchRecordsPerBatch)
	})
	b.Run("plain", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain"), os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(int64(len(batch)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := f.Write(batch); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportRecords(b, b.N*benchRecordsPerBatch)
	})
}

func benchBatch1MiB(b *testing.B) []byte {
	batch := benchBuild(b, NewBatchBuilder(), benchRecordsPerBatch, benchValue(1024), benchTS0)
	return append([]byte(nil), batch...)
}

// BenchmarkReadSequential reads a log of about 256 MiB (batches of 1,000 records of 100 bytes)
// from offset 0 to its end in reads of 1 MiB, the way a consumer catching up does. One iteration
// is one full pass. The log is written once, untimed, and is in the page cache. Target: 1 GB/s.
func BenchmarkReadSequential(b *testing.B) {
	dir := b.TempDir()
	total, records := benchFill(b, dir, benchConfig(SyncNever), 256<<20, 100)
	for _, verify := range []bool{true, false} {
		name := "verify=false"
		if verify {
			name = "verify=true"
		}
		b.Run(name, func(b *testing.B) {
			cfg := benchConfig(SyncNever)
			cfg.VerifyReads = verify
			l := benchOpen(b, dir, cfg)
			defer l.Close()
			end := l.EndOffset()
			dst := make([]byte, 0, 1<<20+MaxBatchSize)
			b.SetBytes(total)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var n int64
				for off := int64(0); off < end; {
					var err error
					dst, err = l.Read(dst[:0], off, 1<<20, end)
					if err != nil {
						b.Fatal(err)
					}
					if len(dst) == 0 {
						b.Fatalf("empty read at offset %d of %d", off, end)
					}
					// Walk the batch headers to the last one; its NextOffset is where the next
					// read starts.
					for p := 0; p < len(dst); {
						h, err := ParseHeader(dst[p:])
						if err != nil {
							b.Fatal(err)
						}
						off = h.NextOffset()
						p += h.Size()
					}
					n += int64(len(dst))
				}
				if n != total {
					b.Fatalf("read %d bytes, want %d", n, total)
				}
			}
			b.StopTimer()
			reportRecords(b, b.N*records)
		})
	}
}

// BenchmarkOpen1GB opens (and closes) a log of about 1 GiB in 128 MiB segments. The log is built
// once, untimed; its files are in the page cache, so this measures recovery's CPU and system-call
// cost, not a cold disk. "indexes-present" is the normal restart; "indexes-rebuilt" deletes every
// *.index and *.timeindex file before each Open (untimed), so Open rebuilds them from the
// segments. Target: indexes-present under 1 s. Run it with -benchtime 3x: every iteration of
// indexes-rebuilt reads the whole log.
func BenchmarkOpen1GB(b *testing.B) {
	dir := b.TempDir()
	total, _ := benchFill(b, dir, benchConfig(SyncNever), 1<<30, 100)
	open := func(b *testing.B) {
		l := benchOpen(b, dir, benchConfig(SyncNever))
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("indexes-present", func(b *testing.B) {
		b.SetBytes(total)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			open(b)
		}
	})
	b.Run("indexes-rebuilt", func(b *testing.B) {
		b.SetBytes(total)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			names, err := os.ReadDir(dir)
			if err != nil {
				b.Fatal(err)
			}
			removed := 0
			for _, e := range names {
				if n := e.Name(); strings.HasSuffix(n, indexSuffix) || strings.HasSuffix(n, timeIndexSuffix) {
					if err := os.Remove(filepath.Join(dir, n)); err != nil {
						b.Fatal(err)
					}
					removed++
				}
			}
			if removed == 0 {
				b.Fatal("no index files to remove")
			}
			b.StartTimer()
			open(b)
		}
	})
}

// BenchmarkEncodeBatch encodes 1,000 records with 100-byte values into a batch with a reused
// BatchBuilder (no disk).
func BenchmarkEncodeBatch(b *testing.B) {
	bb := NewBatchBuilder()
	value := benchValue(100)
	b.SetBytes(int64(len(benchBuild(b, bb, benchRecordsPerBatch, value, benchTS0))))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchBuild(b, bb, benchRecordsPerBatch, value, benchTS0)
	}
	b.StopTimer()
	reportRecords(b, b.N*benchRecordsPerBatch)
}

// BenchmarkDecodeBatch checks and decodes a batch of 1,000 records with 100-byte values (no disk).
func BenchmarkDecodeBatch(b *testing.B) {
	batch := append([]byte(nil), benchBuild(b, NewBatchBuilder(), benchRecordsPerBatch, benchValue(100), benchTS0)...)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	var sum int
	for i := 0; i < b.N; i++ {
		if _, err := DecodeBatch(batch, func(_ int64, r Record) error {
			sum += len(r.Value)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if sum != b.N*benchRecordsPerBatch*100 {
		b.Fatalf("decoded %d value bytes", sum)
	}
	reportRecords(b, b.N*benchRecordsPerBatch)
}
