package interceptor

import (
	"maps"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

func rec(value string, headers map[string]string) storage.Record {
	return storage.Record{Value: []byte(value), Headers: headers}
}

// must returns ic, or panics (failing the test) on err.
func must(ic connectors.Interceptor, err error) connectors.Interceptor {
	if err != nil {
		panic(err)
	}
	return ic
}

// run passes r through ic and checks that r itself (its header map and value) was not changed.
func run(t *testing.T, ic connectors.Interceptor, r storage.Record) (storage.Record, bool) {
	t.Helper()
	headers, value := maps.Clone(r.Headers), string(r.Value)
	out, ok := ic.Intercept(r)
	if !maps.Equal(r.Headers, headers) || string(r.Value) != value {
		t.Fatalf("the interceptor changed its input in place: headers %v -> %v, value %q -> %q", headers, r.Headers, value, r.Value)
	}
	return out, ok
}

func TestTimestamp(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	now := func() time.Time { return at }
	shared := map[string]string{"a": "1"}

	out, _ := run(t, Timestamp(TimestampConfig{Header: "timestamp", Now: now}), storage.Record{Timestamp: 5, Headers: shared})
	if out.Timestamp != at.UnixMilli() || out.Headers["timestamp"] != "1700000000123" || out.Headers["a"] != "1" {
		t.Fatalf("timestamp: %+v", out)
	}
	out, _ = run(t, Timestamp(TimestampConfig{Header: "timestamp", PreserveExisting: true, Now: now}),
		storage.Record{Timestamp: 5, Headers: map[string]string{"timestamp": "7"}})
	if out.Timestamp != 5 || out.Headers["timestamp"] != "7" {
		t.Fatalf("timestamp, preserving: %+v", out)
	}
	out, _ = run(t, Timestamp(TimestampConfig{PreserveExisting: true, Now: now}), storage.Record{})
	if out.Timestamp != at.UnixMilli() || out.Headers != nil {
		t.Fatalf("timestamp of a record without one, no header: %+v", out)
	}
}

func TestHost(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	out, _ := run(t, must(Host(HostConfig{})), rec("x", nil))
	if out.Headers["host"] != name {
		t.Fatalf("host header %q, want %q", out.Headers["host"], name)
	}
	out, _ = run(t, must(Host(HostConfig{Header: "h", PreserveExisting: true})), rec("x", map[string]string{"h": "mine"}))
	if out.Headers["h"] != "mine" {
		t.Fatalf("preserved host header %q", out.Headers["h"])
	}
	if ic, err := Host(HostConfig{UseIP: true}); err == nil {
		out, _ = run(t, ic, rec("x", nil))
		if !regexp.MustCompile(`^[0-9a-f.:]+$`).MatchString(out.Headers["host"]) {
			t.Fatalf("IP host header %q", out.Headers["host"])
		}
	}
}

func TestStatic(t *testing.T) {
	if _, err := Static("", "v", false); err == nil || !strings.Contains(err.Error(), "empty header name") {
		t.Fatalf("empty key: %v", err)
	}
	shared := map[string]string{"dc": "old"}
	out, _ := run(t, must(Static("dc", "eu1", false)), rec("x", shared))
	if out.Headers["dc"] != "eu1" {
		t.Fatalf("static: %v", out.Headers)
	}
	out, _ = run(t, must(Static("dc", "eu1", true)), rec("x", shared))
	if out.Headers["dc"] != "old" {
		t.Fatalf("static, preserving: %v", out.Headers)
	}
}

func TestRemoveHeaders(t *testing.T) {
	if _, err := RemoveHeaders(nil, ""); err == nil {
		t.Fatal("no names and no pattern accepted")
	}
	if _, err := RemoveHeaders(nil, "a("); err == nil || !strings.Contains(err.Error(), `"a("`) {
		t.Fatalf("bad pattern: %v", err)
	}
	in := rec("x", map[string]string{"keep": "1", "drop": "2", "tmp.a": "3", "tmp.b": "4", "xtmp.c": "5"})
	out, _ := run(t, must(RemoveHeaders([]string{"drop"}, `tmp\..*`)), in)
	if want := map[string]string{"keep": "1", "xtmp.c": "5"}; !maps.Equal(out.Headers, want) {
		t.Fatalf("removed: %v, want %v", out.Headers, want)
	}
}

func TestUUID(t *testing.T) {
	ic := UUID(UUIDConfig{Prefix: "w-"})
	seen := map[string]bool{}
	re := regexp.MustCompile(`^w-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for range 1000 {
		out, _ := run(t, ic, rec("x", nil))
		id := out.Headers["id"]
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	out, _ := run(t, UUID(UUIDConfig{Header: "eid", PreserveExisting: true}), rec("x", map[string]string{"eid": "e1"}))
	if out.Headers["eid"] != "e1" {
		t.Fatalf("preserved id %q", out.Headers["eid"])
	}
}

func TestRegexFilter(t *testing.T) {
	if _, err := RegexFilter("[", false); err == nil || !strings.Contains(err.Error(), "regex-filter") {
		t.Fatalf("bad pattern: %v", err)
	}
	include := must(RegexFilter(`ERROR|WARN`, false))
	exclude := must(RegexFilter(`DEBUG`, true))
	for _, c := range []struct {
		line             string
		include, exclude bool
	}{
		{"2026 ERROR disk full", true, true},
		{"2026 WARN slow", true, true},
		{"2026 INFO ok", false, true},
		{"2026 DEBUG x", false, false},
	} {
		if _, ok := run(t, include, rec(c.line, nil)); ok != c.include {
			t.Errorf("include ERROR|WARN, %q: kept %v", c.line, ok)
		}
		if _, ok := run(t, exclude, rec(c.line, nil)); ok != c.exclude {
			t.Errorf("exclude DEBUG, %q: kept %v", c.line, ok)
		}
	}
}

func TestRegexExtractor(t *testing.T) {
	if _, err := RegexExtractor(`(\d+)`, "a", "b"); err == nil || !strings.Contains(err.Error(), "1 capture groups, but 2 header names") {
		t.Fatalf("too many names: %v", err)
	}
	if _, err := RegexExtractor(`(\d+)`); err == nil {
		t.Fatal("no names accepted")
	}
	ic := must(RegexExtractor(`^(\S+) (\S+) status=(\d+)(?: user=(\w+))?`, "date", "", "status", "user"))
	out, _ := run(t, ic, rec("2026-12-01 GET status=404", map[string]string{"k": "v"}))
	if want := map[string]string{"k": "v", "date": "2026-12-01", "status": "404"}; !maps.Equal(out.Headers, want) {
		t.Fatalf("extracted %v, want %v", out.Headers, want)
	}
	out, _ = run(t, ic, rec("2026-12-01 GET status=200 user=ann", nil))
	if out.Headers["user"] != "ann" || out.Headers["status"] != "200" {
		t.Fatalf("extracted %v", out.Headers)
	}
	out, ok := run(t, ic, rec("no match here", nil))
	if !ok || out.Headers != nil {
		t.Fatalf("no match: kept %v, headers %v", ok, out.Headers)
	}
}

func TestSearchReplace(t *testing.T) {
	if _, err := SearchReplace("(", ""); err == nil {
		t.Fatal("bad pattern accepted")
	}
	ic := must(SearchReplace(`password=\S+`, "password=***"))
	out, _ := run(t, ic, rec("login user=a password=hunter2 ok", nil))
	if string(out.Value) != "login user=a password=*** ok" {
		t.Fatalf("replaced: %q", out.Value)
	}
	ic = must(SearchReplace(`(\w+)@(\w+)\.com`, "$1 at ${2}"))
	out, _ = run(t, ic, rec("mail ann@example.com, bob@test.com", nil))
	if string(out.Value) != "mail ann at example, bob at test" {
		t.Fatalf("replaced with groups: %q", out.Value)
	}
}

// TestChain: interceptors run in order, each sees the one before's output, and a drop stops
// the chain (the ones after it do not run).
func TestChain(t *testing.T) {
	var after int
	ic := Chain(
		must(Static("stage", "1", false)),
		Func(func(r storage.Record) (storage.Record, bool) {
			if r.Headers["stage"] != "1" {
				t.Errorf("second interceptor saw headers %v", r.Headers)
			}
			r.Value = append([]byte("seen:"), r.Value...)
			return r, true
		}),
		must(RegexFilter(`^seen:keep`, false)),
		Func(func(r storage.Record) (storage.Record, bool) { after++; return r, true }),
	)
	out, ok := run(t, ic, rec("keep me", nil))
	if !ok || string(out.Value) != "seen:keep me" || after != 1 {
		t.Fatalf("kept %v, value %q, ran after the filter %d times", ok, out.Value, after)
	}
	if _, ok := run(t, ic, rec("drop me", nil)); ok || after != 1 {
		t.Fatalf("dropped record: kept %v, ran after the filter %d times", ok, after)
	}
}
