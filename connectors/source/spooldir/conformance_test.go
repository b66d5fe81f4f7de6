package spooldir

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// Records are lines of files of 100 lines each, written aside and renamed in; bad input is a
// file with an overlong line, which is quarantined.
var harness = sourcetest.Harness{
	Name:     "spooldir",
	Lossless: true,
	Batch:    50,
	Setup: func(t testing.TB) sourcetest.Vars {
		base := t.TempDir()
		os.Mkdir(filepath.Join(base, "spool"), 0o755)
		return sourcetest.Vars{"dir": filepath.Join(base, "spool"), "tmp": base}
	},
	New: func(v sourcetest.Vars, log *slog.Logger) (connectors.Source, error) {
		return New(Config{Dir: v["dir"], Batch: 50, MaxLine: 100, Poll: 20 * time.Millisecond, Logger: log})
	},
	Send: func(_ context.Context, v sourcetest.Vars, from, to int) error {
		for i := from; i < to; i += 100 {
			var b strings.Builder
			for j := i; j < min(i+100, to); j++ {
				fmt.Fprintf(&b, "%s a line\n", sourcetest.Value(j))
			}
			name := fmt.Sprintf("f%08d", i)
			if err := os.WriteFile(filepath.Join(v["tmp"], name), []byte(b.String()), 0o644); err != nil {
				return err
			}
			if err := os.Rename(filepath.Join(v["tmp"], name), filepath.Join(v["dir"], name)); err != nil {
				return err
			}
		}
		return nil
	},
	Bad: func(t testing.TB, v sourcetest.Vars, r sourcetest.Reports) {
		os.WriteFile(filepath.Join(v["dir"], "bad"), []byte(strings.Repeat("x", 200)+"\n"), 0o644)
		deadline := time.Now().Add(10 * time.Second)
		for {
			msg, err := os.ReadFile(filepath.Join(v["dir"], ".quarantine", "bad.error"))
			if err == nil && strings.Contains(string(msg), "longer than 100 bytes") && strings.Contains(r.Logs(), "quarantining a bad file") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bad file was not quarantined with its reason (%v); logs:\n%s", err, r.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	},
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
