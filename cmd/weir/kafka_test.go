package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/client"
)

// kcat runs kcat (librdkafka's command-line client) with stdin and returns its output.
func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("the Kafka tests need kcat (Debian package kcat; make test installs it)")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// startNode starts `weir node` with the data directory, client address and more flags, and
// waits until its client port answers; the process is killed when the test ends.
func startNode(t *testing.T, bin, data, addr string, more ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"node", "--data", data, "--listen", addr, "--http", "", "--log-level", "warn"}, more...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "the node's client port", 20*time.Second, func() (bool, string) {
		code, _, errOut := weirIn("", nil, "--server", addr, "topic", "list")
		return code == 0, errOut
	})
	return cmd
}

// kcatGroup runs two kcat group members (-G, each through its own broker address) that read
// topic to its end, and counts the lines they read.
func kcatGroup(t *testing.T, brokers [2]string, group, topic string) map[string]int {
	t.Helper()
	type res struct {
		out string
		err error
	}
	ch := make(chan res, 2)
	for _, b := range brokers {
		go func() {
			o, err := exec.Command("kcat", "-b", b, "-G", group, topic, "-e", "-q", "-f", "%s\n",
				"-X", "auto.offset.reset=earliest", "-X", "partition.assignment.strategy=range").CombinedOutput()
			ch <- res{string(o), err}
		}()
	}
	got := map[string]int{}
	for range 2 {
		r := <-ch
		if r.err != nil {
			t.Fatalf("kcat -G: %v\n%s", r.err, r.out)
		}
		for _, l := range lines(r.out) {
			got[l]++
		}
	}
	return got
}

// TestKcat runs `weir node --kafka` and drives it with kcat: kcat produces 1,000 keyed lines,
// `weir consume` reads them, kcat consumes from the beginning and from an offset, and two kcat
// group consumers (-G) read every line between them and commit offsets that Weir's group
// offsets show.
func TestKcat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a weir process")
	}
	bin := buildWeir(t)
	dir := t.TempDir()
	addr, kafka := freeAddr(t), freeAddr(t)
	startNode(t, bin, filepath.Join(dir, "n"), addr, "--kafka", kafka)
	weirAt(t, addr, "", "topic", "create", "lines", "--partitions", "3")

	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "k%d:line-%d\n", i%10, i)
	}
	kcat(t, in.String(), "-b", kafka, "-P", "-t", "lines", "-K", ":")
	out, _ := weirAt(t, addr, "", "consume", "lines", "--from", "earliest", "--idle-exit", "1s")
	if got := lines(out); len(got) != 1000 {
		t.Fatalf("weir consume read %d lines of what kcat produced, want 1000", len(got))
	}

	all := kcat(t, "", "-b", kafka, "-C", "-t", "lines", "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n")
	seen := map[string]bool{}
	for _, l := range lines(all) {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("kcat read %q", l)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[3], "line-"))
		if err != nil || f[2] != "k"+strconv.Itoa(n%10) {
			t.Fatalf("kcat read %q: want key k%d", l, n%10)
		}
		seen[f[3]] = true
	}
	if len(seen) != 1000 {
		t.Fatalf("kcat read %d distinct lines from the beginning, want 1000", len(seen))
	}
	from := kcat(t, "", "-b", kafka, "-C", "-t", "lines", "-p", "0", "-o", "5", "-e", "-q", "-f", "%o\n")
	if offs := lines(from); len(offs) == 0 || offs[0] != "5" {
		t.Fatalf("kcat from offset 5 of partition 0 read offsets %v", offs)
	}

	group := kcatGroup(t, [2]string{kafka, kafka}, "kcat-group", "lines")
	if len(group) != 1000 {
		t.Fatalf("the kcat group read %d distinct lines, want 1000", len(group))
	}
	// The group's commits are Weir's: a Weir member of the group has nothing left to read.
	waitFor(t, "the kcat group's offsets committed", 20*time.Second, func() (bool, string) {
		out, _ := weirAt(t, addr, "", "consume", "lines", "--group", "kcat-group", "--idle-exit", "1s")
		got := lines(out)
		return len(got) == 0, strconv.Itoa(len(got)) + " lines not committed"
	})
}

// kafkaCluster starts three `weir node` processes with Kafka listeners and returns them with
// the Kafka addresses, comma-separated.
func kafkaCluster(t *testing.T, bin string) ([]*clusterNode, string) {
	t.Helper()
	nodes := clusterOf(t, 3, "node", "--dead-after", "4s")
	var addrs []string
	for _, cn := range nodes {
		k := freeAddr(t)
		cn.extra = append(slices.Clone(cn.extra), "--kafka", k)
		addrs = append(addrs, k)
	}
	startNodes(t, bin, nodes)
	return nodes, strings.Join(addrs, ",")
}

// TestKcatCluster: kcat against three nodes (replication factor 3): it produces 3,000 keyed lines
// through one node, consumes them all through another, and two kcat -G members read every line
// between them.
func TestKcatCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	nodes, kafka := kafkaCluster(t, bin)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createClusterTopic(t, c, "lines", 3, 3)
	k := strings.Split(kafka, ",")
	var in strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&in, "k%d:line-%d\n", i%10, i)
	}
	kcat(t, in.String(), "-b", k[0], "-P", "-t", "lines", "-K", ":", "-X", "acks=all")
	all := kcat(t, "", "-b", k[1], "-C", "-t", "lines", "-o", "beginning", "-e", "-q", "-f", "%s\n")
	seen := map[string]int{}
	for _, l := range lines(all) {
		seen[l]++
	}
	if len(seen) != 3000 || len(lines(all)) != 3000 {
		t.Fatalf("kcat read %d lines, %d distinct, through another node; want 3000", len(lines(all)), len(seen))
	}
	group := kcatGroup(t, [2]string{k[1], k[2]}, "kcat-group", "lines")
	if len(group) != 3000 {
		t.Fatalf("the kcat group read %d distinct lines, want 3000", len(group))
	}
}

// TestKafkaFailover: an idempotent franz-go producer (acks=all) and a franz-go group consumer
// against three nodes, with the node leading most partitions SIGKILLed mid-run (and started
// again 5 s later). Every acknowledged record must be in the topic exactly once (read back with
// Weir's client), and the group must read every one of them (at least once: a rebalance may
// repeat a few).
func TestKafkaFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	nodes, kafka := kafkaCluster(t, bin)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createClusterTopic(t, c, "fo", 6, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(kafka, ",")...), kgo.DefaultProduceTopic("fo"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1000), kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var mu sync.Mutex
	acked := map[int]bool{}
	failed := 0
	read := map[int]int{}
	cons, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(kafka, ",")...), kgo.ConsumerGroup("fo-group"), kgo.ConsumeTopics("fo"),
		kgo.Balancers(kgo.RangeBalancer()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				id, _ := strconv.Atoi(string(r.Value))
				mu.Lock()
				read[id]++
				mu.Unlock()
			})
		}
	}()

	const total = 30000
	killed := false
	for i := range total {
		prod.Produce(ctx, &kgo.Record{Key: []byte("k" + strconv.Itoa(i%60)), Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			acked[i] = true
		})
		if i == total/3 && !killed {
			killed = true
			victim := nodes[1]
			if md, err := c.Metadata(ctx, "fo"); err == nil && len(md.Topics) == 1 {
				leads := map[string]int{}
				for _, p := range md.Topics[0].Partitions {
					leads[p.Leader]++
				}
				for _, cn := range nodes {
					if leads[cn.name] > leads[victim.name] {
						victim = cn
					}
				}
			}
			t.Logf("SIGKILL %s (the leader of most partitions) after %d records produced", victim.name, i)
			victim.kill()
			go func() {
				time.Sleep(5 * time.Second)
				victim.start(t, bin)
			}()
		}
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	nAcked, nFailed := len(acked), failed
	mu.Unlock()
	t.Logf("%d of %d records acknowledged, %d failed", nAcked, total, nFailed)
	if nAcked < total*99/100 {
		t.Fatalf("only %d of %d records acknowledged", nAcked, total)
	}

	// The topic: every acknowledged record once.
	inTopic := map[int]int{}
	for p := range int32(6) {
		wc, err := c.NewConsumer("fo", p, client.From(client.Earliest()), client.MaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for idle := 0; idle < 3; {
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			msgs, err := wc.Poll(pctx)
			pcancel()
			if err != nil || len(msgs) == 0 {
				idle++
				continue
			}
			for _, m := range msgs {
				id, _ := strconv.Atoi(string(m.Value))
				inTopic[id]++
			}
		}
		wc.Close()
	}
	lost, dups := 0, 0
	mu.Lock()
	for id := range acked {
		if inTopic[id] == 0 {
			lost++
		}
	}
	mu.Unlock()
	for _, n := range inTopic {
		dups += max(n-1, 0)
	}
	if lost > 0 || dups > 0 {
		t.Fatalf("the topic: %d acknowledged records lost, %d duplicated", lost, dups)
	}
	// The group reads them all.
	waitFor(t, "the group to read every acknowledged record", 90*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for id := range acked {
			if read[id] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d acknowledged records not read yet", missing)
	})
	cancel()
	<-consumed
	again := 0
	for _, n := range read {
		again += max(n-1, 0)
	}
	t.Logf("topic: 0 lost, 0 duplicated; the group read every record (%d read again after rebalances)", again)
}

// TestKafkaSASLTLS runs `weir node --kafka` with TLS and SASL/PLAIN users: kcat over SASL_SSL
// with the right password produces and consumes; a wrong password, and a client that skips
// SASL, are refused; bad flags are refused naming them.
func TestKafkaSASLTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a weir process")
	}
	dir := t.TempDir()
	// A self-signed certificate for 127.0.0.1.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile, users := filepath.Join(dir, "k.crt"), filepath.Join(dir, "k.key"), filepath.Join(dir, "users")
	for name, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		users:    []byte("# user:password\nalice:s3cret\nbob:hunter2\n"),
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--kafka-tls-cert", certFile}, "need --kafka"},
		{[]string{"--kafka", "127.0.0.1:0", "--kafka-tls-cert", certFile}, "needs both --kafka-tls-cert and --kafka-tls-key"},
		{[]string{"--kafka", "127.0.0.1:0", "--kafka-sasl-users", filepath.Join(dir, "nope")}, "--kafka-sasl-users"},
		{[]string{"--kafka", "127.0.0.1:0", "--kafka-sasl-users", certFile}, "want USER:PASSWORD"},
	} {
		code, _, errOut := weirIn("", nil, append([]string{"node", "--data", filepath.Join(dir, "bad"), "--http", ""}, bad.args...)...)
		if code != 2 || !strings.Contains(errOut, bad.want) {
			t.Errorf("weir node %v: exit %d, %q; want exit 2 mentioning %q", bad.args, code, errOut, bad.want)
		}
	}

	bin := buildWeir(t)
	addr, kafka := freeAddr(t), freeAddr(t)
	startNode(t, bin, filepath.Join(dir, "n"), addr, "--kafka", kafka,
		"--kafka-tls-cert", certFile, "--kafka-tls-key", keyFile, "--kafka-sasl-users", users)
	weirAt(t, addr, "", "topic", "create", "secure", "--partitions", "2")
	sasl := func(user, pass string) []string {
		return []string{"-b", kafka, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN",
			"-X", "sasl.username=" + user, "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + certFile}
	}
	var in strings.Builder
	for i := range 200 {
		fmt.Fprintf(&in, "secret-%d\n", i)
	}
	kcat(t, in.String(), append(sasl("alice", "s3cret"), "-P", "-t", "secure")...)
	out := kcat(t, "", append(sasl("bob", "hunter2"), "-C", "-t", "secure", "-o", "beginning", "-e", "-q")...)
	if n := len(lines(out)); n != 200 {
		t.Fatalf("kcat over SASL_SSL read %d lines, want 200", n)
	}
	// A wrong password: kcat fails (it would hang retrying, so bound it).
	c := exec.Command("kcat", append(sasl("alice", "wrong"), "-L", "-m", "5")...)
	o, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(o), "uthentication") {
		t.Fatalf("kcat with a wrong password: %v\n%s", err, o)
	}
	// TLS without SASL: the metadata request is refused (the connection is closed).
	c = exec.Command("kcat", "-b", kafka, "-X", "security.protocol=SSL", "-X", "ssl.ca.location="+certFile, "-L", "-m", "5")
	if o, err := c.CombinedOutput(); err == nil {
		t.Fatalf("kcat without SASL listed metadata:\n%s", o)
	}
}
