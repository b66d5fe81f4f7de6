package actors

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// startKafkaNode starts a node with a client port and a Kafka listener, and a topic.
func startKafkaNode(t *testing.T, topic string, partitions int32) *Node {
	t.Helper()
	return startKafkaNodeSet(t, topic, partitions, nil)
}

// startKafkaNodeSet is startKafkaNode with set (if not nil) changing the node's config first;
// no topic is created if topic is empty.
func startKafkaNodeSet(t *testing.T, topic string, partitions int32, set func(*NodeConfig)) *Node {
	t.Helper()
	cfg := NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	if set != nil {
		set(&cfg)
	}
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if topic != "" {
		if err := n.CreateTopic(topic, partitions); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestKafkaProduceFetch: franz-go's kgo produces to a Weir topic through the Kafka listener with
// every compression codec, Weir's own client reads the records back (value, key, header,
// timestamp), and kgo consumes them from the start of every partition, along with records
// Weir's client produced.
func TestKafkaProduceFetch(t *testing.T) {
	n := startKafkaNode(t, "kt", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	const perCodec = 200
	ts := time.UnixMilli(1_700_000_000_000)
	for ci, codec := range codecs {
		cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DisableIdempotentWrite(),
			kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic("kt"), kgo.RequiredAcks(kgo.AllISRAcks()))
		if err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := range perCodec {
			id := ci*perCodec + i
			recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(id%7)), Value: []byte(strconv.Itoa(id)),
				Headers: []kgo.RecordHeader{{Key: "codec", Value: []byte(strconv.Itoa(ci))}}, Timestamp: ts.Add(time.Duration(id) * time.Millisecond)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("codec %d: produce: %v", ci, err)
		}
		cl.Close()
	}
	total := len(codecs) * perCodec

	// Weir's client sees what kgo produced.
	wc, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	seen := map[int]bool{}
	for p := range int32(3) {
		cons, err := wc.NewConsumer("kt", p, client.From(client.Earliest()), client.MaxWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for idle := 0; idle < 3; {
			msgs, err := cons.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				idle++
			}
			for _, m := range msgs {
				id, _ := strconv.Atoi(string(m.Value))
				if string(m.Key) != "k"+strconv.Itoa(id%7) || m.Headers["codec"] != strconv.Itoa(id/perCodec) || m.Timestamp.UnixMilli() != ts.UnixMilli()+int64(id) {
					t.Errorf("record %d read back as key %q headers %v timestamp %v", id, m.Key, m.Headers, m.Timestamp)
				}
				seen[id] = true
			}
		}
		cons.Close()
	}
	if len(seen) != total {
		t.Fatalf("Weir's client read %d distinct records, want %d", len(seen), total)
	}

	// Records from Weir's client, then kgo reads everything from the start.
	p, err := wc.NewProducer("kt")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		p.ProduceAsync(ctx, storage.Record{Key: []byte("w"), Value: []byte(strconv.Itoa(total + i))}, func(_ int64, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	offsets := map[string]map[int32]kgo.Offset{"kt": {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart()}}
	cons, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.ConsumePartitions(offsets), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := map[int]int{}
	for len(got) < total+100 && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		for _, e := range fs.Errors() {
			t.Fatalf("kgo fetch: topic %s partition %d: %v", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			id, _ := strconv.Atoi(string(r.Value))
			got[id]++
		})
	}
	for id := range total + 100 {
		if got[id] != 1 {
			t.Errorf("kgo read record %d %d times", id, got[id])
		}
	}
	t.Logf("kgo produced %d records with %d codecs, Weir's client 100; kgo read %d", total, len(codecs), len(got))
}

// TestKafkaBadFrames: an oversized frame, a malformed request and an API that is not served each
// close only their own connection (with a log line); the node goes on serving Kafka clients.
func TestKafkaBadFrames(t *testing.T) {
	n := startKafkaNode(t, "kb", 1)
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	header := func(key, version int16) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		b = binary.BigEndian.AppendUint32(b, 7)
		return binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	}
	for name, send := range map[string][]byte{
		"oversized":     binary.BigEndian.AppendUint32(nil, 200<<20),
		"negative size": binary.BigEndian.AppendUint32(nil, 0xfffffff0),
		"short header":  frame([]byte{0, 1, 0}),
		"malformed":     frame(append(header(0, 9), 0xff, 0xff, 0xff)),      // produce v9, a body that does not decode
		"not served":    frame(append(header(9999, 0), make([]byte, 8)...)), // an unknown API key
		"old produce":   frame(append(header(0, 1), make([]byte, 8)...)),    // a version not served
	} {
		c, err := net.Dial("tcp", n.KafkaAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("%s: read %v, want the connection closed", name, err)
		}
		c.Close()
	}
	// A served API at a version not served, whose response has an error code: answered
	// UNSUPPORTED_VERSION, and the connection stays open.
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hb := append(header(int16(kmsg.Heartbeat), 50), 0) // version 50 (flexible): empty tagged fields
	if _, err := c.Write(frame(hb)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("heartbeat v50: %v, want an answer", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	hr := kmsg.NewPtrHeartbeatResponse()
	hr.Version = 50
	if corr := binary.BigEndian.Uint32(body); corr != 7 {
		t.Fatalf("heartbeat v50: correlation id %d, want 7", corr)
	}
	if err := hr.ReadFrom(body[5:]); err != nil || hr.ErrorCode != kafkaUnsupportedVersion {
		t.Fatalf("heartbeat v50: error code %d (%v), want UNSUPPORTED_VERSION", hr.ErrorCode, err)
	}

	// A Kafka API not served at all (DescribeAcls): answered UNSUPPORTED_VERSION too.
	acl := kmsg.NewPtrDescribeACLsRequest()
	acl.Version = 1
	if _, err := c.Write(frame(acl.AppendTo(header(int16(kmsg.DescribeACLs), 1)))); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("describe ACLs: %v, want an answer", err)
	}
	body = make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	ar := kmsg.NewPtrDescribeACLsResponse()
	ar.Version = 1
	if err := ar.ReadFrom(body[4:]); err != nil || ar.ErrorCode != kafkaUnsupportedVersion {
		t.Fatalf("describe ACLs: error code %d (%v), want UNSUPPORTED_VERSION", ar.ErrorCode, err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DisableIdempotentWrite(), kgo.DefaultProduceTopic("kb"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("still serving")}).FirstErr(); err != nil {
		t.Fatalf("produce after the bad frames: %v", err)
	}
}

// FuzzKafkaRequest feeds request frames to the header parser, the request decoders and the
// record batch conversion: none may panic, whatever the bytes.
func FuzzKafkaRequest(f *testing.F) {
	batch := rvBatch(0, nil, kmsg.Record{Key: []byte("k"), Value: []byte("v"), Headers: []kmsg.Header{{Key: "h", Value: []byte("x")}}})
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 1000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "t"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = batch
	pt.Partitions = append(pt.Partitions, pp)
	req.Topics = append(req.Topics, pt)
	hdr := binary.BigEndian.AppendUint16(nil, 0)
	hdr = binary.BigEndian.AppendUint16(hdr, 9)
	hdr = binary.BigEndian.AppendUint32(hdr, 1)
	hdr = binary.BigEndian.AppendUint16(hdr, 0xffff)
	hdr = append(hdr, 0) // tagged fields
	f.Add(req.AppendTo(hdr))
	f.Add(batch)
	if _, _, err := kafkaToWeir(batch); err != nil {
		f.Fatalf("the seed batch: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = kafkaToWeir(b)
		_, r, rest, err := parseKafkaHeader(b)
		if err != nil || r == nil {
			return
		}
		if r.ReadFrom(rest) != nil {
			return
		}
		if pr, ok := r.(*kmsg.ProduceRequest); ok {
			for _, t := range pr.Topics {
				for _, p := range t.Partitions {
					_, _, _ = kafkaToWeir(p.Records)
				}
			}
		}
	})
}

// TestKafkaConsumerGroup: two kgo consumers in one group share a topic's partitions through
// Weir's coordinator, read every record once between them, and commit; the group's committed
// offsets, read with Weir's client, are the ends of the partitions; a Weir group consumer in the
// same group then has nothing left to read.
func TestKafkaConsumerGroup(t *testing.T) {
	n := startKafkaNode(t, "kg", 4)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	wc, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	const total = 2000
	var mu sync.Mutex
	got := map[int]int{}
	per := map[string]int{}
	consume := func(name string, stop <-chan struct{}, done chan<- error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("kg"),
			kgo.Balancers(kgo.RangeBalancer()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID(name))
		if err != nil {
			done <- err
			return
		}
		defer cl.Close() // leaves the group
		for {
			select {
			case <-stop:
				done <- cl.CommitUncommittedOffsets(ctx)
				return
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fs := cl.PollFetches(pctx)
			pcancel()
			fs.EachRecord(func(r *kgo.Record) {
				id, _ := strconv.Atoi(string(r.Value))
				mu.Lock()
				got[id]++
				per[name]++
				mu.Unlock()
			})
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				t.Logf("%s: commit: %v (a rebalance)", name, err)
			}
		}
	}
	stop := make(chan struct{})
	done := make(chan error, 2)
	go consume("a", stop, done)
	go consume("b", stop, done)
	// Records arrive over about 3 s, so that both members have partitions while they come.
	p, err := wc.NewProducer("kg", client.Linger(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		p.ProduceAsync(ctx, storage.Record{Key: []byte(strconv.Itoa(i % 13)), Value: []byte(strconv.Itoa(i))}, func(_ int64, err error) {
			if err != nil {
				t.Error(err)
			}
		})
		if i%20 == 19 {
			time.Sleep(30 * time.Millisecond)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == total {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the group read %d of %d records", n, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("consumer: %v", err)
		}
	}
	dups := 0
	for _, c := range got {
		dups += c - 1
	}
	t.Logf("two kgo consumers read %d records (a %d, b %d; %d read twice, during rebalances)", len(got), per["a"], per["b"], dups)
	if per["a"] == 0 || per["b"] == 0 {
		t.Errorf("one member read nothing (a %d, b %d): the group did not share the partitions", per["a"], per["b"])
	}
	offs, err := wc.FetchCommitted(ctx, "g", wire.TopicPartitions{Topic: "kg", Partitions: []int32{0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, o := range offs {
		sum += o.Offset
	}
	if sum != total {
		t.Fatalf("the group committed %d records' offsets (%v), want %d", sum, offs, total)
	}
}

// TestKafkaAdminAndIdempotence: CreateTopics (with a retention config, and refusals named),
// an idempotent kgo producer (InitProducerId gives it an id Weir's partitions track), and
// DeleteTopics, all through the Kafka listener.
func TestKafkaAdminAndIdempotence(t *testing.T) {
	n := startKafkaNode(t, "unused", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("ka"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	for _, c := range []struct {
		name       string
		partitions int32
		config     string
	}{{"ka", 3, "3600000"}, {"bad", 0, ""}, {"badcfg", 1, "x"}} {
		ct := kmsg.NewCreateTopicsRequestTopic()
		ct.Topic, ct.NumPartitions, ct.ReplicationFactor = c.name, c.partitions, -1
		if c.config != "" {
			v := c.config
			ct.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "retention.ms", Value: &v}}
		}
		create.Topics = append(create.Topics, ct)
	}
	cres, err := create.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int16{"ka": 0, "bad": kafkaInvalidPartitions, "badcfg": kafkaInvalidConfig}
	for _, rt := range cres.Topics {
		if rt.ErrorCode != want[rt.Topic] {
			t.Errorf("create %s: error %d, want %d (%v)", rt.Topic, rt.ErrorCode, want[rt.Topic], rt.ErrorMessage)
		}
	}
	if tm, ok := n.Topic("ka"); !ok || tm.Partitions != 3 || tm.Config.RetentionMs != 3600000 {
		t.Fatalf("topic ka after CreateTopics: %+v, %v", tm, ok)
	}

	// kgo is idempotent by default: it asks for a producer id first.
	var recs []*kgo.Record
	for i := range 500 {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("idempotent produce: %v", err)
	}
	wc, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	var total int64
	for p := range int32(3) {
		end, err := wc.ListOffsets(ctx, "ka", p, client.Latest())
		if err != nil {
			t.Fatal(err)
		}
		total += end
	}
	if total != 500 {
		t.Fatalf("topic ka holds %d records, want 500", total)
	}

	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TopicNames = []string{"ka", "nope"} // up to v5; by name in Topics from v6
	for _, name := range del.TopicNames {
		dt := kmsg.NewDeleteTopicsRequestTopic()
		dt.Topic = &name
		del.Topics = append(del.Topics, dt)
	}
	dres, err := del.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(dres.Topics) != 2 {
		t.Fatalf("DeleteTopics answered %d topics, want 2", len(dres.Topics))
	}
	for _, rt := range dres.Topics {
		if w := map[string]int16{"ka": 0, "nope": kafkaUnknownTopic}[*rt.Topic]; rt.ErrorCode != w {
			t.Errorf("delete %s: error %d, want %d", *rt.Topic, rt.ErrorCode, w)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := n.Topic("ka"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("topic ka still exists 10 s after DeleteTopics")
		}
	}
}

func TestParsePlain(t *testing.T) {
	for in, want := range map[string]string{
		"\x00alice\x00pw":      "alice/pw",
		"alice\x00alice\x00pw": "alice/pw",
		"bob\x00alice\x00pw":   "error", // acting as another user
		"\x00\x00pw":           "error", // no user
		"alice\x00pw":          "error",
		"\x00a\x00b\x00c":      "error",
	} {
		u, p, err := parsePlain([]byte(in))
		got := u + "/" + p
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("parsePlain(%q) = %q, want %q", in, got, want)
		}
	}
}

// kafkaRoundTrip sends req on c with version in its header (request header v1, or v2 when
// flexible) and its body at req's own version, and decodes the answer into resp at resp's
// version (ApiVersions answers with header v0 whatever the version).
func kafkaRoundTrip(t *testing.T, c net.Conn, version int16, req kmsg.Request, resp kmsg.Response) {
	t.Helper()
	b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, 11)
	b = binary.BigEndian.AppendUint16(b, 4)
	b = append(b, "test"...)
	if req.IsFlexible() {
		b = append(b, 0) // no tagged fields
	}
	b = req.AppendTo(b)
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("API %d v%d: %v, want an answer", req.Key(), version, err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	if corr := binary.BigEndian.Uint32(body); corr != 11 {
		t.Fatalf("correlation id %d, want 11", corr)
	}
	body = body[4:]
	if resp.IsFlexible() && resp.Key() != int16(kmsg.ApiVersions) {
		body = body[1:] // empty tagged fields of header v1
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("API %d v%d: the answer does not decode: %v", req.Key(), version, err)
	}
}

// TestKafkaApiVersions: ApiVersions at every version Kafka 4 clients send (the Java clients of
// Kafka 4.4 open with v5: they were answered UNSUPPORTED_VERSION, so every connection took
// two round trips); v5 with another cluster id or node id is answered REBOOTSTRAP_REQUIRED
// (KIP-1242); a version past those served is answered at v0 with UNSUPPORTED_VERSION and the list.
func TestKafkaApiVersions(t *testing.T) {
	n := startKafkaNode(t, "kv", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	self := n.kafka.brokerID(n.raftID)
	cluster, other := "weir", "another-cluster"
	const rebootstrapRequired = 129
	for _, tc := range []struct {
		name    string
		version int16
		cluster *string
		node    int32
		code    int16
	}{
		{"v3", 3, nil, -1, 0},
		{"v4", 4, nil, -1, 0},
		{"v5 without ids", 5, nil, -1, 0},
		{"v5 to this node", 5, &cluster, self, 0},
		{"v5 to another node", 5, &cluster, self + 1, rebootstrapRequired},
		{"v5 to another cluster", 5, &other, self, rebootstrapRequired},
		{"v6 (not served)", 6, nil, -1, kafkaUnsupportedVersion},
	} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = min(tc.version, 5) // a v6 body: the newest kmsg knows (it is not read)
		req.ClusterID, req.NodeID = tc.cluster, tc.node
		req.ClientSoftwareName, req.ClientSoftwareVersion = "weir-test", "1"
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = req.Version
		if tc.code == kafkaUnsupportedVersion {
			resp.Version = 0 // answered at v0
		}
		kafkaRoundTrip(t, c, tc.version, req, resp)
		if resp.ErrorCode != tc.code {
			t.Errorf("%s: error code %d, want %d", tc.name, resp.ErrorCode, tc.code)
		}
		served := false
		for _, a := range resp.ApiKeys {
			if a.ApiKey == int16(kmsg.ApiVersions) {
				served = a.MinVersion == 0 && a.MaxVersion == 5
			}
		}
		if !served {
			t.Errorf("%s: ApiVersions not listed as 0-5 in %+v", tc.name, resp.ApiKeys)
		}
	}
}

// TestKafkaPipelinedProduce: a client that pipelines produce requests on one connection (the
// Java producer keeps up to 5 in flight) gets every answer in the order sent, with the batches
// appended in that order; requests of other APIs between them are answered in their place.
func TestKafkaPipelinedProduce(t *testing.T) {
	n := startKafkaNode(t, "kp", 2)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := func(corr int32, req kmsg.Request) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
		b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
		b = binary.BigEndian.AppendUint32(b, uint32(corr))
		b = binary.BigEndian.AppendUint16(b, 0xffff) // null client id
		if req.IsFlexible() {
			b = append(b, 0)
		}
		b = req.AppendTo(b)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	const produces = 60
	var out []byte
	kinds := map[int32]string{}
	corr := int32(0)
	for i := range produces {
		batch := rvBatch(0, nil, kmsg.Record{Value: []byte(strconv.Itoa(i))})
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, -1, 10000
		pt := kmsg.NewProduceRequestTopic()
		pt.Topic = "kp"
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = int32(i%2), batch
		pt.Partitions = append(pt.Partitions, pp)
		req.Topics = append(req.Topics, pt)
		corr++
		kinds[corr] = "produce"
		out = append(out, frame(corr, req)...)
		if i%10 == 9 {
			md := kmsg.NewPtrMetadataRequest()
			md.Version = 12
			corr++
			kinds[corr] = "metadata"
			out = append(out, frame(corr, md)...)
		}
	}
	if _, err := c.Write(out); err != nil { // every request before reading any answer
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	next := map[int32]int64{} // partition -> the base offset its next produce answer must carry
	for want := int32(1); want <= corr; want++ {
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			t.Fatalf("answer %d of %d: %v", want, corr, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		if got := int32(binary.BigEndian.Uint32(body)); got != want {
			t.Fatalf("answer with correlation id %d where %d (%s) was due", got, want, kinds[want])
		}
		if kinds[want] == "metadata" {
			md := kmsg.NewPtrMetadataResponse()
			md.Version = 12
			if err := md.ReadFrom(body[5:]); err != nil || len(md.Brokers) != 1 {
				t.Fatalf("metadata answer %d: %v, %d brokers", want, err, len(md.Brokers))
			}
			continue
		}
		pr := kmsg.NewPtrProduceResponse()
		pr.Version = 9
		if err := pr.ReadFrom(body[5:]); err != nil { // after the correlation id and empty tagged fields
			t.Fatalf("produce answer %d: %v", want, err)
		}
		p := pr.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != next[p.Partition] {
			t.Fatalf("produce answer %d: partition %d error %d base offset %d, want offset %d", want, p.Partition, p.ErrorCode, p.BaseOffset, next[p.Partition])
		}
		next[p.Partition]++
	}
	if next[0]+next[1] != produces {
		t.Fatalf("%d produce answers, want %d", next[0]+next[1], produces)
	}
}

// TestKafkaAnswerNotHeldBehindFetch: a produce answer goes out at once even when the request
// read after it is a fetch that long-polls (an answer left in the connection's buffer would wait
// for the fetch's MaxWaitMillis).
func TestKafkaAnswerNotHeldBehindFetch(t *testing.T) {
	n := startKafkaNode(t, "kh", 2)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := func(corr int32, req kmsg.Request) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
		b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
		b = binary.BigEndian.AppendUint32(b, uint32(corr))
		b = binary.BigEndian.AppendUint16(b, 0xffff)
		if req.IsFlexible() {
			b = append(b, 0)
		}
		b = req.AppendTo(b)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	rb := kmsg.RecordBatch{Magic: 2, PartitionLeaderEpoch: -1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1}
	rec := kmsg.Record{Value: []byte("v")}
	body := rec.AppendTo(nil)
	rb.Records = append(binary.AppendVarint(nil, int64(len(body)-1)), body[1:]...)
	batch := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(batch[8:12], uint32(len(batch)-12))
	binary.BigEndian.PutUint32(batch[17:21], crc32.Checksum(batch[21:], castagnoliTable))
	prod := kmsg.NewPtrProduceRequest()
	prod.Version, prod.Acks, prod.TimeoutMillis = 9, -1, 10000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "kh"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Partition, pp.Records = 0, batch
	pt.Partitions = append(pt.Partitions, pp)
	prod.Topics = append(prod.Topics, pt)

	fetch := kmsg.NewPtrFetchRequest() // partition 1 stays empty: the fetch waits its 4 s
	fetch.Version, fetch.ReplicaID, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 12, -1, 4000, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "kh"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes, fp.CurrentLeaderEpoch, fp.LogStartOffset = 1, 0, 1<<20, -1, -1
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	start := time.Now()
	if _, err := c.Write(append(frame(1, prod), frame(2, fetch)...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatal(err)
	}
	ans := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, ans); err != nil {
		t.Fatal(err)
	}
	if corr := binary.BigEndian.Uint32(ans); corr != 1 {
		t.Fatalf("first answer has correlation id %d, want 1 (the produce)", corr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the produce answer came after %v: held behind the fetch's long poll", d)
	}
	// The fetch's answer, after its long poll (the node is not closed with the fetch waiting).
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatal(err)
	}
	ans = make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, ans); err != nil {
		t.Fatal(err)
	}
	if corr := binary.BigEndian.Uint32(ans); corr != 2 {
		t.Fatalf("second answer has correlation id %d, want 2 (the fetch)", corr)
	}
}
