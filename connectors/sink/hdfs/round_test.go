package hdfs

import (
	"errors"
	"net"
	"sync"
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

// TestHungNameNode: a NameNode that accepts connections and never answers (a hung process)
// fails each call after CallTimeout, so that Write gives up after RetryFor with ErrReplay
// instead of blocking the sink for good. (Before CallTimeout, the Write never returned.)
func TestHungNameNode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	s, err := New(Config{Client: hdfs.ClientOptions{Addresses: []string{ln.Addr().String()}, User: "weir"},
		Path: "/hung/%{topic}", CallTimeout: 300 * time.Millisecond, RetryFor: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Write(t.Context(), msgs(0, 10)) }()
	select {
	case err := <-done:
		if !errors.Is(err, connectors.ErrReplay) {
			t.Fatalf("Write: %v, want ErrReplay", err)
		}
		t.Logf("Write gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("Write against a NameNode that never answers did not return within 30 s")
	}
}
