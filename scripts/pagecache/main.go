//go:build linux

// Command pagecache measures what a growing page cache does to the cost of buffered writes: it
// writes 256 KiB at a time at a fixed rate into 128 MiB files, a goroutine fsyncs each full
// file (and, with -dontneed, then drops it from the page cache, as storage.Config.DropCache
// does), and it prints each second the time spent in write(2). docs/benchmarks.md ("DropCache")
// has the figures it gave on the benchmark VM.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", "", "directory for the files (removed at the end); a temporary one by default")
	rate := flag.Float64("rate", 300, "MB/s to write")
	duration := flag.Duration("duration", 25*time.Second, "how long to write")
	dontneed := flag.Bool("dontneed", false, "drop each file from the page cache after its fsync")
	flag.Parse()
	if err := run(*dir, *rate*1e6, *duration, *dontneed); err != nil {
		fmt.Fprintln(os.Stderr, "pagecache:", err)
		os.Exit(1)
	}
}

func run(dir string, rate float64, duration time.Duration, dontneed bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "pagecache")
		if err != nil {
			return err
		}
		dir = d
	}
	defer os.RemoveAll(dir)
	const fileBytes = 128 << 20
	full := make(chan *os.File, 16)
	synced := make(chan error, 1)
	go func() {
		var first error
		for f := range full {
			err := f.Sync()
			if err == nil && dontneed {
				err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if first == nil {
				first = err
			}
		}
		synced <- first
	}()
	buf := make([]byte, 256<<10)
	var f *os.File
	var inFile, total int64
	var busy time.Duration
	start := time.Now()
	last := start
	for time.Since(start) < duration {
		if f == nil || inFile >= fileBytes {
			if f != nil {
				full <- f
			}
			var err error
			if f, err = os.Create(filepath.Join(dir, fmt.Sprint(total))); err != nil {
				return err
			}
			inFile = 0
		}
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return err
		}
		busy += time.Since(t)
		inFile += int64(len(buf))
		total += int64(len(buf))
		time.Sleep(time.Until(start.Add(time.Duration(float64(total) / rate * float64(time.Second)))))
		if now := time.Now(); now.Sub(last) >= time.Second {
			fmt.Printf("%3.0fs  write(2) %4.0f ms/s  written %6d MB\n", now.Sub(start).Seconds(),
				float64(busy)/float64(time.Millisecond)/now.Sub(last).Seconds(), total>>20)
			busy, last = 0, now
		}
	}
	if f != nil {
		full <- f
	}
	close(full)
	return <-synced
}
