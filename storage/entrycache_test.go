package storage

import (
	"bytes"
	"math"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/weirhq/weir/storage/vfs"
)

// TestEntriesServedFromCache checks that entries saved and not yet applied come back from
// memory (no file read, no copy), byte for byte as they are on disk, and that applying them
// lets them go.
func TestEntriesServedFromCache(t *testing.T) {
	fs := vfs.NewMem()
	l := mustOpen(t, "/log", raftLogConfig(fs))
	var ents []*pb.Entry
	for i := uint64(1); i <= 20; i++ {
		ents = append(ents, entry(i, 1, pb.EntryNormal, recordsBatch(t, 200, "v")))
	}
	if err := l.SaveEntries(ents[:10]); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveEntries(ents[10:]); err != nil {
		t.Fatal(err)
	}
	cached, err := l.Entries(3, 18, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() { _, _ = l.Entries(3, 18, math.MaxUint64) })
	if allocs > 1 {
		t.Errorf("Entries of 15 cached entries: %.0f allocations, want 1 (the slice)", allocs)
	}

	// The same entries read from disk by a second log on the same files.
	l2 := mustOpen(t, "/log", raftLogConfig(fs))
	disk, err := l2.Entries(3, 18, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	for i := range disk {
		if !bytes.Equal(cached[i].Data, disk[i].Data) || cached[i].GetIndex() != disk[i].GetIndex() || cached[i].GetTerm() != disk[i].GetTerm() {
			t.Fatalf("entry %d: cached and on-disk entries differ", disk[i].GetIndex())
		}
	}
	if h, err := ParseBatch(cached[0].Data); err != nil || h.Index != 3 || h.Term != 1 {
		t.Fatalf("cached entry 3 is not placed: index %d term %d, %v", h.Index, h.Term, err)
	}

	// A size limit cuts cached entries as it cuts read ones.
	one := uint64(len(cached[0].Data))
	if got, _ := l.Entries(3, 18, one+one/2); len(got) != 1 {
		t.Fatalf("Entries with room for one and a half: %d entries, want 1", len(got))
	}

	l.SetApplied(15)
	if l.cache.first != 16 || len(l.cache.ents) != 5 {
		t.Fatalf("after SetApplied(15) the cache holds %d entries from %d, want 5 from 16", len(l.cache.ents), l.cache.first)
	}
	if got, err := l.Entries(3, 18, math.MaxUint64); err != nil || len(got) != 15 || got[0].GetIndex() != 3 {
		t.Fatalf("Entries(3, 18) partly beyond the cache: %d entries, %v", len(got), err)
	}
	l.Close()
}

func TestEntryCacheBounds(t *testing.T) {
	var c entryCache
	big := make([]byte, maxEntryCacheBytes/4+1)
	var ents []*pb.Entry
	for i := uint64(1); i <= 8; i++ {
		ents = append(ents, &pb.Entry{Index: &i, Data: big}) // i is per iteration
	}
	c.add(ents[:4])
	if c.bytes > maxEntryCacheBytes || len(c.ents) != 3 || c.first != 2 {
		t.Fatalf("4 entries of a quarter of the bound and more: %d cached from %d, %d bytes", len(c.ents), c.first, c.bytes)
	}
	if _, ok := c.get(1, 3); ok {
		t.Fatal("get of an evicted entry succeeded")
	}
	c.add(ents[6:7]) // a gap: the cache starts again
	if c.first != 7 || len(c.ents) != 1 {
		t.Fatalf("after a gap: %d cached from %d, want 1 from 7", len(c.ents), c.first)
	}
	c.add(ents[4:6]) // before the cache: starts again
	if c.first != 5 || len(c.ents) != 2 {
		t.Fatalf("after an earlier run: %d cached from %d, want 2 from 5", len(c.ents), c.first)
	}
	c.truncate(6)
	if got, ok := c.get(5, 6); !ok || got[0] != ents[4] {
		t.Fatal("entry 5 lost by truncating from 6")
	}
	if _, ok := c.get(5, 7); ok {
		t.Fatal("entry 6 served after truncating from 6")
	}
	c.dropThrough(5)
	if len(c.ents) != 0 || c.bytes != 0 {
		t.Fatalf("after dropping everything: %d entries, %d bytes", len(c.ents), c.bytes)
	}
}
