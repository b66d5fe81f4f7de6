package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// Records are events POSTed 50 to a request, each request sent again until it is answered 200,
// so nothing is lost across crashes (and a crash repeats at most the request in flight). Bad
// input is a body that is not JSON, answered 400 with the reason.
var harness = sourcetest.Harness{
	Name:     "http",
	Lossless: true,
	Batch:    50,
	Setup: func(t testing.TB) sourcetest.Vars {
		return sourcetest.Vars{"addr": sourcetest.FreeAddr(t, "tcp")}
	},
	New: func(v sourcetest.Vars, log *slog.Logger) (connectors.Source, error) {
		return New(Config{Addr: v["addr"], Logger: log})
	},
	Send: func(ctx context.Context, v sourcetest.Vars, from, to int) error {
		cl := &nethttp.Client{Timeout: 20 * time.Second}
		for i := from; i < to; i += 50 {
			type event struct {
				Body string `json:"body"`
			}
			var evs []event
			for j := i; j < min(i+50, to); j++ {
				evs = append(evs, event{Body: sourcetest.Value(j) + " an event"})
			}
			body, _ := json.Marshal(evs)
			err := sourcetest.Retry(ctx, func() error {
				req, _ := nethttp.NewRequestWithContext(ctx, "POST", "http://"+v["addr"]+"/", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := cl.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %s", resp.Status)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	},
	Bad: func(t testing.TB, v sourcetest.Vars, _ sourcetest.Reports) {
		resp, err := nethttp.Post("http://"+v["addr"]+"/", "application/json", strings.NewReader(`[{"body": "x"`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(msg), "invalid JSON at byte") {
			t.Fatalf("a body that is not JSON: %s %q", resp.Status, msg)
		}
	},
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
