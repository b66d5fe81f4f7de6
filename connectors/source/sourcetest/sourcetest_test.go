package sourcetest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// The suite's own tests: sources that break a rule must fail the case that checks it.

// memSource reads records from a channel the harness's Send fills. It keeps no batch in
// flight across a Close: a Read's records that the topic never got are lost, as syslog's
// were before 5bf856a.
type memSource struct{ ch chan storage.Record }

func (s *memSource) Open(context.Context, []byte) error { return nil }
func (s *memSource) Close() error                       { return nil }
func (s *memSource) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	var out []storage.Record
	select {
	case r := <-s.ch:
		out = append(out, r)
	case <-ctx.Done():
		return nil, nil, nil
	}
	for len(out) < 50 {
		select {
		case r := <-s.ch:
			out = append(out, r)
		case <-time.After(5 * time.Millisecond):
			return out, nil, nil
		}
	}
	return out, nil, nil
}

var memCh = make(chan storage.Record, 100_000)

func memHarness(send func(ctx context.Context, from, to int) error) Harness {
	return Harness{
		Name: "mem", Batch: 50, N: 1000,
		Setup: func(testing.TB) Vars { return Vars{} },
		New: func(Vars, *slog.Logger) (connectors.Source, error) {
			return &memSource{ch: memCh}, nil
		},
		Send: func(ctx context.Context, _ Vars, from, to int) error { return send(ctx, from, to) },
	}
}

func sendMem(_ context.Context, from, to int) error {
	for i := from; i < to; i++ {
		memCh <- storage.Record{Value: []byte(Value(i))}
	}
	return nil
}

// TestSendGetsADeadline: a sender that waits for acknowledgements "retries until it has them or
// ctx is done" (Harness.Send), as the netcat, http and syslog-tcp senders do; every case gives
// it a deadline, so that a source that never acknowledges fails the case instead of hanging the
// suite until go test's -timeout.
func TestSendGetsADeadline(t *testing.T) {
	h := memHarness(func(ctx context.Context, from, to int) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("Send was given a context with no deadline: a sender that waits for acknowledgements that never come hangs the suite")
		}
		return sendMem(ctx, from, to)
	})
	deliversAll(t, h)
}

// TestResumesAfterPanicChecksTheBatchInFlight: memSource loses the batch in flight at each of
// the three panics (150 records). ResumesAfterPanic must fail it, though memSource is not
// Lossless: the records of the batches lost to the panics are awaited by number. (Before, only
// the records sent after the last restart were checked, and it passed.)
func TestResumesAfterPanicChecksTheBatchInFlight(t *testing.T) {
	if os.Getenv("SOURCETEST_REVIEW_CHILD") == "1" {
		awaitTimeout = 5 * time.Second
		resumesAfterPanic(t, memHarness(sendMem))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestResumesAfterPanicChecksTheBatchInFlight$", "-test.v")
	cmd.Env = append(os.Environ(), "SOURCETEST_REVIEW_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("ResumesAfterPanic passed a source that lost its batch in flight at every panic:\n%s", lastLines(string(out), 6))
	}
	t.Logf("ResumesAfterPanic failed it, as it should:\n%s", lastLines(string(out), 6))
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
