package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Message is a parsed syslog message.
type Message struct {
	Facility, Severity int
	// Version is 1 for RFC 5424 and 0 for RFC 3164.
	Version int
	// Timestamp is the message's time; zero if it had none (RFC 5424's "-").
	Timestamp time.Time
	// Host, App, ProcID and MsgID are empty where the message had none ("-" in RFC 5424).
	Host, App, ProcID, MsgID string
	// StructuredData is RFC 5424's structured data as sent (checked, not decoded); empty for "-".
	StructuredData string
	// Text is the free-form message (a UTF-8 byte order mark removed).
	Text []byte
}

// ParseError says what is wrong with a message and where.
type ParseError struct {
	Pos    int // byte offset in the message
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("syslog: at byte %d: %s", e.Pos, e.Reason) }

// ErrNotSyslog is wrapped by the ParseError of a message that does not start with a priority.
var ErrNotSyslog = errors.New("no <priority> at the start")

// Parse parses one syslog message, RFC 5424 (a version after the priority) or RFC 3164. An
// RFC 3164 timestamp has no year and no zone: it is taken in loc (time.Local if nil), in the
// year that puts it closest to now. A 3164 message whose header does not parse is kept whole as
// its text, as RFC 3164 section 4.3.3 asks of a relay; an RFC 5424 message must be well formed.
func Parse(b []byte, now time.Time, loc *time.Location) (Message, error) {
	p := parser{b: b}
	var m Message
	pri, err := p.priority()
	if err != nil {
		return m, err
	}
	m.Facility, m.Severity = pri/8, pri%8
	if rest := b[p.pos:]; len(rest) > 2 && rest[0] == '1' && rest[1] == ' ' && (rest[2] == '-' || rest[2] >= '0' && rest[2] <= '9') {
		// "1 " and a timestamp or "-": RFC 5424's version. Other messages that start with a
		// digit (an RFC 3339 time, a device's sequence number) are RFC 3164's loose form.
		return p.rfc5424(m)
	}
	if loc == nil {
		loc = time.Local
	}
	return p.rfc3164(m, now, loc), nil
}

type parser struct {
	b   []byte
	pos int
}

func (p *parser) fail(reason string, args ...any) *ParseError {
	return &ParseError{Pos: p.pos, Reason: fmt.Sprintf(reason, args...)}
}

// priority reads "<N>", N from 0 to 191 in at most 3 digits.
func (p *parser) priority() (int, error) {
	if len(p.b) == 0 || p.b[0] != '<' {
		return 0, &ParseError{Pos: 0, Reason: ErrNotSyslog.Error()}
	}
	i := 1
	for i < len(p.b) && i <= 4 && p.b[i] >= '0' && p.b[i] <= '9' {
		i++
	}
	if i == 1 || i > 4 || i >= len(p.b) || p.b[i] != '>' {
		return 0, &ParseError{Pos: i, Reason: "priority: want 1 to 3 digits and '>'"}
	}
	n, _ := strconv.Atoi(string(p.b[1:i]))
	if n > 191 || (i > 2 && p.b[1] == '0') {
		return 0, &ParseError{Pos: 1, Reason: fmt.Sprintf("priority %q out of range 0-191", p.b[1:i])}
	}
	p.pos = i + 1
	return n, nil
}

// field reads up to the next space (or the end) and moves past the space.
func (p *parser) field() []byte {
	start := p.pos
	for p.pos < len(p.b) && p.b[p.pos] != ' ' {
		p.pos++
	}
	f := p.b[start:p.pos]
	if p.pos < len(p.b) {
		p.pos++
	}
	return f
}

// token reads an RFC 5424 header field: "-" (nil) or 1 to max printable ASCII characters.
func (p *parser) token(name string, max int) (string, error) {
	start := p.pos
	if p.pos >= len(p.b) {
		return "", p.fail("%s: message ends before it", name)
	}
	f := p.field()
	if len(f) == 0 {
		p.pos = start
		return "", p.fail("%s: empty (two spaces?)", name)
	}
	if len(f) > max {
		p.pos = start
		return "", p.fail("%s: %d characters, at most %d", name, len(f), max)
	}
	for i, c := range f {
		if c < 33 || c > 126 {
			p.pos = start + i
			return "", p.fail("%s: character %#x is not printable ASCII", name, c)
		}
	}
	if len(f) == 1 && f[0] == '-' {
		return "", nil
	}
	return string(f), nil
}

func (p *parser) rfc5424(m Message) (Message, error) {
	v := p.field()
	n, err := strconv.Atoi(string(v))
	if err != nil || n != 1 {
		p.pos -= len(v) + 1
		return m, p.fail("version %q: only 1 is known", v)
	}
	m.Version = n
	start := p.pos
	ts := p.field()
	if len(ts) == 0 {
		p.pos = start
		return m, p.fail("timestamp: missing")
	}
	if !(len(ts) == 1 && ts[0] == '-') {
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if err != nil {
			p.pos = start
			return m, p.fail("timestamp %q: not RFC 3339", ts)
		}
		m.Timestamp = t
	}
	if m.Host, err = p.token("hostname", 255); err != nil {
		return m, err
	}
	if m.App, err = p.token("app-name", 48); err != nil {
		return m, err
	}
	if m.ProcID, err = p.token("procid", 128); err != nil {
		return m, err
	}
	if m.MsgID, err = p.token("msgid", 32); err != nil {
		return m, err
	}
	if m.StructuredData, err = p.structuredData(); err != nil {
		return m, err
	}
	if p.pos < len(p.b) {
		if p.b[p.pos] != ' ' {
			return m, p.fail("want a space between structured data and the message")
		}
		p.pos++
	}
	m.Text = bytes.TrimPrefix(p.b[p.pos:], []byte("\xef\xbb\xbf"))
	return m, nil
}

// structuredData reads "-" or one or more [ID param="value" ...] elements, checking their
// syntax (escapes \", \\ and \] inside values).
func (p *parser) structuredData() (string, error) {
	start := p.pos
	if p.pos >= len(p.b) {
		return "", p.fail("structured data: message ends before it")
	}
	if p.b[p.pos] == '-' {
		p.pos++
		return "", nil
	}
	for p.pos < len(p.b) && p.b[p.pos] == '[' {
		p.pos++
		if err := p.sdName("SD-ID"); err != nil {
			return "", err
		}
		for p.pos < len(p.b) && p.b[p.pos] == ' ' {
			p.pos++
			if err := p.sdName("param name"); err != nil {
				return "", err
			}
			if p.pos+1 >= len(p.b) || p.b[p.pos] != '=' || p.b[p.pos+1] != '"' {
				return "", p.fail(`structured data: want ="value" after a param name`)
			}
			p.pos += 2
			for {
				if p.pos >= len(p.b) {
					return "", p.fail("structured data: unterminated param value")
				}
				c := p.b[p.pos]
				if c == '\\' && p.pos+1 < len(p.b) {
					p.pos += 2
					continue
				}
				p.pos++
				if c == '"' {
					break
				}
			}
		}
		if p.pos >= len(p.b) || p.b[p.pos] != ']' {
			return "", p.fail("structured data: want ']'")
		}
		p.pos++
	}
	if p.pos == start {
		return "", p.fail("structured data: want '-' or '['")
	}
	return string(p.b[start:p.pos]), nil
}

// sdName reads an SD-ID or param name: 1 to 32 printable ASCII characters other than '=',
// ' ', ']' and '"'.
func (p *parser) sdName(what string) error {
	start := p.pos
	for p.pos < len(p.b) {
		c := p.b[p.pos]
		if c < 33 || c > 126 || c == '=' || c == ' ' || c == ']' || c == '"' {
			break
		}
		p.pos++
	}
	if n := p.pos - start; n == 0 || n > 32 {
		return p.fail("structured data: %s of %d characters, want 1 to 32", what, n)
	}
	return nil
}

// rfc3164 parses "Mmm dd hh:mm:ss HOST TAG[PID]: text" leniently: what does not parse stays in
// the text.
func (p *parser) rfc3164(m Message, now time.Time, loc *time.Location) Message {
	rest := p.b[p.pos:]
	const layout = "Jan _2 15:04:05"
	if i := bytes.IndexByte(rest, ' '); i >= 20 && rest[4] == '-' {
		// An RFC 3339 time in the place of the 3164 one (rsyslog's forwarding format).
		if t, err := time.Parse(time.RFC3339Nano, string(rest[:i])); err == nil {
			m.Timestamp = t
			rest = rest[i+1:]
			if j := bytes.IndexByte(rest, ' '); j > 0 && rest[j-1] != ':' && !bytes.ContainsAny(rest[:j], "[]") {
				m.Host, rest = string(rest[:j]), rest[j+1:]
			}
		}
	} else if len(rest) >= len(layout) {
		if t, err := time.ParseInLocation(layout, string(rest[:len(layout)]), loc); err == nil {
			m.Timestamp = closestYear(t, now.In(loc))
			rest = rest[len(layout):]
			if len(rest) > 0 && rest[0] == ' ' {
				rest = rest[1:]
				// HOST: a word not ending in ':' (that would be the tag, with the host left out).
				if i := bytes.IndexByte(rest, ' '); i > 0 && rest[i-1] != ':' && !bytes.ContainsAny(rest[:i], "[]") {
					m.Host, rest = string(rest[:i]), rest[i+1:]
				}
			}
		}
	}
	// TAG: up to 32 alphanumerics (and - _ . /), optionally [PID], then ':'.
	i := 0
	for i < len(rest) && i < 48 && isTagChar(rest[i]) {
		i++
	}
	if i > 0 {
		tag, after := rest[:i], rest[i:]
		pid := ""
		if len(after) > 0 && after[0] == '[' {
			if j := bytes.IndexByte(after, ']'); j > 1 {
				pid, after = string(after[1:j]), after[j+1:]
			}
		}
		if len(after) > 0 && after[0] == ':' {
			m.App, m.ProcID = string(tag), pid
			rest = bytes.TrimPrefix(after[1:], []byte(" "))
		}
	}
	m.Text = rest
	return m
}

func isTagChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
}

// closestYear gives t (parsed without a year) the year that puts it nearest to now.
func closestYear(t, now time.Time) time.Time {
	best := t.AddDate(now.Year()-t.Year(), 0, 0)
	for _, d := range []int{-1, 1} {
		c := best.AddDate(d, 0, 0)
		if c.Sub(now).Abs() < best.Sub(now).Abs() {
			best = c
		}
	}
	return best
}
