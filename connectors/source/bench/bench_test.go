// Package bench measures sources end to end: a source in a flow of an embedded node (default
// settings: the log fsyncs every write, acks=all) producing to a topic of 3 partitions, timed
// from the flow's start until the topic holds every record. b.N is the record count; run with a
// fixed count, as `make bench-sources` does:
//
//	go test -run '^$' -bench . -benchtime 1000000x ./connectors/source/bench/
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/http"
	"github.com/weirhq/weir/connectors/source/syslog"
	"github.com/weirhq/weir/connectors/source/taildir"
	"github.com/weirhq/weir/flow"
)

// line is a typical log line of 100 bytes with its newline.
const line = "2026-12-01T10:00:00.000Z INFO  [worker-7] com.example.Orders - order accepted id=%010d\n"

// run starts a node and the flow, then calls send (in its own goroutine) and waits until the
// topic holds n records; it reports records per second from the flow's start.
func run(b *testing.B, src connectors.Source, n int, ready func() error, send func()) {
	rcvbufErrors := udpRcvbufErrors()
	node, err := flow.StartNode(flow.NodeConfig{DataDir: b.TempDir(), ClientAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()
	cl, err := client.Dial(node.ClientAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	b.ResetTimer()
	start := time.Now()
	if err := rt.Source("bench", src, "bench", flow.Partitions(3)); err != nil {
		b.Fatal(err)
	}
	if ready != nil {
		for ready() != nil {
			time.Sleep(time.Millisecond)
		}
	}
	if send != nil {
		go send()
	}
	ctx := context.Background()
	last, lastAt := int64(-1), time.Now()
	for {
		total := int64(0)
		for p := range int32(3) {
			end, err := cl.ListOffsets(ctx, "bench", p, client.Latest())
			if err == nil {
				total += end
			}
		}
		if total >= int64(n) {
			break
		}
		if total > last {
			last, lastAt = total, time.Now()
		} else if time.Since(lastAt) > 15*time.Second {
			lost := ""
			if d, ok := src.(interface{ Dropped() int64 }); ok {
				lost = fmt.Sprintf(" (dropped by the source, its buffer full: %d; by the kernel, the socket's buffer full: %d)", d.Dropped(), udpRcvbufErrors()-rcvbufErrors)
			}
			b.Fatalf("%d of %d records, and none more for 15 s%s", total, n, lost)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/d.Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkTaildir: b.N lines of 100 bytes already in a file, tailed into the topic.
func BenchmarkTaildir(b *testing.B) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "app.log"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range b.N {
		fmt.Fprintf(w, line, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	src, err := taildir.New(taildir.Config{Patterns: []string{filepath.Join(dir, "*.log")}})
	if err != nil {
		b.Fatal(err)
	}
	run(b, src, b.N, nil, nil)
}

// BenchmarkSyslogUDP: b.N RFC 5424 messages of about 100 bytes sent over UDP by 2 senders at
// WEIR_BENCH_SYSLOG_RATE messages a second in all (default 100,000, the target of issue 5). UDP has no flow control:
// what the source does not take in time is dropped (by the kernel when the socket's buffer is
// full, or by the source when its own is: "dropped"), and the benchmark fails when messages stop
// arriving before all of them did.
func BenchmarkSyslogUDP(b *testing.B) {
	rate := 100_000
	if s := os.Getenv("WEIR_BENCH_SYSLOG_RATE"); s != "" {
		rate, _ = strconv.Atoi(s)
	}
	src, err := syslog.New(syslog.Config{UDP: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	addr := func() error {
		if u, _ := src.Addrs(); u == nil {
			return fmt.Errorf("not listening")
		}
		return nil
	}
	var sent atomic.Int64
	send := func() {
		u, _ := src.Addrs()
		var wg sync.WaitGroup
		const senders = 2
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("udp", u.String())
				if err != nil {
					panic(err)
				}
				defer c.Close()
				start := time.Now()
				per := rate / senders
				for i := s; i < b.N; i += senders {
					k := i / senders
					if k%100 == 0 {
						time.Sleep(time.Until(start.Add(time.Duration(k) * time.Second / time.Duration(per))))
					}
					fmt.Fprintf(c, "<134>1 2026-12-01T10:00:00.000Z web-7 orders 4711 - - order accepted id=%010d", i)
					sent.Add(1)
				}
			}()
		}
		wg.Wait()
	}
	run(b, src, b.N, addr, send)
	b.ReportMetric(float64(src.Dropped()), "dropped")
}

// BenchmarkHTTP: b.N events POSTed as JSON arrays of 100 events (about 100 bytes each) by 8
// clients, each waiting for its 200 (the topic acknowledged) before the next request.
func BenchmarkHTTP(b *testing.B) {
	src, err := http.New(http.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	ready := func() error {
		if src.Addr() == nil {
			return fmt.Errorf("not listening")
		}
		return nil
	}
	const clients, per = 8, 100
	send := func() {
		url := "http://" + src.Addr().String() + "/"
		requests := (b.N + per - 1) / per
		var next atomic.Int64
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := &nethttp.Client{Transport: &nethttp.Transport{MaxIdleConnsPerHost: 1}}
				type event struct {
					Headers map[string]string `json:"headers"`
					Body    string            `json:"body"`
				}
				for {
					r := int(next.Add(1)) - 1
					if r >= requests {
						return
					}
					evs := make([]event, 0, per)
					for i := r * per; i < min((r+1)*per, b.N); i++ {
						evs = append(evs, event{Headers: map[string]string{"app": "orders"}, Body: fmt.Sprintf("order accepted id=%010d from web-7 at 2026-12-01T10:00:00Z", i)})
					}
					body, _ := json.Marshal(evs)
					for {
						resp, err := cl.Post(url, "application/json", bytes.NewReader(body))
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode == 200 {
								break
							}
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
	}
	run(b, src, b.N, ready, send)
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped for a full socket buffer.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}
