package taildir

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// The conformance harness: records are lines appended to app.log, which is rotated by rename
// every 500 lines (to names the pattern matches too: the suite sends faster than any log
// rotates, so a file may be rotated before the source first looks); bad input is a line longer than MaxLine, delivered in marked pieces and so
// reported in the records themselves.
var harness = sourcetest.Harness{
	Name:     "taildir",
	Lossless: true,
	Batch:    100,
	Setup: func(t testing.TB) sourcetest.Vars {
		return sourcetest.Vars{"dir": t.TempDir()}
	},
	New: func(v sourcetest.Vars, log *slog.Logger) (connectors.Source, error) {
		return New(Config{Patterns: []string{filepath.Join(v["dir"], "app.log*")}, Batch: 100, MaxLine: 200, Logger: log})
	},
	Send: func(_ context.Context, v sourcetest.Vars, from, to int) error {
		path := filepath.Join(v["dir"], "app.log")
		for i := from; i < to; i++ {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			_, err = f.WriteString(sourcetest.Value(i) + " a line of the application's log\n")
			f.Close()
			if err != nil {
				return err
			}
			if i%500 == 499 {
				if err := os.Rename(path, path+"."+sourcetest.Value(i)); err != nil {
					return err
				}
			}
		}
		return nil
	},
	Bad: func(t testing.TB, v sourcetest.Vars, r sourcetest.Reports) {
		f, err := os.OpenFile(filepath.Join(v["dir"], "app.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(strings.Repeat("x", 450) + "\n")
		f.Close()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(r.Logs(), "longer than 200 bytes") {
			if time.Now().After(deadline) {
				t.Fatalf("an overlong line was not reported; logs:\n%s", r.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
		for deadline = time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			split := 0
			for _, m := range r.Records() {
				if m.Headers[HeaderSplit] == "more" {
					split++
				}
			}
			if split == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d records marked %s, want 2 (a 450-byte line in pieces of 200)", split, HeaderSplit)
			}
		}
	},
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
