package actors

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// appCutTransport drops appends (MsgApp) while cut: the leader keeps its followers (heartbeats
// pass, so check-quorum keeps it leading) but commits nothing new.
type appCutTransport struct {
	*localTransport
	cut atomic.Bool
}

func (t *appCutTransport) Send(ctx actor.Context, group string, msgs []*pb.Message) []uint64 {
	if t.cut.Load() {
		kept := msgs[:0:0]
		for _, m := range msgs {
			if m.GetType() != pb.MessageType_MsgApp {
				kept = append(kept, m)
			}
		}
		msgs = kept
	}
	return t.localTransport.Send(ctx, group, msgs)
}

// TestFetchBetweenHighWatermarkAndEnd drives replica.fetch (not just fetchPlanFor) on a
// leader whose log runs past its high watermark: a fetch in (hw, end] waits and is answered with
// the records once committed, never out of range and never with uncommitted records.
func TestFetchBetweenHighWatermarkAndEnd(t *testing.T) {
	system := actor.NewActorSystem()
	tr := &appCutTransport{localTransport: &localTransport{pids: map[uint64]*actor.PID{}}}
	lt := tr.localTransport
	pids := spawnReplicas(t, system, lt, []uint64{1, 2, 3}, func(id uint64, c *ReplicaConfig) {
		c.Peers, c.ElectionTicks, c.Transport = []uint64{1, 2, 3}, 50, tr
	})
	status := func(id uint64) *Status {
		res, err := system.Root.RequestFuture(pids[id], &GetStatus{}, time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.(*Status)
	}
	var lead uint64
	for deadline := time.Now().Add(10 * time.Second); lead == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		for id := range pids {
			if st := status(id); st.Leader == id {
				lead = id
			}
		}
	}
	call := func(m any) any {
		res, err := system.Root.RequestFuture(pids[lead], m, 5*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := call(&Produce{Batch: batchOf(t, "a", "b"), Acks: wire.AcksAll}).(*ProduceReply); r.Err != nil {
		t.Fatal(r.Err)
	}
	tr.cut.Store(true)
	if r := call(&Produce{Batch: batchOf(t, "c", "d", "e"), Acks: wire.AcksLeader}).(*ProduceReply); r.Err != nil {
		t.Fatal(r.Err)
	}
	st := status(lead)
	if st.HighWatermark != 2 || st.EndOffset != 5 {
		t.Fatalf("leader hw %d end %d, want 2 and 5", st.HighWatermark, st.EndOffset)
	}
	// Not waiting: empty, no error, and nothing uncommitted.
	for _, off := range []int64{2, 4, 5} {
		r := call(&Fetch{Offset: off, MaxBytes: 1 << 20}).(*wire.FetchResponse)
		if r.Err != nil || len(r.Batches) != 0 {
			t.Fatalf("fetch at %d (hw 2, end 5) without waiting: err %v, %d bytes; want empty", off, r.Err, len(r.Batches))
		}
	}
	if r := call(&Fetch{Offset: 6, MaxBytes: 1 << 20}).(*wire.FetchResponse); r.Err == nil || r.Err.Code != wire.CodeOffsetOutOfRange {
		t.Fatalf("fetch at 6 past the log end 5: %v, want out of range", r.Err)
	}
	// Waiting: parked until committed.
	f := system.Root.RequestFuture(pids[lead], &Fetch{Offset: 4, MaxBytes: 1 << 20, MaxWaitMs: 5000}, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	tr.cut.Store(false)
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	r := res.(*wire.FetchResponse)
	if r.Err != nil {
		t.Fatalf("parked fetch at 4: %v", r.Err)
	}
	var got []string
	if _, err := storage.DecodeBatches(r.Batches, 4, func(_ int64, rec storage.Record) error {
		got = append(got, string(rec.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "e" || r.HighWatermark != 5 {
		t.Fatalf("parked fetch at 4 answered %v with hw %d, want [e] and 5", got, r.HighWatermark)
	}
}
