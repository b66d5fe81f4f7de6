package bench

import (
	"path/filepath"
	"testing"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/sink/null"
)

// TestWrapKeepsInterfaces: the timed wrapper shows the runner what the sink it wraps is. The
// rolling-file sink is a staging sink that notifies; taken for a plain Sink, its offsets would
// be committed before its data is durable.
func TestWrapKeepsInterfaces(t *testing.T) {
	fs, err := file.New(file.DefaultConfig(filepath.Join(t.TempDir(), "out")))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := null.New(null.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name            string
		inner           connectors.Sink
		staging, notify bool
	}{
		{"file", fs, true, true},
		{"null", ns, false, false},
	} {
		_, w := wrap(c.inner)
		if _, ok := w.(connectors.StagingSink); ok != c.staging {
			t.Errorf("%s: wrapped is a StagingSink: %v, want %v", c.name, ok, c.staging)
		}
		if _, ok := w.(connectors.DurableNotifier); ok != c.notify {
			t.Errorf("%s: wrapped is a DurableNotifier: %v, want %v", c.name, ok, c.notify)
		}
		if _, ok := w.(connectors.Borrower); !ok {
			t.Errorf("%s: wrapped is not a Borrower", c.name)
		}
	}
}
