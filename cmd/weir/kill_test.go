package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/internal/freeport"
	"github.com/weirhq/weir/storage"
)

// buildWeir builds the weir binary once per test run.
func buildWeir(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weir")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address for a weir process to listen on (internal/freeport: a
// port outside the ephemeral range, which no outgoing connection can take meanwhile).
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// startWeirNode starts `weir node` and waits for its client port.
func startWeirNode(t *testing.T, bin, dir, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "node", "--data", dir, "--listen", addr, "--http", "", "--sync", "always", "--log-level", "info")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatal("weir node did not open its client port")
		}
	}
}

type rawConn struct {
	c    net.Conn
	r    *bufio.Reader
	corr uint32
}

func dialRaw(addr string) (*rawConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReader(c)}, nil
}

func (rc *rawConn) call(api wire.API, req, resp any) error {
	body, err := wire.Encode(req)
	if err != nil {
		return err
	}
	rc.corr++
	if _, err := rc.c.Write(wire.AppendFrame(nil, api, rc.corr, body)); err != nil {
		return err
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, _, err := wire.ReadFrame(rc.r, nil, 0)
	if err != nil {
		return err
	}
	return wire.Decode(f.API, f.Body, resp)
}

// TestKillDuringAcksAllProduce SIGKILLs a node in the middle of an acks=all produce with fsync
// on, while a group member commits offsets; after a restart every acknowledged record is there,
// in order, exactly once, the group's acknowledged commits are there, and `weir consume --group`
// resumes from them.
func TestKillDuringAcksAllProduce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	dir, addr := t.TempDir(), freeAddr(t)
	node := startWeirNode(t, bin, dir, addr)
	rc, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	var cr wire.AdminResponse
	if err := rc.call(wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: "k", Partitions: 2, Replicas: 1}, &cr); err != nil || cr.Err != nil {
		t.Fatalf("create: %v %v", err, cr.Err)
	}
	// A group member on its own connection commits, every ten batches, offsets halfway through
	// what was acknowledged so far (a consumer behind the producer).
	gc, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	var j wire.JoinGroupResponse
	if err := gc.call(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: "resume", Topics: []string{"k"}, SessionTimeoutMs: 30000}, &j); err != nil || j.Err != nil {
		t.Fatalf("join: %v %v", err, j.Err)
	}
	committed := map[int32]int64{} // the last commit acknowledged
	// Produce until the kill; remember what was acknowledged.
	acked := map[int32][]string{}
	killAt := time.Now().Add(700 * time.Millisecond)
	killed := false
	for i := 0; ; i++ {
		if !killed && time.Now().After(killAt) {
			go func() { _ = node.Process.Signal(syscall.SIGKILL) }()
			killed = true
		}
		p := int32(i % 2)
		vals := []storage.Record{{Value: []byte(fmt.Sprintf("r%d-a", i))}, {Value: []byte(fmt.Sprintf("r%d-b", i))}}
		b, _ := storage.EncodeBatch(vals)
		var resp wire.ProduceResponse
		err := rc.call(wire.ApiProduce, &wire.ProduceRequest{Topic: "k", Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Partition: p, Batch: b}}}, &resp)
		if err != nil {
			break // the node is gone
		}
		if r := resp.Results[0]; r.Err == nil {
			acked[p] = append(acked[p], string(vals[0].Value), string(vals[1].Value))
		}
		if i%10 == 9 {
			offs := []wire.PartitionOffset{{Topic: "k", Partition: 0, Offset: int64(len(acked[0]) / 2)}, {Topic: "k", Partition: 1, Offset: int64(len(acked[1]) / 2)}}
			var cr wire.AdminResponse
			err := gc.call(wire.ApiCommit, &wire.CommitRequest{Group: "resume", MemberID: j.MemberID, Generation: j.Generation, Offsets: offs}, &cr)
			if err != nil {
				break
			}
			if cr.Err == nil {
				for _, o := range offs {
					committed[o.Partition] = o.Offset
				}
			}
		}
	}
	_ = node.Wait()
	if len(acked[0])+len(acked[1]) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	startWeirNode(t, bin, dir, addr)
	rc, err = dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	all := map[int32][]string{}
	for p := int32(0); p < 2; p++ {
		var got []string
		for off := int64(0); ; {
			var fr wire.FetchResponse
			if err := rc.call(wire.ApiFetch, &wire.FetchRequest{Topic: "k", Partition: p, Offset: off, MaxBytes: 1 << 20}, &fr); err != nil || fr.Err != nil {
				t.Fatalf("fetch %d at %d: %v %v", p, off, err, fr.Err)
			}
			if len(fr.Batches) == 0 {
				break
			}
			for b := fr.Batches; len(b) > 0; {
				h, err := storage.ParseHeader(b)
				if err != nil {
					t.Fatal(err)
				}
				if h.Kind == storage.KindRecords {
					recs, err := storage.Records(b[:h.Size()])
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range recs {
						got = append(got, string(r.Value))
					}
				}
				off = h.NextOffset()
				b = b[h.Size():]
			}
		}
		// Every acknowledged record, in order, once; after them at most the one batch whose
		// answer the kill cut off.
		if len(got) < len(acked[p]) || len(got) > len(acked[p])+2 {
			t.Fatalf("partition %d: %d records after restart, %d acknowledged", p, len(got), len(acked[p]))
		}
		for i, v := range acked[p] {
			if got[i] != v {
				t.Fatalf("partition %d: record %d is %q, acknowledged %q", p, i, got[i], v)
			}
		}
		t.Logf("partition %d: %d acknowledged, %d present after SIGKILL and restart", p, len(acked[p]), len(got))
		all[p] = got
	}

	// The group's acknowledged commits survived (a commit in flight at the kill may have too).
	var fc wire.FetchCommitResponse
	if err := rc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: "resume"}, &fc); err != nil || fc.Err != nil {
		t.Fatalf("fetch commit: %v %v", err, fc.Err)
	}
	resumeAt := map[int32]int64{}
	for _, o := range fc.Offsets {
		resumeAt[o.Partition] = o.Offset
	}
	if len(committed) == 0 {
		t.Fatal("no commit was acknowledged before the kill")
	}
	for p, off := range committed {
		if resumeAt[p] < off {
			t.Fatalf("partition %d: committed offset %d after restart, %d acknowledged before the kill", p, resumeAt[p], off)
		}
	}
	// A new member of the group, through the CLI, reads exactly what follows the commits.
	var want []string
	for p := int32(0); p < 2; p++ {
		want = append(want, all[p][resumeAt[p]:]...)
	}
	var out, errOut strings.Builder
	code := runEnv([]string{"--server", addr, "consume", "k", "--group", "resume", "--max", strconv.Itoa(len(want)), "--idle-exit", "5s"},
		cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
	if code != 0 {
		t.Fatalf("weir consume --group: exit %d: %s", code, errOut.String())
	}
	got := strings.Fields(out.String())
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("group resumed with %d records, want the %d after the commits %v", len(got), len(want), resumeAt)
	}
	t.Logf("group resumed at %v with the %d records after the commits", resumeAt, len(got))
}
