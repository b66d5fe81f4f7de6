package syslog

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An octet-counted frame whose MSG ends with "\n" (rsyslog's RFC 5424 templates end with a
// newline, and its octet count includes it) is whole, but Frames reports full = n while the
// message it passes has the "\n" trimmed, so record() marks it syslog.truncated.
func TestOctetCountedTrailingNewlineIsNotTruncated(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	msg := "<13>1 - h app - - - hello\n"
	in := strings.NewReader(strconv.Itoa(len(msg)) + " " + msg)
	var hdr map[string]string
	if err := Frames(in, 1000, func(m []byte, full int) bool {
		hdr = s.record(m, full).Headers
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if v, ok := hdr[HeaderTruncated]; ok {
		t.Fatalf("a whole %d-byte message was marked %s=%s", len(msg), HeaderTruncated, v)
	}
}

// A blank line "\r\n" between newline-framed messages is skipped like "\n" is, not turned into
// an empty, invalid record.
func TestCRLFBlankLineIsSkipped(t *testing.T) {
	var got []string
	_ = Frames(strings.NewReader("<13>a\r\n\r\n<13>b\r\n"), 100, func(m []byte, full int) bool {
		got = append(got, string(m))
		return true
	})
	if len(got) != 2 {
		t.Fatalf("frames %q, want the two messages", got)
	}
}

// RFC 3164 senders that put a number right after the priority (rsyslog's
// RSYSLOG_ForwardFormat with an RFC 3339 timestamp, Cisco IOS sequence numbers) are taken for
// RFC 5424 and fail, losing facility and severity, although the package keeps "a 3164 message
// whose header does not parse ... whole as its text".
func Test3164StartingWithADigit(t *testing.T) {
	for _, in := range []string{
		"<13>2026-12-01T10:00:00.123+00:00 web1 nginx[7]: GET / 200",
		"<189>52: *Mar  1 00:00:52.839: %LINK-3-UPDOWN: Interface up",
	} {
		m, err := Parse([]byte(in), time.Now(), time.UTC)
		if err != nil {
			t.Errorf("%q: %v (facility and severity are lost; the record is marked invalid)", in, err)
			continue
		}
		if m.Version != 0 {
			t.Errorf("%q: version %d", in, m.Version)
		}
	}
}

// An Open that fails (the TCP address is taken) leaves s.stop set, so the next Open returns nil
// without listening on anything: the source reads nothing, forever. (The flow runner calls Close
// between the two, which hides it there.)
func TestOpenAfterAFailedOpen(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:99999"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context(), nil); err == nil {
		t.Fatal("bad port accepted")
	}
	defer s.Close()
	if err := s.Open(t.Context(), nil); err == nil {
		if u, tc := s.Addrs(); tc == nil {
			t.Fatalf("the second Open returned nil, but the source listens on udp %v tcp %v", u, tc)
		}
	}
}

// An actor restart (Close, then Open of the same Source) reads the batch that was in flight
// again; an acknowledged batch is not.
func TestBatchInFlightReadAgainAfterRestart(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0", Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	udp, _ := s.Addrs()
	c, err := net.Dial("udp", udp.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"<13>a", "<13>b", "<13>c", "<13>d"} {
		c.Write([]byte(m))
	}
	c.Close()
	first := readN(t, s, 2)
	s.Acked(nil)
	second := readN(t, s, 2)
	s.Close()
	if err := s.Open(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	again := readN(t, s, 2)
	if string(first[0].Value)+string(first[1].Value) != "ab" || string(again[0].Value)+string(again[1].Value) != string(second[0].Value)+string(second[1].Value) {
		t.Fatalf("first %v, in flight %v, read after the restart %v", first, second, again)
	}
}
