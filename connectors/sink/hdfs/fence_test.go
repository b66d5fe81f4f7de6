package hdfs

import (
	"errors"
	"testing"

	"github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/internal/hdfstest"
)

// A member whose session expired while its Write was stuck (HDFS retries take longer than the
// session; the actor cannot heartbeat meanwhile), or that missed the rebalance deadline, goes on
// writing until its next heartbeat tells it. The new owner's load wrote a newer state file, so
// the old member's next state write fails (state files are created exclusively): it gives the
// partition up (ErrReplay) instead of making records durable a second time. (Before state
// files were numbered, both rolled the same records.)
func TestZombieMemberWritesTwice(t *testing.T) {
	c := hdfstest.Start(t, 1)
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/zombie/%{topic}", RollCount: 50, IdleTimeout: -1}
	ctx := t.Context()
	newSink := func() *Sink { return openSink(t, cfg) }
	a := newSink()
	if err := a.Write(ctx, msgs(0, 50)); err != nil { // rolls: 0-49 durable
		t.Fatal(err)
	}
	// A is dropped from the group before its commit of 50; B is given partition 0 and reads
	// from the committed offset 0.
	b := newSink()
	if err := b.Write(ctx, msgs(0, 60)); err != nil { // skips 0-49, stages 50-59
		t.Fatal(err)
	}
	// A, not told yet, writes the batch it had fetched: refused.
	if err := a.Write(ctx, msgs(50, 100)); !errors.Is(err, errFenced) || !errors.Is(err, connectors.ErrReplay) {
		t.Fatalf("the old member's write: %v, want it fenced off", err)
	}
	// B goes on and rolls.
	if err := b.Write(ctx, msgs(60, 100)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	close(a.stop)
	<-a.done
	a.client.Close()
	exactlyOnce(t, c.Client(t), "/zombie", 100, false)
}

// The same interleaving, but B crashes instead of rolling: A is fenced off and its state write
// does not drop B's in-progress file from the state, so the next owner removes it. (Before,
// A's write dropped it and it was left behind.)
func TestZombieLeavesInProgress(t *testing.T) {
	c := hdfstest.Start(t, 1)
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/zombie2/%{topic}", RollCount: 50, IdleTimeout: -1}
	ctx := t.Context()
	newSink := func() *Sink { return openSink(t, cfg) }
	a, b := newSink(), newSink()
	if err := a.Write(ctx, msgs(0, 50)); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, msgs(0, 60)); err != nil { // B: 50-59 in progress
		t.Fatal(err)
	}
	if err := a.Write(ctx, msgs(50, 70)); !errors.Is(err, errFenced) { // A: refused
		t.Fatalf("the old member's write: %v, want it fenced off", err)
	}
	// A learns it was dropped (Reset); B crashes (no Close); C owns the partition next.
	if err := a.Reset(); err != nil {
		t.Fatal(err)
	}
	cs := newSink()
	if err := cs.Write(ctx, msgs(0, 100)); err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Sink{a, b} {
		close(s.stop)
		<-s.done
		if s.client != nil {
			s.client.Close()
		}
	}
	exactlyOnce(t, c.Client(t), "/zombie2", 100, false)
}

// The window fencing leaves: A lists a new in-progress file in a state, and before it creates
// the file B takes the partition (B's load finds the listed file missing). A then creates the
// file and dies without being fenced off. B removes the file once it appears (it watches for
// the files its load found missing), so none is left. (Before, A's file stayed.)
func TestFormerOwnerCreatesAfterLoad(t *testing.T) {
	c := hdfstest.Start(t, 1)
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/ghost/%{topic}", RollCount: 50, IdleTimeout: -1}
	ctx := t.Context()
	a, b := openSink(t, cfg), openSink(t, cfg)
	if err := a.Write(ctx, msgs(0, 50)); err != nil { // rolls: 0-49 durable
		t.Fatal(err)
	}
	testHookBeforeCreate = func() {
		testHookBeforeCreate = nil
		// A has listed its next file; B takes the partition now (a.mu is held by A, b's is free).
		if err := b.Write(ctx, msgs(0, 60)); err != nil {
			t.Errorf("b: %v", err)
		}
	}
	t.Cleanup(func() { testHookBeforeCreate = nil })
	if err := a.Write(ctx, msgs(50, 55)); err != nil { // A creates its file after B's load
		t.Fatal(err)
	}
	// A dies: no Close, no further state write.
	close(a.stop)
	<-a.done
	a.client.Close()
	if err := b.Write(ctx, msgs(60, 100)); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, c.Client(t), "/ghost", 100, false)
}
