package syslog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse5424(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want Message
	}{
		{`<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed for lonvick on /dev/pts/8`,
			Message{Facility: 4, Severity: 2, Version: 1, Timestamp: time.Date(2003, 10, 11, 22, 14, 15, 3e6, time.UTC),
				Host: "mymachine.example.com", App: "su", MsgID: "ID47", Text: []byte("BOM'su root' failed for lonvick on /dev/pts/8")}},
		{`<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.`,
			Message{Facility: 20, Severity: 5, Version: 1, Timestamp: time.Date(2003, 8, 24, 5, 14, 15, 3000, time.FixedZone("", -7*3600)),
				Host: "192.0.2.1", App: "myproc", ProcID: "8710", Text: []byte("%% It's time to make the do-nuts.")}},
		{`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
			Message{Facility: 20, Severity: 5, Version: 1, Timestamp: time.Date(2003, 10, 11, 22, 14, 15, 3e6, time.UTC),
				Host: "mymachine.example.com", App: "evntslog", MsgID: "ID47",
				StructuredData: `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`}},
		{"<13>1 - - - - - [a b=\"x\\\"]y\"] \xef\xbb\xbfhello",
			Message{Facility: 1, Severity: 5, Version: 1, StructuredData: `[a b="x\"]y"]`, Text: []byte("hello")}},
		{`<0>1 - - - - - -`, Message{Version: 1}},
	} {
		got, err := Parse([]byte(c.in), now, time.UTC)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !got.Timestamp.Equal(c.want.Timestamp) {
			t.Errorf("%q: timestamp %v, want %v", c.in, got.Timestamp, c.want.Timestamp)
		}
		got.Timestamp, c.want.Timestamp = time.Time{}, time.Time{}
		if !bytes.Equal(got.Text, c.want.Text) {
			t.Errorf("%q: text %q, want %q", c.in, got.Text, c.want.Text)
		}
		got.Text, c.want.Text = nil, nil
		if !equal(got, c.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
}

func equal(a, b Message) bool {
	return a.Facility == b.Facility && a.Severity == b.Severity && a.Version == b.Version && a.Host == b.Host &&
		a.App == b.App && a.ProcID == b.ProcID && a.MsgID == b.MsgID && a.StructuredData == b.StructuredData
}

func TestParse3164(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in                   string
		ts                   time.Time
		host, app, pid, text string
		facility, severity   int
	}{
		{`<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
			time.Date(2025, 10, 11, 22, 14, 15, 0, time.UTC), "mymachine", "su", "", "'su root' failed for lonvick on /dev/pts/8", 4, 2},
		{`<13>Jan  2 11:59:00 web1 nginx[812]: GET / 200`,
			time.Date(2026, 1, 2, 11, 59, 0, 0, time.UTC), "web1", "nginx", "812", "GET / 200", 1, 5},
		{`<13>Dec 31 23:59:59 h app: new year`, // yesterday, last year
			time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), "h", "app", "", "new year", 1, 5},
		{`<13>Jan  2 11:59:00 cron[5]: no host`, time.Date(2026, 1, 2, 11, 59, 0, 0, time.UTC), "", "cron", "5", "no host", 1, 5},
		{`<13>just some text`, time.Time{}, "", "", "", "just some text", 1, 5},
		{`<13>`, time.Time{}, "", "", "", "", 1, 5},
		// Digits after the priority that are not "1 " and a timestamp: the loose 3164 form.
		{`<13>2 - - - - - -`, time.Time{}, "", "", "", "2 - - - - - -", 1, 5},
		{`<13>2026-01-02T11:00:00.5Z web1 nginx[7]: GET`, time.Date(2026, 1, 2, 11, 0, 0, 5e8, time.UTC), "web1", "nginx", "7", "GET", 1, 5},
	} {
		got, err := Parse([]byte(c.in), now, time.UTC)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !got.Timestamp.Equal(c.ts) || got.Host != c.host || got.App != c.app || got.ProcID != c.pid ||
			string(got.Text) != c.text || got.Facility != c.facility || got.Severity != c.severity || got.Version != 0 {
			t.Errorf("%q: got %+v (text %q)", c.in, got, got.Text)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, "no <priority>"},
		{`hello`, "no <priority>"},
		{`<>x`, "priority: want 1 to 3 digits"},
		{`<1234>x`, "priority: want 1 to 3 digits"},
		{`<192>x`, `priority "192" out of range`},
		{`<01>x`, `priority "01" out of range`},
		{`<13>1 2026-13-01T00:00:00Z h a p m -`, `timestamp "2026-13-01T00:00:00Z": not RFC 3339`},
		{`<13>1 - h a p`, "msgid: message ends before it"},
		{`<13>1 -  a p m -`, "hostname: empty"},
		{"<13>1 - h\x01 a p m -", "hostname: character 0x1"},
		{`<13>1 - h a p m [x`, "structured data: want ']'"},
		{`<13>1 - h a p m [x y="z]`, "unterminated param value"},
		{`<13>1 - h a p m [x y]`, `want ="value"`},
		{`<13>1 - h a p m x`, "want '-' or '['"},
		{`<13>1 - h a p m -x`, "want a space between structured data and the message"},
	} {
		_, err := Parse([]byte(c.in), time.Now(), time.UTC)
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.in, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - msg`,
		`<165>1 - h a - - [id@1 a="b\"c" d="e"][x y="z"] text`,
		`<34>Oct 11 22:14:15 mymachine su[1]: text`,
		`<13>text`, `<191>1 - - - - - -`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b, now, time.UTC)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Pos < 0 || pe.Pos > len(b) {
				t.Fatalf("error %v (%T) with a position outside the message", err, err)
			}
			return
		}
		if m.Facility < 0 || m.Facility > 23 || m.Severity < 0 || m.Severity > 7 {
			t.Fatalf("priority out of range: %+v", m)
		}
		if len(m.Text) > len(b) {
			t.Fatalf("text longer than the message")
		}
	})
}
