package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/weirhq/weir/client"
)

// consumeFlags are the flags of `weir consume`.
type consumeFlags struct {
	topic     string
	group     string
	partition int
	from      string
	max       int
	idleExit  time.Duration
	maxWait   time.Duration
}

// runConsume handles `weir consume TOPIC`: it prints one value per line until --max values,
// --idle-exit without any, or Ctrl-C. With --group it is a member of the group and commits
// what it printed as it goes (and at exit); without, it reads one or all partitions from --from.
func runConsume(args []string, env cli) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	server := serverFlag(fs, env)
	var f consumeFlags
	fs.StringVar(&f.group, "group", "", "consume as a member of this consumer group, committing offsets")
	fs.IntVar(&f.partition, "partition", -1, "read only this partition (default: all; not with --group)")
	fs.StringVar(&f.from, "from", "earliest", "where to start: earliest, latest or an offset (with --group: where a partition without a committed offset starts)")
	fs.IntVar(&f.max, "max", 0, "exit after printing this many values (0: no limit)")
	fs.DurationVar(&f.idleExit, "idle-exit", 0, "exit when no value arrived for this long (0: never)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: consume takes one topic name", errUsage)
	}
	f.topic = pos[0]
	start, err := f.check()
	if err != nil {
		return err
	}
	f.maxWait = 500 * time.Millisecond
	if f.idleExit > 0 {
		f.maxWait = min(f.maxWait, f.idleExit)
	}
	c, err := connect(*server)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := bufio.NewWriterSize(env.stdout, 64<<10)
	defer out.Flush()
	if f.group != "" {
		return consumeGroup(ctx, c, &f, out, env)
	}
	return consumePartitions(ctx, c, &f, start, out)
}

// check validates the flags and returns the start position.
func (f *consumeFlags) check() (client.OffsetSpec, error) {
	var start client.OffsetSpec
	switch f.from {
	case "earliest":
		start = client.Earliest()
	case "latest":
		start = client.Latest()
	default:
		off, err := strconv.ParseInt(f.from, 10, 64)
		if err != nil || off < 0 {
			return start, fmt.Errorf("%w: --from %q: want earliest, latest or an offset", errUsage, f.from)
		}
		if f.group != "" {
			return start, fmt.Errorf("%w: --from %s with --group: want earliest or latest (a group starts at its committed offsets)", errUsage, f.from)
		}
		start = client.AtOffset(off)
	}
	switch {
	case f.group != "" && f.partition >= 0:
		return start, fmt.Errorf("%w: --partition with --group: the group assigns the partitions", errUsage)
	case f.partition < -1:
		return start, fmt.Errorf("%w: --partition %d: must not be negative", errUsage, f.partition)
	case f.max < 0:
		return start, fmt.Errorf("%w: --max %d: must not be negative", errUsage, f.max)
	case f.idleExit < 0:
		return start, fmt.Errorf("%w: --idle-exit %v: must not be negative", errUsage, f.idleExit)
	}
	return start, nil
}

// printer writes values, one per line, and counts them against --max.
type printer struct {
	out     *bufio.Writer
	max     int
	printed int
}

// print writes messages until --max; it returns how many it wrote and whether --max is reached,
// or the first error writing them (bufio.Writer keeps it: the writes after it fail too).
func (p *printer) print(msgs []client.Message) (int, bool, error) {
	n := 0
	for _, m := range msgs {
		if p.max > 0 && p.printed >= p.max {
			break
		}
		p.out.Write(m.Value)
		p.out.WriteByte('\n')
		p.printed++
		n++
	}
	if err := p.out.Flush(); err != nil {
		return n, false, fmt.Errorf("writing to standard output: %w", err)
	}
	return n, p.max > 0 && p.printed >= p.max, nil
}

// consumePartitions reads one partition, or every partition with one goroutine polling each;
// the goroutines are stopped and waited for before it returns.
func consumePartitions(ctx context.Context, c *client.Client, f *consumeFlags, start client.OffsetSpec, out *bufio.Writer) error {
	n, err := c.Partitions(ctx, f.topic)
	if err != nil {
		return err
	}
	parts := []int32{int32(f.partition)}
	if f.partition < 0 {
		parts = parts[:0]
		for p := range n {
			parts = append(parts, p)
		}
	} else if f.partition >= int(n) {
		return fmt.Errorf("consume %s: --partition %d: the topic has %d partitions", f.topic, f.partition, n)
	}
	ctx, cancel := context.WithCancel(ctx)
	type polled struct {
		msgs []client.Message
		err  error
	}
	results := make(chan polled)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stops the goroutines, before wg.Wait
	for _, p := range parts {
		cons, err := c.NewConsumer(f.topic, p, client.From(start), client.MaxWait(f.maxWait))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cons.Close()
			for {
				msgs, err := cons.Poll(ctx)
				if ctx.Err() != nil {
					return
				}
				if len(msgs) == 0 && err == nil {
					continue
				}
				select {
				case results <- polled{msgs, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	pr := &printer{out: out, max: f.max}
	idle := newIdleTimer(f.idleExit)
	defer idle.stop()
	for {
		select {
		case r := <-results:
			if r.err != nil {
				return r.err
			}
			if _, done, err := pr.print(r.msgs); err != nil || done {
				return err
			}
			idle.reset()
		case <-idle.c:
			return nil
		case <-ctx.Done():
			return nil // interrupted
		}
	}
}

// consumeGroup polls as a group member, committing after each poll what it printed; Close
// commits and leaves the group at the end, or Abort leaves it without committing a poll that
// could not be written out.
func consumeGroup(ctx context.Context, c *client.Client, f *consumeFlags, out *bufio.Writer, env cli) error {
	reset := client.ResetEarliest
	if f.from == "latest" {
		reset = client.ResetLatest
	}
	g, err := c.NewGroupConsumer(f.group, []string{f.topic}, client.ResetOffset(reset), client.MaxWait(f.maxWait))
	if err != nil {
		return err
	}
	pr := &printer{out: out, max: f.max}
	var idleAt time.Time
	if f.idleExit > 0 {
		idleAt = time.Now().Add(f.idleExit)
	}
	var runErr error
	for ctx.Err() == nil {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if !idleAt.IsZero() {
			pollCtx, cancel = context.WithDeadline(ctx, idleAt)
		}
		limit := 0
		if f.max > 0 {
			limit = f.max - pr.printed
		}
		msgs, err := g.PollRecords(pollCtx, limit)
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				runErr = err
			}
			break
		}
		_, done, err := pr.print(msgs)
		if err != nil {
			// Not all of this poll reached standard output: leave without committing it, so
			// that the group reads it again.
			if aerr := g.Abort(); aerr != nil && !errors.Is(aerr, client.ErrRebalanced) {
				fmt.Fprintln(env.stderr, "weir: leaving the group:", aerr)
			}
			return err
		}
		if err := g.Commit(ctx); err != nil && !errors.Is(err, client.ErrRebalanced) && ctx.Err() == nil {
			runErr = err
			break
		}
		if done {
			break
		}
		if len(msgs) > 0 && f.idleExit > 0 {
			idleAt = time.Now().Add(f.idleExit)
		} else if !idleAt.IsZero() && !time.Now().Before(idleAt) {
			break
		}
	}
	if err := g.Close(); err != nil && runErr == nil && !errors.Is(err, client.ErrRebalanced) {
		fmt.Fprintln(env.stderr, "weir: leaving the group:", err)
	}
	return runErr
}

// idleTimer fires when nothing was reset for its duration; a zero duration never fires.
type idleTimer struct {
	d time.Duration
	t *time.Timer
	c <-chan time.Time
}

func newIdleTimer(d time.Duration) *idleTimer {
	it := &idleTimer{d: d}
	if d > 0 {
		it.t = time.NewTimer(d)
		it.c = it.t.C
	}
	return it
}

func (it *idleTimer) reset() {
	if it.t != nil {
		it.t.Reset(it.d)
	}
}

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
}
