package hdfs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/internal/hdfstest"
	"github.com/weirhq/weir/storage"
)

// BenchmarkTopicToHDFS measures a topic of 6 partitions, preloaded with b.N records of 1 KiB
// (not timed), read into a MiniDFSCluster with one DataNode by an HDFS sink group of 1 or 3
// members, text format: timed from the flows' start until the group has committed every record
// (so until the last files are closed and renamed; IdleTimeout 300 ms rolls them). MB/s counts
// record values. Run with a fixed count, as `make bench-sinks` does:
//
//	go test -run '^$' -bench TopicToHDFS -benchtime 300000x ./connectors/sink/hdfs/
//
// The cluster has Hadoop's default block size, 128 MiB, not the 1 MiB the launcher sets for the
// tests: with 1 MiB blocks each MiB costs the writer two NameNode calls (addBlock, and the
// updateBlockForPipeline with which github.com/colinmarc/hdfs ends a block), a new DataNode
// connection, and a wait for every packet's ack before the next block starts, which is not what
// a production cluster costs (one writer of 1 KiB records: about 90 MB/s with 1 MiB blocks, 290
// MB/s with 128 MiB, on a 2-core machine).
func BenchmarkTopicToHDFS(b *testing.B) {
	// Shut down when every sub-benchmark has run.
	dfs := hdfstest.StartOptions(b, hdfstest.Options{DataNodes: 1, Conf: map[string]string{"dfs.blocksize": "134217728"}})
	for _, members := range []int{1, 3} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) { benchTopicToHDFS(b, dfs, members) })
	}
}

func benchTopicToHDFS(b *testing.B, benchDFS *hdfstest.Cluster, members int) {
	const recordSize = 1024
	node, err := flow.StartNode(flow.NodeConfig{DataDir: b.TempDir(), ClientAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	if err := node.CreateTopic("bench", 6); err != nil {
		b.Fatal(err)
	}
	cl, err := client.Dial(node.ClientAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	p, err := cl.NewProducer("bench", client.Idempotent(false))
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, recordSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	ctx := context.Background()
	for range b.N {
		p.ProduceAsync(ctx, storage.Record{Value: value}, func(_ int64, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	root := fmt.Sprintf("/bench/%d-%d", members, time.Now().UnixNano())
	rt := flow.New(node)
	defer rt.Stop()

	b.ResetTimer()
	start := time.Now()
	for m := range members {
		s, err := New(Config{Client: hdfs.ClientOptions{Addresses: []string{benchDFS.Addr}, User: "weir"},
			Path: root + "/%{topic}/p%{partition}", RollSize: 128 << 20, IdleTimeout: 300 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		if err := rt.Sink(fmt.Sprintf("hdfs-%d", m), s, flow.FromTopics("bench"), flow.Group("bench")); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		lag, err := node.GroupLag("bench", "bench")
		if err == nil && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the sinks did not commit every record in 10 minutes (lag %d, %v)", lag, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	mb := float64(b.N) * recordSize / 1e6
	b.ReportMetric(mb/el.Seconds(), "MB/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}
