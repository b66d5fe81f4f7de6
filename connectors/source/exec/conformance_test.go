package exec

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/lines"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// The command is `tail -n +1 -F FILE` and records are lines appended to FILE. Each start of
// the command prints the file from its beginning, so nothing is lost across crashes and
// everything is delivered again (RepeatsAll): the weak guarantee of a source that cannot ask
// for anything again.
// Bad input is an overlong line, cut and marked with a header.
var harness = sourcetest.Harness{
	Name:       "exec",
	Lossless:   true,
	RepeatsAll: true,
	Batch:      50,
	Setup: func(t testing.TB) sourcetest.Vars {
		path := filepath.Join(t.TempDir(), "in.log")
		os.WriteFile(path, nil, 0o644)
		return sourcetest.Vars{"file": path}
	},
	New: func(v sourcetest.Vars, log *slog.Logger) (connectors.Source, error) {
		return New(Config{Command: []string{"tail", "-n", "+1", "-F", v["file"]}, Restart: Always, RestartDelay: 50 * time.Millisecond,
			Lines: lines.Config{Batch: 50, MaxLine: 100}, Logger: log})
	},
	Send: func(_ context.Context, v sourcetest.Vars, from, to int) error {
		f, err := os.OpenFile(v["file"], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		var b strings.Builder
		for i := from; i < to; i++ {
			b.WriteString(sourcetest.Value(i) + " a line\n")
		}
		_, err = f.WriteString(b.String())
		return err
	},
	Bad: func(t testing.TB, v sourcetest.Vars, r sourcetest.Reports) {
		f, err := os.OpenFile(v["file"], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(strings.Repeat("x", 300) + "\n")
		f.Close()
		deadline := time.Now().Add(10 * time.Second)
		for ; ; time.Sleep(20 * time.Millisecond) {
			for _, m := range r.Records() {
				if m.Headers[lines.HeaderTruncated] == "300" {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no record marked %s=300", lines.HeaderTruncated)
			}
		}
	},
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
