// Package interceptor holds the interceptors a Flume user reaches for: timestamp, host, static
// header, remove header, UUID, regex filter, regex extractor, and search and replace. Each is a
// connectors.Interceptor; a flow chains them in order with flow.Intercept, and they run inside
// the source's actor, so a record dropped here never crosses the network. Any interceptor may
// drop a record (return false); the ones here drop only in the regex filter.
//
// Interceptors never change the record they are given in place: a header is set on a copy of
// the record's header map, and a value is replaced by a new slice, so a source may share one
// header map or buffer between records.
//
// Constructors that take user input (patterns, header names) return an error naming the
// interceptor and what was wrong with it; the others cannot fail.
package interceptor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// withHeader returns r with header k set to v, on a copy of r's header map.
func withHeader(r storage.Record, k, v string) storage.Record {
	h := make(map[string]string, len(r.Headers)+1)
	maps.Copy(h, r.Headers)
	h[k] = v
	r.Headers = h
	return r
}

// has reports whether r has header k.
func has(r storage.Record, k string) bool {
	_, ok := r.Headers[k]
	return ok
}

// TimestampConfig configures Timestamp.
type TimestampConfig struct {
	// Header, if not empty, also gets the time in milliseconds since the Unix epoch, in decimal
	// (Flume's "timestamp" header, which HDFS path escapes read).
	Header string
	// PreserveExisting keeps a record's timestamp if it has one (not 0), and its header if it
	// has it.
	PreserveExisting bool
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Timestamp sets each record's timestamp to the time it passes the interceptor.
func Timestamp(cfg TimestampConfig) connectors.Interceptor {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		ms := now().UnixMilli()
		if !cfg.PreserveExisting || r.Timestamp == 0 {
			r.Timestamp = ms
		}
		if cfg.Header != "" && (!cfg.PreserveExisting || !has(r, cfg.Header)) {
			r = withHeader(r, cfg.Header, strconv.FormatInt(r.Timestamp, 10))
		}
		return r, true
	})
}

// HostConfig configures Host.
type HostConfig struct {
	// Header is the header set; "host" by default.
	Header string
	// UseIP sets the host's first non-loopback IP address instead of its name.
	UseIP bool
	// PreserveExisting keeps the header of a record that has it.
	PreserveExisting bool
}

// Host sets a header to this host's name (os.Hostname) or IP address, found once, here.
func Host(cfg HostConfig) (connectors.Interceptor, error) {
	header := cfg.Header
	if header == "" {
		header = "host"
	}
	var host string
	if cfg.UseIP {
		ip, err := firstIP()
		if err != nil {
			return nil, fmt.Errorf("host interceptor: %w", err)
		}
		host = ip
	} else {
		name, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("host interceptor: host name: %w", err)
		}
		host = name
	}
	return Static(header, host, cfg.PreserveExisting)
}

// firstIP is the host's first non-loopback IP address, IPv4 before IPv6.
func firstIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("interface addresses: %w", err)
	}
	var v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
		if v6 == "" {
			v6 = ipn.IP.String()
		}
	}
	if v6 != "" {
		return v6, nil
	}
	return "", errors.New("no non-loopback IP address")
}

// Static sets header key to value; with preserveExisting, a record that has the header keeps
// its own.
func Static(key, value string, preserveExisting bool) (connectors.Interceptor, error) {
	if key == "" {
		return nil, errors.New("static interceptor: empty header name")
	}
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		if preserveExisting && has(r, key) {
			return r, true
		}
		return withHeader(r, key, value), true
	}), nil
}

// RemoveHeaders removes the headers named in names and, if matching is not empty, every header
// whose whole name matches that regular expression (Go syntax).
func RemoveHeaders(names []string, matching string) (connectors.Interceptor, error) {
	var re *regexp.Regexp
	if matching != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + matching + ")$"); err != nil {
			return nil, fmt.Errorf("remove-header interceptor: pattern %q: %w", matching, err)
		}
	}
	if len(names) == 0 && re == nil {
		return nil, errors.New("remove-header interceptor: no header names and no pattern")
	}
	drop := func(k string) bool {
		for _, n := range names {
			if k == n {
				return true
			}
		}
		return re != nil && re.MatchString(k)
	}
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		hit := false
		for k := range r.Headers {
			if drop(k) {
				hit = true
				break
			}
		}
		if !hit {
			return r, true
		}
		h := make(map[string]string, len(r.Headers))
		for k, v := range r.Headers {
			if !drop(k) {
				h[k] = v
			}
		}
		r.Headers = h
		return r, true
	}), nil
}

// UUIDConfig configures UUID.
type UUIDConfig struct {
	// Header is the header set; "id" by default.
	Header string
	// Prefix is put before each id.
	Prefix string
	// PreserveExisting keeps the header of a record that has it.
	PreserveExisting bool
}

// UUID sets a header to a random (version 4) UUID, to tell records apart downstream.
func UUID(cfg UUIDConfig) connectors.Interceptor {
	header := cfg.Header
	if header == "" {
		header = "id"
	}
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		if cfg.PreserveExisting && has(r, header) {
			return r, true
		}
		return withHeader(r, header, cfg.Prefix+newUUID()), true
	})
}

// newUUID returns a random version 4 UUID in its canonical text form.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (it panics if it cannot read)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// RegexFilter keeps the records whose value matches pattern (a Go regular expression; a match
// anywhere in the value counts), or, with exclude, drops them and keeps the others.
func RegexFilter(pattern string, exclude bool) (connectors.Interceptor, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("regex-filter interceptor: pattern %q: %w", pattern, err)
	}
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		return r, re.Match(r.Value) != exclude
	}), nil
}

// RegexExtractor matches pattern against each record's value and sets header headers[i] to
// the text of the pattern's capture group i+1; an empty name skips its group. A record the
// pattern does not match, or a group that took part in no match, is left as it is.
func RegexExtractor(pattern string, headers ...string) (connectors.Interceptor, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("regex-extractor interceptor: pattern %q: %w", pattern, err)
	}
	switch {
	case len(headers) == 0:
		return nil, fmt.Errorf("regex-extractor interceptor: pattern %q: no header names", pattern)
	case len(headers) > re.NumSubexp():
		return nil, fmt.Errorf("regex-extractor interceptor: pattern %q has %d capture groups, but %d header names were given",
			pattern, re.NumSubexp(), len(headers))
	}
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		m := re.FindSubmatchIndex(r.Value)
		if m == nil {
			return r, true
		}
		var h map[string]string
		for i, name := range headers {
			lo, hi := m[2*(i+1)], m[2*(i+1)+1]
			if name == "" || lo < 0 {
				continue
			}
			if h == nil {
				h = make(map[string]string, len(r.Headers)+len(headers))
				maps.Copy(h, r.Headers)
			}
			h[name] = string(r.Value[lo:hi])
		}
		if h != nil {
			r.Headers = h
		}
		return r, true
	}), nil
}

// SearchReplace replaces every match of pattern in each record's value with replacement, in
// which $1 or ${name} stand for capture groups (regexp.Regexp.Expand).
func SearchReplace(pattern, replacement string) (connectors.Interceptor, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("search-replace interceptor: pattern %q: %w", pattern, err)
	}
	repl := []byte(replacement)
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		if re.Match(r.Value) {
			r.Value = re.ReplaceAll(r.Value, repl)
		}
		return r, true
	}), nil
}

// Func is an interceptor running user code: f returns the record to keep (changed or not), or
// false to drop it. f must not change the record it is given in place (see the package doc).
func Func(f func(storage.Record) (storage.Record, bool)) connectors.Interceptor {
	return connectors.InterceptorFunc(f)
}

// Chain runs interceptors in order as one; a record one of them drops goes no further.
func Chain(ics ...connectors.Interceptor) connectors.Interceptor {
	return connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		for _, ic := range ics {
			var ok bool
			if r, ok = ic.Intercept(r); !ok {
				return r, false
			}
		}
		return r, true
	})
}
