package actors

// Tests from a review of the Kafka admin APIs: each failed on the code before its fix.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// TestKafkaDescribeConfigsRepeats: a DescribeConfigs request that names the same resource over
// and over is answered once per resource, not with every config for every repeat: 100,000
// repeats of the broker (7 bytes each, 700 KB in all) were answered with 51 MB and made the
// node allocate 730 MB, so a 100 MB request could take a node down.
func TestKafkaDescribeConfigsRepeats(t *testing.T) {
	n := startKafkaNode(t, "dcr", 1)
	dc := kmsg.NewPtrDescribeConfigsRequest()
	for range 100_000 {
		dc.Resources = append(dc.Resources, kmsg.DescribeConfigsRequestResource{ResourceType: kmsg.ConfigResourceTypeBroker})
		dc.Resources = append(dc.Resources, kmsg.DescribeConfigsRequestResource{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "dcr"})
	}
	resp := n.kafka.describeConfigs(dc)
	if size := len(resp.AppendTo(nil)); size > 64<<10 {
		t.Errorf("DescribeConfigs of the broker and a topic 100,000 times each: %d bytes answered", size)
	}
	var broker, topic int
	for _, r := range resp.Resources {
		switch {
		case r.ErrorCode != 0:
			t.Errorf("%v %q: error %d", r.ResourceType, r.ResourceName, r.ErrorCode)
		case r.ResourceType == kmsg.ConfigResourceTypeBroker && len(r.Configs) > 0:
			broker++
		case r.ResourceType == kmsg.ConfigResourceTypeTopic && len(r.Configs) > 0:
			topic++
		}
	}
	if broker != 1 || topic != 1 {
		t.Errorf("the broker's configs answered %d times, the topic's %d; want once each", broker, topic)
	}
	// Different config names of one resource are different questions, each answered.
	dc.Resources = []kmsg.DescribeConfigsRequestResource{
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "dcr", ConfigNames: []string{"retention.ms"}},
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "dcr", ConfigNames: []string{"segment.bytes"}},
	}
	resp = n.kafka.describeConfigs(dc)
	if len(resp.Resources) != 2 || len(resp.Resources[0].Configs) != 1 || len(resp.Resources[1].Configs) != 1 ||
		resp.Resources[0].Configs[0].Name != "retention.ms" || resp.Resources[1].Configs[0].Name != "segment.bytes" {
		t.Errorf("DescribeConfigs of two configs of a topic, one each: %+v", resp.Resources)
	}
}

// TestKafkaMaxTimestampRepeats: ListOffsets' max timestamp (-3) is searched for once per
// partition in a request: each search takes some 65 lookups by time on the partition's replica,
// and a request naming one partition 3,000 times (48 KB) took seconds of the replica's time (a
// 100 MB request, hours).
func TestKafkaMaxTimestampRepeats(t *testing.T) {
	n := startKafkaNode(t, "mtr", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kafkaProduceTo(t, ctx, n, "mtr", map[int32]int{0: 20, 1: 20})
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 7
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "mtr"
	for i := range 3000 {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = int32(i%2), -3
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	start := time.Now()
	resp := n.kafka.listOffsets(req)
	took := time.Since(start)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 3000 {
		t.Fatalf("%d topics answered", len(resp.Topics))
	}
	for i, p := range resp.Topics[0].Partitions {
		if p.Partition != int32(i%2) || p.ErrorCode != 0 || p.Offset < 0 || p.Offset >= 20 || p.Timestamp <= 0 {
			t.Fatalf("entry %d: %+v", i, p)
		}
	}
	if took > 2*time.Second {
		t.Errorf("the max timestamp of 2 partitions, 1,500 times each: %v", took)
	}
}

// TestKafkaSourceGroupsHidden: a flow source's position (group "source:<flow>", which ListGroups
// leaves out: not a consumer group) is neither described nor deleted by the Kafka admin APIs.
// DeleteGroups deleted it, even while the flow ran (the source does not join its group, so the
// group looked empty): the source restarted from the beginning of its input at its next start.
func TestKafkaSourceGroupsHidden(t *testing.T) {
	n := startKafkaNode(t, "sgh", 1)
	group := SourceGroup("flow")
	res, err := n.system.Root.RequestFuture(n.childPID("offsets"), &CommitOffsets{Group: group,
		Offsets: []wire.PartitionOffset{{Topic: "sgh", Partition: -1, Metadata: []byte("pos-42")}}}, 10*time.Second).Result()
	if r, ok := res.(*ProduceReply); err != nil || !ok || r.Err != nil {
		t.Fatalf("commit of a source position: %v %+v", err, res)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version, del.Groups = 3, []string{group}
	if r := n.kafka.deleteGroups(del); len(r.Groups) != 1 || r.Groups[0].ErrorCode != kafkaGroupIDNotFound {
		t.Errorf("DeleteGroups of %s: %+v, want GROUP_ID_NOT_FOUND", group, r.Groups)
	}
	if has, e := n.HasCommits(group); e != nil || !has {
		t.Errorf("the source's position after DeleteGroups: present %v (%v), want present", has, e)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version, dg.Groups = 6, []string{group}
	if r := n.kafka.describeGroups(dg); len(r.Groups) != 1 || r.Groups[0].ErrorCode != kafkaGroupIDNotFound || r.Groups[0].State != "Dead" {
		t.Errorf("DescribeGroups of %s: %+v, want Dead, GROUP_ID_NOT_FOUND", group, r.Groups)
	}
}

// TestKafkaDescribeGroupsStuck: DescribeGroups and DeleteGroups look their groups up together,
// not one after the other: a request naming groups whose coordinators do not answer (their node
// unreachable, or busy) took the query timeout for each group, 10 seconds, so that a request for
// a hundred groups held its connection for over a quarter of an hour after the client gave up.
func TestKafkaDescribeGroupsStuck(t *testing.T) {
	release := make(chan struct{})
	cfg := NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Faults = func(kind, point string) {
		if kind == "group" && point == "join" {
			<-release // the group's coordinator stops answering
		}
	}
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	t.Cleanup(func() { close(release) })
	if err := n.CreateTopic("stuck", 1); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { groupQueryTimeout = d }(groupQueryTimeout)
	groupQueryTimeout = time.Second
	groups := []string{"s1", "s2", "s3", "s4", "s5", "s1"}
	for _, g := range groups[:5] {
		jg := kmsg.NewPtrJoinGroupRequest()
		jg.Version, jg.Group, jg.ProtocolType, jg.SessionTimeoutMillis = 5, g, "consumer", 10_000
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Topics = []string{"stuck"}
		jg.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
		go n.kafka.joinGroup(jg, "c", "127.0.0.1:1")
	}
	for _, g := range groups[:5] { // every coordinator runs, stuck in the join
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			res, _ := n.ask(n.Root(), &ListCoordinators{})
			if l, ok := res.(*GroupList); ok && slices.Contains(l.Groups, g) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no coordinator for %s", g)
			}
		}
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version, dg.Groups = 6, groups
	start := time.Now()
	resp := n.kafka.describeGroups(dg)
	took := time.Since(start)
	if len(resp.Groups) != 5 { // s1 answered once
		t.Fatalf("%d groups answered, want 5", len(resp.Groups))
	}
	for i, g := range resp.Groups {
		if g.Group != groups[i] || g.ErrorCode != kafkaCoordinatorNotAvailable {
			t.Errorf("group %d: %s, error %d; want %s, COORDINATOR_NOT_AVAILABLE", i, g.Group, g.ErrorCode, groups[i])
		}
	}
	if took > 3*time.Second {
		t.Errorf("DescribeGroups of %d groups whose coordinators do not answer (a 1 s timeout each): %v", len(groups), took)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version, del.Groups = 3, groups
	start = time.Now()
	dr := n.kafka.deleteGroups(del)
	if took := time.Since(start); took > 3*time.Second || len(dr.Groups) != 5 || dr.Groups[0].ErrorCode != kafkaCoordinatorNotAvailable {
		t.Errorf("DeleteGroups of %d groups whose coordinators do not answer: %v, %+v", len(groups), took, dr.Groups)
	}
}

// TestKafkaDescribeTopicPartitionsPage: DescribeTopicPartitions asks for the status of the
// partitions of the topics its answer reaches, not of every topic from the cursor on: paging
// through a cluster's topics asked every partition of the rest at every page (quadratic), and a
// partition slow to answer anywhere after the page held up every page.
func TestKafkaDescribeTopicPartitionsPage(t *testing.T) {
	var stuck atomic.Bool
	release := make(chan struct{})
	cfg := NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Faults = func(kind, point string) {
		if kind == "partition" && point == "produce" && stuck.Load() {
			<-release // the partition stops answering
		}
	}
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	t.Cleanup(func() { close(release) })
	for _, topic := range []string{"pa", "pb", "zz"} {
		if err := n.CreateTopic(topic, 2); err != nil {
			t.Fatal(err)
		}
	}
	stuck.Store(true)
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cl.Produce(context.Background(), &kgo.Record{Topic: "zz", Partition: 0, Value: []byte("x")}, nil)
	time.Sleep(500 * time.Millisecond) // zz/0's replica is stuck in the produce

	req := kmsg.NewPtrDescribeTopicPartitionsRequest()
	req.ResponsePartitionLimit = 2
	var pages []string
	start := time.Now()
	for range 10 {
		resp := n.kafka.describeTopicPartitions(req)
		page := ""
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				page += fmt.Sprintf("%s/%d ", *rt.Topic, p.Partition)
			}
		}
		pages = append(pages, page)
		if resp.NextCursor == nil || resp.NextCursor.Topic == "zz" {
			break
		}
		req.Cursor = &kmsg.DescribeTopicPartitionsRequestCursor{Topic: resp.NextCursor.Topic, Partition: resp.NextCursor.Partition}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("two pages of pa and pb, before zz (whose partition 0 does not answer): %v", took)
	}
	if want := []string{"pa/0 pa/1 ", "pb/0 pb/1 "}; !slices.Equal(pages, want) {
		t.Errorf("pages %q, want %q", pages, want)
	}
}

// TestKafkaDescribeGroupsRepeats: DescribeGroups answers a group named again once, not with its
// members again: each repeat carried every member's subscription and assignment, so a request
// naming a group with large subscriptions (which any client can join with) thousands of times,
// a few kilobytes, had the node build an answer of gigabytes.
func TestKafkaDescribeGroupsRepeats(t *testing.T) {
	n := startKafkaNode(t, "dgr", 1)
	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Version, jg.Group, jg.ProtocolType, jg.SessionTimeoutMillis = 5, "big", "consumer", 30_000
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"dgr"}
	for i := range 25 { // names of 200 bytes, the longest Weir takes
		name := fmt.Sprintf("%02d-%s", i, strings.Repeat("t", 197))
		if err := n.CreateTopic(name, 1); err != nil {
			t.Fatal(err)
		}
		meta.Topics = append(meta.Topics, name)
	}
	jg.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	if r := n.kafka.joinGroup(jg, "c", "127.0.0.1:1"); r.ErrorCode != 0 {
		t.Fatalf("join: error %d", r.ErrorCode)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version = 5
	for range 2000 {
		dg.Groups = append(dg.Groups, "big")
	}
	resp := n.kafka.describeGroups(dg)
	if size := len(resp.AppendTo(nil)); size > 1<<20 {
		t.Errorf("DescribeGroups of a group with a 5 KB subscription, 2,000 times (%d bytes): %d bytes answered", len(dg.AppendTo(nil)), size)
	}
	if len(resp.Groups) == 0 || resp.Groups[0].Group != "big" || resp.Groups[0].State != "Stable" || len(resp.Groups[0].Members) != 1 {
		t.Errorf("DescribeGroups of big: %+v", resp.Groups[:min(len(resp.Groups), 1)])
	}
}

// TestKafkaDeleteGroupsRepeats: DeleteGroups deletes a group named again once: each repeat
// appended another deletion to __offsets, one raft round after the other, so a request of a
// few megabytes naming one empty group over and over wrote a million records.
func TestKafkaDeleteGroupsRepeats(t *testing.T) {
	n := startKafkaNode(t, "dlr", 1)
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group = 8, "gone"
	oc.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "dlr", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 0}}}}
	if r := n.kafka.offsetCommit(oc); r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit: error %d", r.Topics[0].Partitions[0].ErrorCode)
	}
	end := func() int64 {
		res, err := n.system.Root.RequestFuture(n.childPID("offsets"), &GetStatus{}, 5*time.Second).Result()
		st, ok := res.(*Status)
		if err != nil || !ok {
			t.Fatalf("status of __offsets: %v %T", err, res)
		}
		return st.EndOffset
	}
	before := end()
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version = 3
	for range 50 {
		del.Groups = append(del.Groups, "gone")
	}
	resp := n.kafka.deleteGroups(del)
	for _, g := range resp.Groups {
		if g.Group != "gone" || g.ErrorCode != 0 {
			t.Fatalf("DeleteGroups: %+v", g)
		}
	}
	if after := end(); after != before+1 {
		t.Errorf("DeleteGroups of one group named 50 times appended %d records to __offsets, want 1", after-before)
	}
}
