package selector

import (
	"slices"
	"strings"
	"testing"

	"github.com/weirhq/weir/storage"
)

func TestReplicating(t *testing.T) {
	s, err := Replicating("a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Select(storage.Record{}); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("selected %v", got)
	}
	if got := s.Topics(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("topics %v", got)
	}
	for _, bad := range [][]string{nil, {"a", ""}, {"a", "a"}} {
		if _, err := Replicating(bad...); err == nil || !strings.Contains(err.Error(), "replicating selector") {
			t.Errorf("topics %q: %v", bad, err)
		}
	}
}

func TestMultiplexing(t *testing.T) {
	s, err := Multiplexing(MultiplexingConfig{
		Header:  "kind",
		Routes:  map[string][]string{"web": {"web", "all"}, "db": {"db", "all"}},
		Default: []string{"other"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Topics(); !slices.Equal(got, []string{"other", "db", "all", "web"}) {
		t.Fatalf("topics %v: want the default first, then each route's topics once, by value", got)
	}
	for _, c := range []struct {
		headers map[string]string
		want    []string
	}{
		{map[string]string{"kind": "web"}, []string{"web", "all"}},
		{map[string]string{"kind": "db"}, []string{"db", "all"}},
		{map[string]string{"kind": "cache"}, []string{"other"}},
		{nil, []string{"other"}},
	} {
		if got := s.Select(storage.Record{Headers: c.headers}); !slices.Equal(got, c.want) {
			t.Errorf("headers %v: selected %v, want %v", c.headers, got, c.want)
		}
	}
	noDefault, err := Multiplexing(MultiplexingConfig{Header: "kind", Routes: map[string][]string{"web": {"web"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := noDefault.Select(storage.Record{}); len(got) != 0 {
		t.Fatalf("without a default, an unrouted record went to %v", got)
	}
	for _, c := range []struct {
		cfg  MultiplexingConfig
		want string
	}{
		{MultiplexingConfig{Routes: map[string][]string{"a": {"a"}}}, "no header"},
		{MultiplexingConfig{Header: "h"}, "no routes and no default"},
		{MultiplexingConfig{Header: "h", Routes: map[string][]string{"a": nil}}, `value "a" of header "h" routes to no topic`},
		{MultiplexingConfig{Header: "h", Routes: map[string][]string{"a": {"x", "x"}}}, `topic "x" named twice`},
		{MultiplexingConfig{Header: "h", Default: []string{""}}, "empty topic name"},
	} {
		if _, err := Multiplexing(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.cfg, err, c.want)
		}
	}
}
