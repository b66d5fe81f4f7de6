// Package selector holds the channel selectors of Flume, for topics: Replicating sends every
// record to each of its topics, Multiplexing routes a record by a header's value, with default
// topics for the rest. A flow takes one with flow.Runtime.SourceTo.
package selector

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// Replicating sends every record to each of topics.
func Replicating(topics ...string) (connectors.Selector, error) {
	if len(topics) == 0 {
		return nil, errors.New("replicating selector: no topics")
	}
	ts, err := distinct("replicating selector", topics)
	if err != nil {
		return nil, err
	}
	return replicating(ts), nil
}

type replicating []string

func (r replicating) Select(storage.Record) []string { return r }
func (r replicating) Topics() []string               { return slices.Clone(r) }

// MultiplexingConfig configures Multiplexing.
type MultiplexingConfig struct {
	// Header is the header whose value picks the topics.
	Header string
	// Routes maps a header value to the topics its records go to.
	Routes map[string][]string
	// Default is where records go whose header is missing or has a value Routes does not
	// name; none drops them.
	Default []string
}

// Multiplexing routes each record by the value of a header.
func Multiplexing(cfg MultiplexingConfig) (connectors.Selector, error) {
	const what = "multiplexing selector"
	if cfg.Header == "" {
		return nil, fmt.Errorf("%s: no header", what)
	}
	if len(cfg.Routes) == 0 && len(cfg.Default) == 0 {
		return nil, fmt.Errorf("%s on header %q: no routes and no default", what, cfg.Header)
	}
	m := &multiplexing{header: cfg.Header, routes: map[string][]string{}}
	var err error
	if m.def, err = distinct(what+" default", cfg.Default); err != nil {
		return nil, err
	}
	// Topics: the default first (the position's topic), then the routes' in value order.
	all := slices.Clone(m.def)
	values := make([]string, 0, len(cfg.Routes))
	for v := range cfg.Routes {
		values = append(values, v)
	}
	sort.Strings(values)
	for _, v := range values {
		ts := cfg.Routes[v]
		if len(ts) == 0 {
			return nil, fmt.Errorf("%s: value %q of header %q routes to no topic", what, v, cfg.Header)
		}
		if m.routes[v], err = distinct(fmt.Sprintf("%s route %q", what, v), ts); err != nil {
			return nil, err
		}
		for _, t := range m.routes[v] {
			if !slices.Contains(all, t) {
				all = append(all, t)
			}
		}
	}
	m.all = all
	return m, nil
}

type multiplexing struct {
	header string
	routes map[string][]string
	def    []string
	all    []string
}

func (m *multiplexing) Select(r storage.Record) []string {
	if v, ok := r.Headers[m.header]; ok {
		if ts, ok := m.routes[v]; ok {
			return ts
		}
	}
	return m.def
}

func (m *multiplexing) Topics() []string { return slices.Clone(m.all) }

// distinct checks topic names: not empty, none twice.
func distinct(what string, topics []string) ([]string, error) {
	for i, t := range topics {
		if t == "" {
			return nil, fmt.Errorf("%s: empty topic name", what)
		}
		if slices.Contains(topics[:i], t) {
			return nil, fmt.Errorf("%s: topic %q named twice", what, t)
		}
	}
	return slices.Clone(topics), nil
}
