package actors

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaProduceTo writes n records to each of the partitions through the Kafka listener.
func kafkaProduceTo(t *testing.T, ctx context.Context, n *Node, topic string, per map[int32]int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for p, count := range per {
		for i := range count {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(i))})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// groupLag returns kadm's lag of a group: its state, its members and each partition's
// committed offset, end offset and lag.
func groupLag(t *testing.T, ctx context.Context, adm *kadm.Client, group string) kadm.DescribedGroupLag {
	t.Helper()
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	l := lags[group]
	if l.DescribeErr != nil || l.FetchErr != nil {
		t.Fatalf("lag of %s: describe %v, fetch %v", group, l.DescribeErr, l.FetchErr)
	}
	return l
}

// TestKafkaDescribeGroups: kadm (franz-go's admin client) lists and describes a Weir group a kgo
// consumer is in (Stable, its client id and host, its assignment decoded from the consumer
// protocol's bytes) and computes its lag from OffsetFetch and ListOffsets; a commit from outside
// the group (generation -1, no member id) is refused UNKNOWN_MEMBER_ID while the member is in
// it, and one with the member's id and generation -1 ILLEGAL_GENERATION, as Kafka does; once the
// member left, the group is Empty, keeps its offsets, and takes such a commit. ListGroups v5's
// filters, and a group that does not exist (Dead; GROUP_ID_NOT_FOUND from v6). DeleteGroups
// refuses the group while it has a member (NON_EMPTY_GROUP) and deletes it once empty.
func TestKafkaDescribeGroups(t *testing.T) {
	n := startKafkaNode(t, "kd", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kafkaProduceTo(t, ctx, n, "kd", map[int32]int{0: 30, 1: 30, 2: 30})
	acl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer acl.Close()
	adm := kadm.NewClient(acl)

	// A member reads all 90 records and commits, then stops polling (its heartbeats go on).
	cons, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.ConsumerGroup("gd"), kgo.ConsumeTopics("kd"),
		kgo.Balancers(kgo.RangeBalancer()), kgo.DisableAutoCommit(), kgo.ClientID("describer"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for read := 0; read < 90; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the member read %d of 90 records", read)
		}
		read += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	kafkaProduceTo(t, ctx, n, "kd", map[int32]int{0: 10})

	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := listed["gd"]; !ok || g.State != "Stable" || g.ProtocolType != "consumer" || g.GroupType != "classic" {
		t.Fatalf("ListGroups: %+v, want gd Stable, consumer, classic", listed)
	}
	l := groupLag(t, ctx, adm, "gd")
	if l.State != "Stable" || l.ProtocolType != "consumer" || l.Protocol != "range" || len(l.Members) != 1 {
		t.Fatalf("gd: state %q, protocol type %q, protocol %q, %d members; want Stable, consumer, range, 1", l.State, l.ProtocolType, l.Protocol, len(l.Members))
	}
	m := l.Members[0]
	if m.ClientID != "describer" || m.ClientHost != "/127.0.0.1" {
		t.Errorf("member %s: client id %q, host %q; want describer, /127.0.0.1", m.MemberID, m.ClientID, m.ClientHost)
	}
	assigned, ok := m.Assigned.AsConsumer()
	if !ok || len(assigned.Topics) != 1 || assigned.Topics[0].Topic != "kd" || !slices.Equal(assigned.Topics[0].Partitions, []int32{0, 1, 2}) {
		t.Fatalf("member's assignment %+v (decoded %v), want kd 0, 1, 2", assigned, ok)
	}
	if join, ok := m.Join.AsConsumer(); !ok || !slices.Equal(join.Topics, []string{"kd"}) {
		t.Errorf("member's subscription %+v (decoded %v), want kd", join, ok)
	}
	wantLag := func(l kadm.DescribedGroupLag, want map[int32][3]int64) {
		t.Helper()
		for p, w := range want {
			ml, ok := l.Lag.Lookup("kd", p)
			if !ok || ml.Err != nil || ml.Commit.At != w[0] || ml.End.Offset != w[1] || ml.Lag != w[2] {
				t.Errorf("kd/%d: committed %d, end %d, lag %d (%v, %v); want %v", p, ml.Commit.At, ml.End.Offset, ml.Lag, ok, ml.Err, w)
			}
		}
	}
	wantLag(l, map[int32][3]int64{0: {30, 40, 10}, 1: {30, 30, 0}, 2: {30, 30, 0}})

	// Commits from outside the group while it has a member.
	var outside kadm.Offsets
	outside.AddOffset("kd", 0, 35, -1)
	res, err := adm.CommitOffsets(ctx, "gd", outside)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); !errors.Is(err, kerr.UnknownMemberID) {
		t.Fatalf("a commit without member id or generation while gd has a member: %v, want UNKNOWN_MEMBER_ID", err)
	}
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group, oc.MemberID, oc.Generation = "gd", m.MemberID, -1
	ot := kmsg.NewOffsetCommitRequestTopic()
	ot.Topic = "kd"
	op := kmsg.NewOffsetCommitRequestTopicPartition()
	op.Partition, op.Offset = 0, 35
	ot.Partitions = append(ot.Partitions, op)
	oc.Topics = append(oc.Topics, ot)
	ocr, err := oc.RequestWith(ctx, acl)
	if err != nil {
		t.Fatal(err)
	}
	if code := ocr.Topics[0].Partitions[0].ErrorCode; code != kafkaIllegalGeneration {
		t.Fatalf("a commit with the member's id and generation -1: error %d, want ILLEGAL_GENERATION (%d)", code, kafkaIllegalGeneration)
	}
	wantLag(groupLag(t, ctx, adm, "gd"), map[int32][3]int64{0: {30, 40, 10}})
	if dr, err := adm.DeleteGroups(ctx, "gd"); err != nil || !errors.Is(dr["gd"].Err, kerr.NonEmptyGroup) {
		t.Fatalf("DeleteGroups of gd while it has a member: %+v, %v; want NON_EMPTY_GROUP", dr, err)
	}

	// The member leaves: the group is Empty, lists as such, keeps its offsets, and takes a
	// commit from outside.
	cons.Close()
	for {
		if l = groupLag(t, ctx, adm, "gd"); l.State == "Empty" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("gd is %s after its member left, want Empty", l.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(l.Members) != 0 {
		t.Fatalf("gd is Empty with members %+v", l.Members)
	}
	wantLag(l, map[int32][3]int64{0: {30, 40, 10}, 1: {30, 30, 0}})
	if res, err = adm.CommitOffsets(ctx, "gd", outside); err != nil || res.Error() != nil {
		t.Fatalf("a commit from outside the empty group: %v, %v", err, res.Error())
	}
	wantLag(groupLag(t, ctx, adm, "gd"), map[int32][3]int64{0: {35, 40, 5}})

	// ListGroups v5 filters by state and type; Weir's groups are classic ones.
	for _, c := range []struct {
		types, states []string
		want          bool
	}{
		{nil, []string{"empty"}, true},
		{nil, []string{"Stable"}, false},
		{[]string{"classic"}, nil, true},
		{[]string{"consumer"}, nil, false},
	} {
		lg, err := adm.ListGroupsByType(ctx, c.types, c.states...)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := lg["gd"]; ok != c.want {
			t.Errorf("ListGroups types %v states %v: %v, want gd listed: %v", c.types, c.states, lg, c.want)
		}
	}

	// A group that does not exist.
	described, err := adm.DescribeGroups(ctx, "nope")
	if err != nil {
		t.Fatal(err)
	}
	if d := described["nope"]; !errors.Is(d.Err, kerr.GroupIDNotFound) {
		t.Errorf("DescribeGroups of a group that does not exist: %+v, want GROUP_ID_NOT_FOUND", d)
	}
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version, dg.Groups = 5, []string{"nope", "gd"}
	dgr := kmsg.NewPtrDescribeGroupsResponse()
	dgr.Version = 5
	kafkaRoundTrip(t, c, 5, dg, dgr)
	if len(dgr.Groups) != 2 || dgr.Groups[0].State != "Dead" || dgr.Groups[0].ErrorCode != 0 || dgr.Groups[1].State != "Empty" {
		t.Errorf("DescribeGroups v5: %+v, want nope Dead without an error code, gd Empty", dgr.Groups)
	}

	// DeleteGroups: the empty group's offsets go, and with them the group.
	deleted, err := adm.DeleteGroups(ctx, "gd", "nope")
	if err != nil {
		t.Fatal(err)
	}
	if deleted["gd"].Err != nil || !errors.Is(deleted["nope"].Err, kerr.GroupIDNotFound) {
		t.Fatalf("DeleteGroups gd, nope: %+v; want gd deleted, nope GROUP_ID_NOT_FOUND", deleted)
	}
	if offs, err := adm.FetchOffsets(ctx, "gd"); err != nil || len(offs) != 0 {
		t.Fatalf("gd's offsets after its deletion: %v, %v", offs, err)
	}
	if listed, err = adm.ListGroups(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := listed["gd"]; ok {
		t.Fatalf("ListGroups after gd's deletion: %+v", listed)
	}
}

// TestKafkaDescribeConfigs: a topic created through the Kafka listener with retention settings
// is answered with its configs (the Java AdminClient fails without them); DescribeConfigs gives
// them as the topic's own (DYNAMIC_TOPIC_CONFIG), the node's others as defaults, all read-only
// (Weir serves no AlterConfigs), with synonyms and types; the node's broker configs; errors for
// a topic that does not exist and another broker's id.
func TestKafkaDescribeConfigs(t *testing.T) {
	n := startKafkaNode(t, "plain", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "kc", 2, 1
	ms, bytes := "3600000", "1048576"
	ct.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "retention.ms", Value: &ms}, {Name: "retention.bytes", Value: &bytes}}
	create.Topics = append(create.Topics, ct)
	cres, err := create.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]string{}
	for _, c := range cres.Topics[0].Configs {
		if c.Value != nil {
			created[c.Name] = *c.Value
		}
	}
	if cres.Topics[0].ErrorCode != 0 || created["retention.ms"] != ms || created["retention.bytes"] != bytes || created["cleanup.policy"] != "delete" {
		t.Fatalf("CreateTopics answered error %d, configs %v; want retention.ms %s, retention.bytes %s, cleanup.policy delete", cres.Topics[0].ErrorCode, created, ms, bytes)
	}

	self := strconv.Itoa(int(n.kafka.brokerID(n.raftID)))
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.IncludeSynonyms, req.IncludeDocumentation = true, true
	for _, r := range []struct {
		typ  kmsg.ConfigResourceType
		name string
	}{{kmsg.ConfigResourceTypeTopic, "kc"}, {kmsg.ConfigResourceTypeTopic, "plain"}, {kmsg.ConfigResourceTypeTopic, "nope"},
		{kmsg.ConfigResourceTypeBroker, self}} {
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = r.typ, r.name
		req.Resources = append(req.Resources, rr)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		value    string
		source   kmsg.ConfigSource
		readOnly bool
		typ      kmsg.ConfigType
		synonym  string
	}
	got := map[string]map[string]entry{}
	for _, res := range resp.Resources {
		if res.ResourceName == "nope" {
			if res.ErrorCode != kafkaUnknownTopic {
				t.Errorf("configs of a topic that does not exist: error %d, want %d", res.ErrorCode, kafkaUnknownTopic)
			}
			continue
		}
		if res.ErrorCode != 0 {
			t.Fatalf("%s: error %d %v", res.ResourceName, res.ErrorCode, res.ErrorMessage)
		}
		got[res.ResourceName] = map[string]entry{}
		for _, c := range res.Configs {
			e := entry{source: c.Source, readOnly: c.ReadOnly, typ: c.ConfigType}
			if c.Value != nil {
				e.value = *c.Value
			}
			if len(c.ConfigSynonyms) > 0 {
				e.synonym = c.ConfigSynonyms[0].Name
			}
			if c.Documentation == nil && res.ResourceType == kmsg.ConfigResourceTypeTopic {
				t.Errorf("%s %s: no documentation", res.ResourceName, c.Name)
			}
			got[res.ResourceName][c.Name] = e
		}
	}
	want := map[string]map[string]entry{
		"kc": {
			"retention.ms":        {ms, kmsg.ConfigSourceDynamicTopicConfig, true, kmsg.ConfigTypeLong, "retention.ms"},
			"retention.bytes":     {bytes, kmsg.ConfigSourceDynamicTopicConfig, true, kmsg.ConfigTypeLong, "retention.bytes"},
			"segment.bytes":       {"134217728", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeInt, "log.segment.bytes"},
			"segment.ms":          {ms, kmsg.ConfigSourceDynamicTopicConfig, true, kmsg.ConfigTypeLong, "segment.ms"},
			"cleanup.policy":      {"delete", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeList, "log.cleanup.policy"},
			"min.insync.replicas": {"1", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeInt, "min.insync.replicas"},
		},
		"plain": {
			"retention.ms":    {"-1", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeLong, "log.retention.ms"},
			"retention.bytes": {"-1", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeLong, "log.retention.bytes"},
		},
		self: {
			"log.retention.ms":  {"-1", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeLong, "log.retention.ms"},
			"log.segment.bytes": {"134217728", kmsg.ConfigSourceDefaultConfig, true, kmsg.ConfigTypeInt, "log.segment.bytes"},
			"broker.id":         {self, kmsg.ConfigSourceStaticBrokerConfig, true, kmsg.ConfigTypeInt, "broker.id"},
		},
	}
	for res, cfgs := range want {
		for name, w := range cfgs {
			if g, ok := got[res][name]; !ok || g != w {
				t.Errorf("%s %s: %+v (%v), want %+v", res, name, g, ok, w)
			}
		}
	}
	if _, ok := got["plain"]["segment.ms"]; ok {
		t.Errorf("topic plain has segment.ms %+v: the node rolls segments by size only", got["plain"]["segment.ms"])
	}

	// Only the configs asked for; another broker's id is refused.
	req = kmsg.NewPtrDescribeConfigsRequest()
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName, rr.ConfigNames = kmsg.ConfigResourceTypeTopic, "kc", []string{"retention.bytes"}
	req.Resources = append(req.Resources, rr)
	if resp, err = req.RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if cs := resp.Resources[0].Configs; len(cs) != 1 || cs[0].Name != "retention.bytes" {
		t.Errorf("configs of kc named retention.bytes: %+v", cs)
	}
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req.Resources[0] = kmsg.DescribeConfigsRequestResource{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: self + "7"}
	dresp := kmsg.NewPtrDescribeConfigsResponse()
	req.Version, dresp.Version = 4, 4
	kafkaRoundTrip(t, c, 4, req, dresp)
	if len(dresp.Resources) != 1 || dresp.Resources[0].ErrorCode != kafkaInvalidRequest {
		t.Errorf("configs of broker %s7 on broker %s: %+v, want INVALID_REQUEST", self, self, dresp.Resources)
	}

	// Version 0 has no sources: IsDefault tells a topic's own setting from the node's.
	v0 := kmsg.NewPtrDescribeConfigsRequest()
	v0.Version = 0
	for _, name := range []string{"kc", "plain"} {
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName, rr.ConfigNames = kmsg.ConfigResourceTypeTopic, name, []string{"retention.ms"}
		v0.Resources = append(v0.Resources, rr)
	}
	v0resp := kmsg.NewPtrDescribeConfigsResponse()
	kafkaRoundTrip(t, c, 0, v0, v0resp)
	if len(v0resp.Resources) != 2 || len(v0resp.Resources[0].Configs) != 1 || len(v0resp.Resources[1].Configs) != 1 ||
		v0resp.Resources[0].Configs[0].IsDefault || !v0resp.Resources[1].Configs[0].IsDefault {
		t.Errorf("DescribeConfigs v0 of retention.ms: %+v, want kc's not default and plain's default", v0resp.Resources)
	}

	// kadm reads the same.
	adm := kadm.NewClient(cl)
	rcs, err := adm.DescribeTopicConfigs(ctx, "kc")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("kc", nil)
	if err != nil || rc.Err != nil {
		t.Fatal(err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" && (c.Value == nil || *c.Value != ms || c.Source != kmsg.ConfigSourceDynamicTopicConfig) {
			t.Errorf("kadm: retention.ms %+v", c)
		}
	}
}

// TestKafkaDescribeClusterAndPartitions: DescribeCluster names this node as the one broker and
// the controller, and DescribeTopicPartitions (what Kafka 4's AdminClient describes topics
// with) pages through two topics' partitions with its cursor, as Metadata has them.
func TestKafkaDescribeClusterAndPartitions(t *testing.T) {
	n := startKafkaNode(t, "kp", 3)
	if err := n.CreateTopic("kq", 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	self := n.kafka.brokerID(n.raftID)
	dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	_, port := splitHostPort(n.KafkaAddr())
	if dc.ErrorCode != 0 || dc.ClusterID != kafkaClusterID || dc.ControllerID != self || len(dc.Brokers) != 1 ||
		dc.Brokers[0].NodeID != self || dc.Brokers[0].Port != port {
		t.Fatalf("DescribeCluster: %+v", dc)
	}

	var got []string
	req := kmsg.NewPtrDescribeTopicPartitionsRequest()
	req.ResponsePartitionLimit = 2
	for _, name := range []string{"kq", "kp"} {
		rt := kmsg.NewDescribeTopicPartitionsRequestTopic()
		rt.Topic = name
		req.Topics = append(req.Topics, rt)
	}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("DescribeTopicPartitions: more than 5 pages: %v", got)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		for _, rt := range resp.Topics {
			if rt.ErrorCode != 0 || rt.Topic == nil {
				t.Fatalf("DescribeTopicPartitions: topic %+v", rt)
			}
			for _, p := range rt.Partitions {
				if p.ErrorCode != 0 || p.LeaderID != self || !slices.Equal(p.Replicas, []int32{self}) || !slices.Equal(p.ISR, []int32{self}) {
					t.Errorf("%s/%d: %+v", *rt.Topic, p.Partition, p)
				}
				got = append(got, *rt.Topic+"/"+strconv.Itoa(int(p.Partition)))
			}
		}
		if resp.NextCursor == nil {
			break
		}
		req.Cursor = &kmsg.DescribeTopicPartitionsRequestCursor{Topic: resp.NextCursor.Topic, Partition: resp.NextCursor.Partition}
	}
	if want := []string{"kp/0", "kp/1", "kp/2", "kq/0", "kq/1"}; !slices.Equal(got, want) {
		t.Fatalf("DescribeTopicPartitions paged through %v, want %v", got, want)
	}
}

// TestKafkaListOffsetsSpecs: ListOffsets' max timestamp (-3, v7+) finds the first record with
// the partition's largest timestamp though timestamps go back and forth, and -1/-1 in an empty
// partition; earliest local (-4, v8+) is the earliest offset (Weir keeps every record locally);
// latest tiered (-5, v9+) is -1, as Kafka answers without remote storage; v10 is served.
func TestKafkaListOffsetsSpecs(t *testing.T) {
	n := startKafkaNode(t, "ko", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, ts := range []int64{1000, 5000, 3000, 5000, 2000} { // one batch each: timestamps per record
		r := &kgo.Record{Topic: "ko", Partition: 0, Value: []byte("v"), Timestamp: time.UnixMilli(ts)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		version       int16
		partition     int32
		spec, off, ts int64
		code          int16
	}{
		{7, 0, -3, 1, 5000, 0},
		{10, 0, -3, 1, 5000, 0},
		{7, 1, -3, -1, -1, 0},
		{8, 0, -4, 0, -1, 0},
		{9, 0, -5, -1, -1, 0},
		{10, 0, -1, 5, -1, 0},
		{10, 0, 2500, 1, 5000, 0}, // the first record at least that new
		{6, 0, -3, -1, -1, kafkaInvalidRequest},
	} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = c.version
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "ko"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = c.partition, c.spec
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := n.kafka.listOffsets(req)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != c.code || p.Offset != c.off || p.Timestamp != c.ts {
			t.Errorf("ListOffsets v%d of ko/%d at %d: error %d, offset %d, timestamp %d; want %d, %d, %d",
				c.version, c.partition, c.spec, p.ErrorCode, p.Offset, p.Timestamp, c.code, c.off, c.ts)
		}
	}
	// Through the listener, at the version kgo picks (10).
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "ko", Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 0, Timestamp: -3, CurrentLeaderEpoch: -1}}}}
	resp, err := lo.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Topics[0].Partitions[0]; resp.Version != 10 || p.ErrorCode != 0 || p.Offset != 1 || p.Timestamp != 5000 {
		t.Errorf("ListOffsets v%d max timestamp: %+v, want offset 1 at 5000", resp.Version, p)
	}
}

// TestKafkaAdminOddRequests: the admin handlers answer requests with odd fields with errors,
// not panics: empty and internal names, unknown resource types, filters that match nothing, a
// cursor past every topic, a partition limit below one, controllers asked for.
func TestKafkaAdminOddRequests(t *testing.T) {
	n := startKafkaNode(t, "odd", 2)
	k := n.kafka

	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Version, dg.Groups = 6, []string{"", "none"}
	dgr := k.describeGroups(dg)
	if len(dgr.Groups) != 2 || dgr.Groups[0].ErrorCode != kafkaInvalidGroupID || dgr.Groups[1].ErrorCode != kafkaGroupIDNotFound {
		t.Errorf("DescribeGroups of an empty and an unknown group: %+v", dgr.Groups)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Version, del.Groups = 3, []string{"", "none"}
	delr := k.deleteGroups(del)
	if len(delr.Groups) != 2 || delr.Groups[0].ErrorCode != kafkaInvalidGroupID || delr.Groups[1].ErrorCode != kafkaGroupIDNotFound {
		t.Errorf("DeleteGroups of an empty and an unknown group: %+v", delr.Groups)
	}
	lg := kmsg.NewPtrListGroupsRequest()
	lg.Version, lg.StatesFilter = 5, []string{"bogus"}
	if r := k.listGroups(lg); r.ErrorCode != 0 || len(r.Groups) != 0 {
		t.Errorf("ListGroups in state bogus: %+v", r)
	}

	dc := kmsg.NewPtrDescribeConfigsRequest()
	dc.Resources = []kmsg.DescribeConfigsRequestResource{
		{ResourceType: kmsg.ConfigResourceTypeBrokerLogger, ResourceName: "1"},
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: OffsetsTopic},
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: ""},
		{ResourceType: kmsg.ConfigResourceTypeGroupConfig, ResourceName: "none"},
	}
	dcr := k.describeConfigs(dc)
	want := []int16{kafkaInvalidRequest, kafkaUnknownTopic, kafkaUnknownTopic, 0}
	for i, r := range dcr.Resources {
		if r.ErrorCode != want[i] || r.ErrorCode == 0 && len(r.Configs) != 0 {
			t.Errorf("DescribeConfigs of %v %q: error %d, %d configs; want error %d", r.ResourceType, r.ResourceName, r.ErrorCode, len(r.Configs), want[i])
		}
	}

	dtp := kmsg.NewPtrDescribeTopicPartitionsRequest()
	dtp.ResponsePartitionLimit = -3
	dtp.Topics = []kmsg.DescribeTopicPartitionsRequestTopic{{Topic: ""}, {Topic: MetaTopic}, {Topic: "odd"}, {Topic: "odd"}}
	r := k.describeTopicPartitions(dtp)
	var codes []int16
	for _, rt := range r.Topics {
		codes = append(codes, rt.ErrorCode)
	}
	if len(r.Topics) != 3 || r.NextCursor != nil || codes[0] == 0 || codes[1] == 0 || codes[2] != 0 || len(r.Topics[2].Partitions) != 2 {
		t.Errorf("DescribeTopicPartitions of \"\", %s and odd twice: %+v (codes %v)", MetaTopic, r, codes)
	}
	dtp.Cursor = &kmsg.DescribeTopicPartitionsRequestCursor{Topic: "zzz", Partition: 7}
	if r := k.describeTopicPartitions(dtp); len(r.Topics) != 0 || r.NextCursor != nil {
		t.Errorf("DescribeTopicPartitions from a cursor past every topic: %+v", r)
	}

	cl := kmsg.NewPtrDescribeClusterRequest()
	cl.Version, cl.EndpointType = 1, 2
	if r := k.describeCluster(cl); r.ErrorCode != kafkaInvalidRequest || len(r.Brokers) != 0 {
		t.Errorf("DescribeCluster of controllers: %+v", r)
	}
}
