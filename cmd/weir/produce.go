package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// maxShownErrors bounds the per-record errors printed by `weir produce`.
const maxShownErrors = 5

// runProduce handles `weir produce TOPIC`: one record per line of standard input, until its
// end or SIGINT or SIGTERM. It exits 0 only when every record was acknowledged; a summary goes
// to standard error.
func runProduce(args []string, env cli) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal ends the process at once
	return produce(ctx, args, env)
}

// produce is runProduce with ctx for the signals: when ctx ends it stops reading standard
// input, sends what it buffered, waits for the answers and prints its summary.
func produce(ctx context.Context, args []string, env cli) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	server := serverFlag(fs, env)
	acksFlag := fs.String("acks", "all", "when the node answers: all (committed), leader (appended) or none")
	sep := fs.String("key-separator", "", "split each line into key and value at the first occurrence of this string (no key when absent from the line)")
	linger := fs.Duration("linger", client.DefaultLinger, "how long a batch waits for more lines")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: produce takes one topic name", errUsage)
	}
	acks, err := wire.ParseAcks(*acksFlag)
	if err != nil {
		return fmt.Errorf("%w: --acks: %v", errUsage, err)
	}
	if *linger < 0 {
		return fmt.Errorf("%w: --linger %v: must not be negative", errUsage, *linger)
	}
	topic := pos[0]
	c, err := connect(*server)
	if err != nil {
		return err
	}
	defer c.Close()
	// A topic that does not exist fails at once, not after every line's retries.
	if _, err := c.Partitions(ctx, topic); err != nil {
		if we := wire.AsError(err); we != nil {
			return fmt.Errorf("produce %s: %w", topic, we)
		}
		return err
	}
	p, err := c.NewProducer(topic, client.Acks(acks), client.Linger(*linger))
	if err != nil {
		return err
	}

	var (
		mu     sync.Mutex
		failed int
		shown  int
	)
	onError := func(line int, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed++
		if shown < maxShownErrors {
			shown++
			fmt.Fprintf(env.stderr, "weir: line %d: %v\n", line, err)
		}
	}
	start := time.Now()
	var records, bytesIn int
	lines, readDone := readLines(env.stdin)
	defer close(readDone)
	var readErr error
	interrupted := false
read:
	for {
		var line []byte
		select {
		case l, ok := <-lines:
			if !ok {
				break read
			}
			if l.err != nil {
				readErr = l.err
				break read
			}
			line = l.b
		case <-ctx.Done():
			interrupted = true
			break read
		}
		records++
		n := records
		rec := storage.Record{Value: line}
		if *sep != "" {
			if k, v, ok := bytes.Cut(rec.Value, []byte(*sep)); ok {
				rec.Key, rec.Value = k, v
			}
		}
		bytesIn += len(rec.Key) + len(rec.Value)
		p.ProduceAsync(ctx, rec, func(_ int64, err error) {
			if err != nil {
				onError(n, err)
			}
		})
	}
	if errors.Is(readErr, bufio.ErrTooLong) {
		readErr = fmt.Errorf("line %d is longer than %d bytes", records+1, storage.MaxBatchSize-storage.HeaderSize)
	}
	if interrupted {
		fmt.Fprintf(env.stderr, "weir: interrupted: stopped reading standard input after %d records\n", records)
	}
	_ = p.Close() // waits for every record's answer
	el := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if failed > shown {
		fmt.Fprintf(env.stderr, "weir: ... and %d more errors\n", failed-shown)
	}
	fmt.Fprintf(env.stderr, "produced %d of %d records (%d bytes) to %s in %v (acks=%s), %d errors\n",
		records-failed, records, bytesIn, topic, el.Round(time.Millisecond), acks, failed)
	switch {
	case readErr != nil:
		return fmt.Errorf("reading standard input: %w", readErr)
	case failed > 0:
		return fmt.Errorf("%d of %d records were not acknowledged", failed, records)
	}
	return nil
}

// inputLine is a line of standard input, or the error that ended the reading.
type inputLine struct {
	b   []byte
	err error
}

// readLines reads r line by line on a goroutine, until its end or an error (sent as the last
// line) or until done is closed. The channel is unbuffered: a line sent was taken.
func readLines(r io.Reader) (lines <-chan inputLine, done chan<- struct{}) {
	ch, stop := make(chan inputLine), make(chan struct{})
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), storage.MaxBatchSize-storage.HeaderSize)
		for sc.Scan() {
			select {
			case ch <- inputLine{b: bytes.Clone(sc.Bytes())}:
			case <-stop:
				return
			}
		}
		if err := sc.Err(); err != nil {
			select {
			case ch <- inputLine{err: err}:
			case <-stop:
			}
		}
	}()
	return ch, stop
}
