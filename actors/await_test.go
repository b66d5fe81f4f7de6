package actors

import (
	"errors"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/storage"
)

// TestAwaitEndsWhenNodeCloses: a request whose actor never answers (as one that reached an actor
// while it stopped) fails once the node has stopped its actors, instead of holding Close for the
// request's timeout (a node with a Kafka fetch in flight took 30 s to close in 2 of 4 runs).
func TestAwaitEndsWhenNodeCloses(t *testing.T) {
	cfg := NodeConfig{DataDir: t.TempDir()}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	silent := n.system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	f := n.rc.RequestFuture(silent, &GetStatus{}, time.Minute)
	errc := make(chan error, 1)
	go func() {
		_, err := n.await(f, silent, nil)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	n.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, errNodeClosed) {
			t.Fatalf("await: %v, want errNodeClosed", err)
		}
		t.Logf("await ended %v after Close began", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("await still waiting 5 s after the node closed")
	}
}
