package actors

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// localTransport carries raft messages between replicas of one actor system, by raft id.
type localTransport struct {
	mu   sync.Mutex
	pids map[uint64]*actor.PID
}

func (t *localTransport) Send(ctx actor.Context, group string, msgs []*pb.Message) []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var unreachable []uint64
	for _, m := range msgs {
		pid, ok := t.pids[m.GetTo()]
		if !ok {
			unreachable = append(unreachable, m.GetTo())
			continue
		}
		data, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		ctx.Send(pid, &RaftMessage{Group: group, Data: data})
	}
	return unreachable
}

// spawnReplicas starts replicas of group "g" with the given ids on the transport (10 ms ticks,
// logs without fsync in temporary directories), set up further by mod, and stops them when the
// test ends.
func spawnReplicas(t *testing.T, system *actor.ActorSystem, tr *localTransport, ids []uint64, mod func(id uint64, c *ReplicaConfig)) map[uint64]*actor.PID {
	t.Helper()
	pids := map[uint64]*actor.PID{}
	for _, id := range ids {
		log := storage.DefaultConfig()
		log.Sync = storage.SyncNever
		cfg := ReplicaConfig{Topic: "g", Partition: 0, Dir: t.TempDir(), Log: log, ID: id, Transport: tr, TickInterval: 10 * time.Millisecond}
		mod(id, &cfg)
		pid, err := system.Root.SpawnNamed(NewReplicaProps(cfg), fmt.Sprintf("r%d", id))
		if err != nil {
			t.Fatal(err)
		}
		pids[id] = pid
		tr.mu.Lock()
		tr.pids[id] = pid
		tr.mu.Unlock()
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = system.Root.StopFuture(pid).Wait()
		}
	})
	return pids
}

// TestReplicaMembershipChanges moves a group from one voter to voters {1,2,3} with learner 4,
// then to voters {2,3,4} (4 promoted, the leader 1 removing itself last), then demotes a
// follower to a learner, then the leader itself (it hands leadership over first); records
// produced along the way reach every member.
func TestReplicaMembershipChanges(t *testing.T) {
	system := actor.NewActorSystem()
	tr := &localTransport{pids: map[uint64]*actor.PID{}}
	var mu sync.Mutex
	removed := map[uint64]bool{}
	pids := spawnReplicas(t, system, tr, []uint64{1, 2, 3, 4}, func(id uint64, c *ReplicaConfig) {
		c.Peers, c.Join, c.ElectionTicks = []uint64{1}, id != 1, 10
		c.OnRemoved = func() { mu.Lock(); removed[id] = true; mu.Unlock() }
	})
	status := func(id uint64) *Status {
		res, err := system.Root.RequestFuture(pids[id], &GetStatus{}, time.Second).Result()
		if err != nil {
			t.Fatalf("status of %d: %v", id, err)
		}
		return res.(*Status)
	}
	isRemoved := func(id uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return removed[id]
	}
	leader := func() uint64 {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			for id := range pids {
				if st := status(id); st.Leader == id && !isRemoved(id) {
					return id
				}
			}
		}
		for id := range pids {
			t.Logf("replica %d: %+v removed %v", id, *status(id), isRemoved(id))
		}
		t.Fatal("no leader")
		return 0
	}
	produced := 0
	produce := func() {
		t.Helper()
		b := batchOf(t, "x")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			res, err := system.Root.RequestFuture(pids[leader()], &Produce{Batch: b, Acks: wire.AcksAll}, 5*time.Second).Result()
			if err == nil && res.(*ProduceReply).Err == nil {
				produced++
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("produce: %v %v", err, res)
			}
		}
	}
	same := func(a, b []uint64) bool {
		a, b = slices.Clone(a), slices.Clone(b)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(a, b)
	}
	// waitConfig waits until the leader reports the voters and learners, and every member of
	// them holds every record produced.
	waitConfig := func(voters, learners []uint64) {
		t.Helper()
		var st *Status
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			st = status(leader())
			if !same(st.Voters, voters) || !same(st.Learners, learners) {
				continue
			}
			ok := true
			for _, id := range append(slices.Clone(voters), learners...) {
				if status(id).EndOffset != int64(produced) {
					ok = false
				}
			}
			if ok {
				return
			}
		}
		t.Fatalf("configuration: voters %v learners %v, want %v and %v", st.Voters, st.Learners, voters, learners)
	}

	if l := leader(); l != 1 {
		t.Fatalf("leader %d, want the bootstrapped voter 1", l)
	}
	produce()
	system.Root.Send(pids[1], &SetMembers{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}})
	waitConfig([]uint64{1, 2, 3}, []uint64{4})
	produce()

	// The leader removes itself last, after promoting 4; it then steps down.
	system.Root.Send(pids[1], &SetMembers{Voters: []uint64{2, 3, 4}})
	waitConfig([]uint64{2, 3, 4}, nil)
	if !isRemoved(1) {
		t.Fatal("replica 1 was not told it was removed")
	}
	produce()
	waitConfig([]uint64{2, 3, 4}, nil)

	// Demote a voter that does not lead.
	l := leader()
	demote := uint64(2)
	if l == 2 {
		demote = 3
	}
	var keep []uint64
	for _, id := range []uint64{2, 3, 4} {
		if id != demote {
			keep = append(keep, id)
		}
	}
	system.Root.Send(pids[l], &SetMembers{Voters: keep, Learners: []uint64{demote}})
	waitConfig(keep, []uint64{demote})
	produce()
	waitConfig(keep, []uint64{demote})

	// Demote the leader itself (a drained node): it hands leadership to a caught-up voter,
	// which demotes it. Every replica is told the target, as nodes tell their own.
	l = leader()
	voters := []uint64{demote}
	for _, id := range keep {
		if id != l {
			voters = append(voters, id)
		}
	}
	for _, id := range []uint64{2, 3, 4} {
		system.Root.Send(pids[id], &SetMembers{Voters: voters, Learners: []uint64{l}})
	}
	waitConfig(voters, []uint64{l})
	if nl := leader(); nl == l {
		t.Fatalf("replica %d still leads after its demotion", l)
	}
	produce()
	waitConfig(voters, []uint64{l})
}

// kvState is a state machine of key=value records ("key" with an empty value deletes), with
// checkpoints of the whole map, for testing snapshots of internal partitions.
type kvState struct{ m map[string]string }

type getKV struct{}

func (s *kvState) Apply(_ int64, rec storage.Record) *wire.Error {
	if len(rec.Value) == 0 {
		delete(s.m, string(rec.Key))
	} else {
		s.m[string(rec.Key)] = string(rec.Value)
	}
	return nil
}

func (s *kvState) Handle(msg any) ([]byte, any) {
	if _, ok := msg.(getKV); ok {
		return nil, maps.Clone(s.m)
	}
	return nil, nil
}

func (s *kvState) Checkpoint(int64) ([][]byte, int, error) {
	var recs []storage.Record
	for k, v := range s.m {
		recs = append(recs, storage.Record{Key: []byte(k), Value: []byte(v)})
	}
	if len(recs) == 0 {
		return nil, 0, nil
	}
	b, err := storage.EncodeBatch(recs)
	return [][]byte{b}, len(recs), err
}

// TestSnapshotResetsStateMachine: a follower that was down while the others checkpointed their
// state and deleted the log before it (the live follower too) comes back through a snapshot; its state is then rebuilt
// from the checkpoint, and a key deleted while it was down is gone from it too.
func TestSnapshotResetsStateMachine(t *testing.T) {
	system := actor.NewActorSystem()
	tr := &localTransport{pids: map[uint64]*actor.PID{}}
	dirs := map[uint64]string{}
	cfgFor := func(id uint64) ReplicaConfig {
		log := storage.DefaultConfig()
		log.Sync, log.SegmentBytes = storage.SyncNever, 4096
		return ReplicaConfig{Topic: "kv", Partition: 0, Dir: dirs[id], Log: log, ID: id, Peers: []uint64{1, 2, 3},
			Transport: tr, TickInterval: 10 * time.Millisecond, ElectionTicks: 10, CheckpointRecords: 50,
			NewStateMachine: func() StateMachine { return &kvState{m: map[string]string{}} }}
	}
	spawn := func(id uint64) {
		pid, err := system.Root.SpawnNamed(NewReplicaProps(cfgFor(id)), fmt.Sprintf("kv%d", id))
		if err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		tr.pids[id] = pid
		tr.mu.Unlock()
	}
	pidOf := func(id uint64) *actor.PID {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.pids[id]
	}
	for id := uint64(1); id <= 3; id++ {
		dirs[id] = t.TempDir()
		spawn(id)
	}
	defer func() {
		for id := uint64(1); id <= 3; id++ {
			if pid := pidOf(id); pid != nil {
				_ = system.Root.StopFuture(pid).Wait()
			}
		}
	}()
	put := func(k, v string) {
		t.Helper()
		b, err := storage.EncodeBatch([]storage.Record{{Key: []byte(k), Value: []byte(v)}})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			for id := uint64(1); id <= 3; id++ {
				pid := pidOf(id)
				if pid == nil {
					continue
				}
				res, err := system.Root.RequestFuture(pid, &Produce{Batch: b, Acks: wire.AcksAll}, 2*time.Second).Result()
				if err == nil && res.(*ProduceReply).Err == nil {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("put %s=%s: no leader took it", k, v)
			}
		}
	}
	state := func(id uint64) map[string]string {
		res, err := system.Root.RequestFuture(pidOf(id), getKV{}, time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		m, _ := res.(map[string]string)
		return m
	}
	status := func(id uint64) *Status {
		res, err := system.Root.RequestFuture(pidOf(id), &GetStatus{}, time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.(*Status)
	}
	put("a", "1")
	for deadline := time.Now().Add(5 * time.Second); state(3)["a"] != "1"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("replica 3 never applied a=1")
		}
	}
	// Replica 3 goes down; the others delete a, write on, checkpoint and drop their old log.
	// (The leader may be 3: then the others elect one of them.)
	_ = system.Root.StopFuture(pidOf(3)).Wait()
	tr.mu.Lock()
	delete(tr.pids, 3)
	tr.mu.Unlock()
	put("a", "")
	for i := 0; i < 400; i++ {
		put("b", fmt.Sprint(i))
	}
	// Both live replicas, the follower too, delete their log before a checkpoint (the follower
	// when it applies the marker that follows it).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s1, s2 := status(1), status(2)
		if s1.StartOffset > 10 && s2.StartOffset > 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a log was not shortened by a checkpoint: replica 1 %+v, replica 2 %+v", *s1, *s2)
		}
	}
	spawn(3)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m := state(3)
		if m["b"] == "399" {
			if _, ok := m["a"]; ok {
				t.Fatalf("replica 3 still has the deleted key a after the snapshot: %v", m)
			}
			if st := status(3); st.StartOffset <= 10 {
				t.Fatalf("replica 3's log starts at %d: it did not install a snapshot", st.StartOffset)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica 3 did not catch up: state %v, status %+v", m, *status(3))
		}
	}
}

// TestNewGroupPreferredLeaderCampaigns: a new group's first peer campaigns at once; with an
// election timeout of 20 s, a leader within 5 s can only come from that campaign.
func TestNewGroupPreferredLeaderCampaigns(t *testing.T) {
	system := actor.NewActorSystem()
	tr := &localTransport{pids: map[uint64]*actor.PID{}}
	peers := []uint64{2, 1, 3}
	pids := spawnReplicas(t, system, tr, peers, func(_ uint64, c *ReplicaConfig) { c.Peers, c.ElectionTicks = peers, 2000 })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		res, err := system.Root.RequestFuture(pids[1], &GetStatus{}, time.Second).Result()
		if err == nil && res.(*Status).Leader == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader within 5 s (last %+v, %v); want the first peer, 2", res, err)
		}
	}
}
