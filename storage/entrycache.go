package storage

import pb "go.etcd.io/raft/v3/raftpb"

// maxEntryCacheBytes bounds the entry cache of one log, counted as the entries' data.
const maxEntryCacheBytes = 32 << 20

// entryCache keeps the raft entries most recently saved by SaveEntries and not yet applied, so
// that raft gets the entries it is about to commit and apply (it reads them back from Storage
// once they are saved) without reading and copying them from the segment files. The cached
// entries are those raft handed to SaveEntries, their records batches placed in place, so they
// are byte for byte what Entries would read from disk. It holds a contiguous run of indexes.
type entryCache struct {
	first uint64      // index of ents[0]
	ents  []*pb.Entry // ents[i] has index first+i
	bytes int
}

// add caches ents (consecutive, just saved), replacing any cached entries from ents[0] on.
func (c *entryCache) add(ents []*pb.Entry) {
	if len(ents) == 0 {
		return
	}
	first := ents[0].GetIndex()
	if len(c.ents) == 0 || first < c.first || first > c.first+uint64(len(c.ents)) {
		c.clear()
		c.first = first
	} else {
		c.truncate(first)
	}
	for _, e := range ents {
		c.ents = append(c.ents, e)
		c.bytes += len(e.Data)
	}
	for c.bytes > maxEntryCacheBytes && len(c.ents) > 0 {
		c.dropFront()
	}
}

// get returns the cached entries [lo, hi) in a new slice, or false if any of them is not cached.
func (c *entryCache) get(lo, hi uint64) ([]*pb.Entry, bool) {
	if lo < c.first || hi > c.first+uint64(len(c.ents)) || lo >= hi {
		return nil, false
	}
	return append([]*pb.Entry(nil), c.ents[lo-c.first:hi-c.first]...), true
}

// truncate drops the cached entries from index idx on.
func (c *entryCache) truncate(idx uint64) {
	for len(c.ents) > 0 && c.first+uint64(len(c.ents)) > idx {
		n := len(c.ents) - 1
		c.bytes -= len(c.ents[n].Data)
		c.ents[n] = nil
		c.ents = c.ents[:n]
	}
}

// dropThrough drops the cached entries up to and including index idx.
func (c *entryCache) dropThrough(idx uint64) {
	for len(c.ents) > 0 && c.first <= idx {
		c.dropFront()
	}
}

func (c *entryCache) dropFront() {
	c.bytes -= len(c.ents[0].Data)
	c.ents[0] = nil
	c.ents = c.ents[1:]
	c.first++
	if len(c.ents) == 0 {
		c.ents = nil // let the backing array go
	}
}

func (c *entryCache) clear() {
	clear(c.ents)
	c.ents, c.bytes = c.ents[:0], 0
}
