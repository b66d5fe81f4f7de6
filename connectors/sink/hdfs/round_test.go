package hdfs

import (
	"testing"
	"time"

	"github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// Round floors the absolute time (Time.Truncate works since the zero time, in UTC), not the
// wall clock of Location: with a zone not on a whole-hour (or whole-day) offset the escapes
// give the wrong hour (day).
func TestRoundInLocation(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	s, err := New(Config{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/l/%Y%m%d/%H", Round: time.Hour, Location: ist})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 12, 1, 10, 15, 0, 0, ist).UnixMilli()
	if got, want := s.dirOf(connectors.Message{Record: storage.Record{Timestamp: ts}}), "/l/20261201/10"; got != want {
		t.Errorf("10:15 IST rounded to the hour: dir %q, want %q", got, want)
	}
	ny := time.FixedZone("EST", -5*3600)
	s, _ = New(Config{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/l/%Y%m%d", Round: 24 * time.Hour, Location: ny})
	ts = time.Date(2026, 12, 1, 3, 0, 0, 0, ny).UnixMilli()
	if got, want := s.dirOf(connectors.Message{Record: storage.Record{Timestamp: ts}}), "/l/20261201"; got != want {
		t.Errorf("Dec 1 03:00 EST rounded to the day: dir %q, want %q", got, want)
	}
}
