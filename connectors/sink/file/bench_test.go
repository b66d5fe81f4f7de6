package file

import (
	"bytes"
	"testing"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
)

// BenchmarkWrite: the sink alone on the disk of b.TempDir, as the runner drives it with 6
// partitions and its default fetch of 1 MiB: Writes of 1,000 records of 1 KiB, one partition
// each, in turn, with the sink's goroutine syncing in the background (the defaults: every 4 MiB
// or 50 ms per partition). The Close that makes the rest durable is timed too.
func BenchmarkWrite(b *testing.B) {
	const partitions, perWrite, size = 6, 1000, 1024
	s := openSink(b, Config{Dir: b.TempDir(), RollSize: 128 << 20})
	defer s.Close()
	value := bytes.Repeat([]byte{'x'}, size)
	batch := make([]connectors.Message, perWrite)
	next := make([]int64, partitions)
	b.SetBytes(perWrite * size)
	b.ResetTimer()
	for i := range b.N {
		p := int32(i % partitions)
		for j := range batch {
			batch[j] = connectors.Message{Topic: "t", Partition: p, Offset: next[p], Record: storage.Record{Value: value}}
			next[p]++
		}
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}
