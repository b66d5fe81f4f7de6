package seq

import (
	"log/slog"
	"testing"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// The generator makes records 0..N-1 itself, at 5,000 a second so that a crash lands midway.
var harness = sourcetest.Harness{
	Name:     "seq",
	Lossless: true,
	Batch:    50,
	Setup:    func(testing.TB) sourcetest.Vars { return nil },
	New: func(sourcetest.Vars, *slog.Logger) (connectors.Source, error) {
		return New(Config{Count: 2000, Batch: 50, Rate: 5000, Prefix: "rec-"})
	},
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
