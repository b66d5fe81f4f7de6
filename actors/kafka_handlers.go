package actors

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"strconv"
	"unsafe"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// Kafka error codes used here.
const (
	kafkaCorruptMessage        = 2
	kafkaUnknownTopic          = 3
	kafkaLeaderNotAvailable    = 5
	kafkaInvalidRequest        = 42
	kafkaUnsupportedCompressor = 76
	kafkaUnsupportedForFormat  = 43
)

// metadata answers each topic named once, in the order first named: a topic named again (or
// many empty names, the same unknown topic) is not described again, as Kafka answers from the
// set of names. A 200 KB request of empty names was answered with one entry per name: 98 MB
// allocated (TestKafkaRepeatedNamesBounded).
func (k *kafkaListener) metadata(r *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	var names []string
	all := r.Topics == nil
	seen := map[string]bool{}
	for _, t := range r.Topics {
		if t.Topic != nil && !seen[*t.Topic] {
			seen[*t.Topic] = true
			names = append(names, *t.Topic)
		}
	}
	resp := kmsg.NewPtrMetadataResponse()
	self := k.brokerID(k.n.raftID)
	brokers := map[string]int32{} // node name -> broker id, for the nodes with a Kafka listener
	for _, m := range k.n.Members() {
		if m.Kafka != "" || m.ID == k.n.raftID {
			brokers[m.Node] = k.brokerID(m.ID)
		}
	}
	resp.Brokers = k.kafkaBrokers()
	cluster := kafkaClusterID
	resp.ClusterID = &cluster
	resp.ControllerID = self
	if !all && len(names) == 0 {
		return resp
	}
	md := k.srv.metadata(&wire.MetadataRequest{Topics: names})
	for _, ti := range md.Topics {
		t := kmsg.NewMetadataResponseTopic()
		name := ti.Name
		t.Topic = &name
		if ti.Err != nil {
			t.ErrorCode = kafkaCode(ti.Err)
			resp.Topics = append(resp.Topics, t)
			continue
		}
		for _, pi := range ti.Partitions {
			p := kmsg.NewMetadataResponseTopicPartition()
			p.Partition, p.Leader, p.LeaderEpoch = pi.Partition, -1, -1
			if pi.Leader == "" {
				p.ErrorCode = kafkaLeaderNotAvailable
			} else if id, ok := brokers[pi.Leader]; ok {
				p.Leader = id
			} else {
				// The leader has no Kafka listener (or is not in this node's view yet): this
				// node takes the partition's requests and forwards them.
				p.Leader = self
			}
			for _, node := range pi.Replicas {
				if id, ok := brokers[node]; ok {
					p.Replicas = append(p.Replicas, id)
				}
			}
			if len(p.Replicas) == 0 {
				p.Replicas = []int32{p.Leader}
			}
			p.ISR = p.Replicas
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// brokerID is the Kafka broker id of the node with raft id id: stable across restarts (the raft
// id lives in the data directory) and non-negative.
func (k *kafkaListener) brokerID(id uint64) int32 {
	return int32(id % (1<<31 - 1))
}

func splitHostPort(addr string) (string, int32) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, int32(n)
}

// produce converts each partition's record batches to one Weir batch and sends the batches to
// their partitions, in request order, before it returns; the function it returns waits for the
// partitions' replies and returns the response (at once for acks=0, which waits for none).
// held is the size of the converted batches, kept until the partitions answer.
func (k *kafkaListener) produce(r *kmsg.ProduceRequest) (wait func() *kmsg.ProduceResponse, held int) {
	resp := kmsg.NewPtrProduceResponse()
	var waits []func()
	acks := wire.Acks(r.Acks)
	if acks != wire.AcksNone && acks != wire.AcksLeader && acks != wire.AcksAll {
		acks = wire.Acks(-2) // answered INVALID_REQUEST per partition by Server.produce
	}
	budget := maxKafkaFrame // decompressed bytes for the whole request
	for _, t := range r.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		req := &wire.ProduceRequest{Topic: t.Topic, Acks: acks, TimeoutMs: r.TimeoutMillis}
		_, known := k.n.Topic(t.Topic)
		seen := map[int32]bool{}
		var idx []int // response partition index of each request batch
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = p.Partition, -1, -1, -1
			if !known { // nothing is decoded for a topic that does not exist
				rp.ErrorCode = kafkaUnknownTopic
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			if seen[p.Partition] {
				rp.ErrorCode = kafkaInvalidRequest
				msg := "the partition is named twice in one request"
				rp.ErrorMessage = &msg
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			seen[p.Partition] = true
			batch, code, err := convertBatches(p.Records, &budget)
			if err != nil {
				rp.ErrorCode = code
				msg := err.Error()
				rp.ErrorMessage = &msg
				k.logger.Info("kafka: produce refused", "topic", t.Topic, "partition", p.Partition, "err", err)
			} else {
				req.Batches = append(req.Batches, wire.PartitionBatch{Partition: p.Partition, Batch: batch})
				held += len(batch)
				idx = append(idx, len(rt.Partitions))
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
		if len(req.Batches) == 0 {
			continue
		}
		ti, ans := len(resp.Topics)-1, k.srv.produce(req)
		waits = append(waits, func() {
			res := ans().(*wire.ProduceResponse)
			rt := &resp.Topics[ti]
			for i, j := range idx {
				rp := &rt.Partitions[j]
				if res.Err != nil {
					rp.ErrorCode = kafkaCode(res.Err)
					continue
				}
				if i < len(res.Results) {
					rp.BaseOffset, rp.ErrorCode = res.Results[i].BaseOffset, kafkaCode(res.Results[i].Err)
					if res.Results[i].Err != nil {
						msg := res.Results[i].Err.Error()
						rp.ErrorMessage = &msg
					}
				}
			}
		})
	}
	return func() *kmsg.ProduceResponse {
		for _, w := range waits {
			w()
		}
		return resp
	}, held
}

// kafkaToWeir checks the record batches (v2) of one partition and re-encodes their records as
// one Weir batch; on error it also returns the Kafka error code to answer.
func kafkaToWeir(data []byte) ([]byte, int16, error) {
	budget := maxKafkaFrame
	return convertBatches(data, &budget)
}

// convertBatches is kafkaToWeir drawing the decompressed bytes from budget, which a whole
// request shares.
func convertBatches(data []byte, budget *int) ([]byte, int16, error) {
	bb := storage.NewBatchBuilder()
	var kr kmsg.Record
	batches := 0
	for len(data) > 0 {
		if len(data) < 61 {
			return nil, kafkaCorruptMessage, fmt.Errorf("record batch of %d bytes: shorter than its header", len(data))
		}
		size := 12 + int64(int32(binary.BigEndian.Uint32(data[8:12])))
		if size < 61 || size > int64(len(data)) {
			return nil, kafkaCorruptMessage, fmt.Errorf("record batch length %d: %d bytes left", size-12, len(data))
		}
		raw := data[:size]
		data = data[size:]
		if raw[16] != 2 {
			return nil, kafkaUnsupportedForFormat, fmt.Errorf("record batch magic %d: only v2 (magic 2) is served", raw[16])
		}
		if want, got := binary.BigEndian.Uint32(raw[17:21]), crc32.Checksum(raw[21:], castagnoliTable); want != got {
			return nil, kafkaCorruptMessage, fmt.Errorf("record batch CRC32C %08x, computed %08x", want, got)
		}
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(raw); err != nil {
			return nil, kafkaCorruptMessage, fmt.Errorf("record batch: %v", err)
		}
		if rb.Attributes&0x30 != 0 {
			return nil, kafkaInvalidRequest, errors.New("transactional and control batches are not served")
		}
		recs, err := decompressLimit(int(rb.Attributes&7), rb.Records, *budget)
		if err == nil && rb.Attributes&7 != 0 {
			*budget -= len(recs)
		}
		if err != nil {
			code := int16(kafkaCorruptMessage)
			if errors.Is(err, errUnknownCodec) {
				code = kafkaUnsupportedCompressor
			}
			return nil, code, err
		}
		batches++
		// The stored records take about as many bytes as Kafka's: room for them at once (plus
		// an eighth for the larger per-record overhead) spares the growing buffer's copies.
		bb.Grow(len(recs) + len(recs)/8 + 64)
		if rb.ProducerID >= 0 {
			if batches > 1 {
				return nil, kafkaInvalidRequest, errors.New("more than one idempotent record batch for a partition in one request")
			}
			if rb.ProducerID >= 1<<46 || rb.ProducerEpoch < 0 {
				return nil, kafkaInvalidRequest, fmt.Errorf("producer id %d epoch %d: not one InitProducerId gave", rb.ProducerID, rb.ProducerEpoch)
			}
			// Weir tracks producers by id alone: each epoch of a Kafka producer id is its own
			// Weir producer, so a client that bumps its epoch (KIP-360) starts a new sequence.
			bb.SetProducer(rb.ProducerID<<16|int64(uint16(rb.ProducerEpoch)), rb.FirstSequence)
		}
		for i := range rb.NumRecords {
			l, n := binary.Varint(recs)
			if n <= 0 || l < 0 || int64(len(recs)-n) < l {
				return nil, kafkaCorruptMessage, fmt.Errorf("record %d of %d: bad length", i, rb.NumRecords)
			}
			rec, err := kafkaRecord(&kr, recs[:n+int(l)], budget)
			if err != nil {
				return nil, kafkaCorruptMessage, fmt.Errorf("record %d of %d: %v", i, rb.NumRecords, err)
			}
			recs = recs[n+int(l):]
			rec.Timestamp += rb.FirstTimestamp
			if rec.Timestamp < 0 {
				rec.Timestamp = 0
			}
			if err := bb.Add(rec); err != nil {
				return nil, kafkaCorruptMessage, fmt.Errorf("record %d of %d: %v", i, rb.NumRecords, err)
			}
		}
	}
	if bb.Len() == 0 {
		return nil, kafkaCorruptMessage, errors.New("no records")
	}
	return bb.Build(), 0, nil
}

// kafkaRecord decodes one record of a v2 record batch with kmsg (b is the record with its length
// prefix; kr is reused from record to record, so that its headers slice is made once) into what
// Weir keeps of it: Key and Value are slices of b (nil for a null one), Timestamp is the
// record's timestamp delta, and a header key given twice keeps its last value.
//
// kmsg makes kr's headers slice at the length the record claims (a kmsg.Header, 40 bytes, per
// byte left at most) before it reads them: a record of 1 MiB of empty headers (2 bytes each)
// took 20 MB for the slice, and a small gzip batch that decompresses to 100 MiB of them would
// take 2 GB. So the claimed count is read first (with kbin's reader, the fields ReadFrom reads
// before it), and a slice larger than kr's is drawn from budget, the request's bytes to make.
func kafkaRecord(kr *kmsg.Record, b []byte, budget *int) (storage.Record, error) {
	if n := claimedHeaders(b); n > cap(kr.Headers) {
		size := n * kmsgHeaderSize
		if size > *budget {
			return storage.Record{}, fmt.Errorf("%d headers: over the %d bytes left to decode the request", n, *budget)
		}
		*budget -= size
	}
	if err := kr.ReadFrom(b); err != nil {
		return storage.Record{}, errRecordCutShort // kmsg's error speaks of a response
	}
	rec := storage.Record{Key: kr.Key, Value: kr.Value, Timestamp: kr.TimestampDelta64}
	if len(kr.Headers) > 0 {
		rec.Headers = make(map[string]string, min(len(kr.Headers), 64)) // keys may repeat
		for _, h := range kr.Headers {
			rec.Headers[h.Key] = string(h.Value)
		}
	}
	return rec, nil
}

var errRecordCutShort = errors.New("record cut short or a bad varint")

// kmsgHeaderSize is what kmsg.Record.ReadFrom makes per header a record claims.
const kmsgHeaderSize = int(unsafe.Sizeof(kmsg.Header{}))

// claimedHeaders is the number of headers record b (with its length prefix) claims, read as
// kmsg.Record.ReadFrom reads it; 0 when ReadFrom would fail before making its headers slice.
func claimedHeaders(b []byte) int {
	r := kbin.Reader{Src: b}
	r.Varint()      // length
	r.Int8()        // attributes
	r.Varlong()     // timestamp delta
	r.Varint()      // offset delta
	r.VarintBytes() // key
	r.VarintBytes() // value
	n := r.VarintArrayLen()
	if !r.Ok() || n < 0 {
		return 0
	}
	return int(n)
}

var errUnknownCodec = errors.New("unknown compression codec")

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func decompress(codec int, b []byte) ([]byte, error) { return decompressLimit(codec, b, maxKafkaFrame) }

// decompressLimit decompresses records of codec, refusing more than limit bytes of output
// before allocating them.
func decompressLimit(codec int, b []byte, limit int) ([]byte, error) {
	switch codec {
	case 0:
		return b, nil
	case 1:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return readAllLimited(zr, limit)
	case 2:
		if bytes.HasPrefix(b, xerialMagic) && len(b) >= 16 {
			var out []byte
			for b = b[16:]; len(b) > 0; {
				if len(b) < 4 {
					return nil, errors.New("snappy: xerial block cut short")
				}
				n := int(binary.BigEndian.Uint32(b))
				if n > len(b)-4 {
					return nil, errors.New("snappy: xerial block past the end")
				}
				dl, err := snappy.DecodedLen(b[4 : 4+n])
				if err != nil {
					return nil, fmt.Errorf("snappy: %w", err)
				}
				if dl > limit-len(out) {
					return nil, fmt.Errorf("snappy: records over %d bytes decompressed", limit)
				}
				d, err := snappy.Decode(nil, b[4:4+n])
				if err != nil {
					return nil, fmt.Errorf("snappy: %w", err)
				}
				out = append(out, d...)
				b = b[4+n:]
			}
			return out, nil
		}
		if n, err := snappy.DecodedLen(b); err != nil || n > limit {
			return nil, fmt.Errorf("snappy: bad block, or over %d bytes decompressed (%v)", limit, err)
		}
		d, err := snappy.Decode(nil, b)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		return d, nil
	case 3:
		return readAllLimited(lz4.NewReader(bytes.NewReader(b)), limit)
	case 4:
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderMaxMemory(uint64(max(limit, 1))))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		return readAllLimited(zr, limit)
	}
	return nil, fmt.Errorf("%w %d", errUnknownCodec, codec)
}

func readAllLimited(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("records over %d bytes decompressed (in one request)", limit)
	}
	return b, nil
}

// listOffsets answers each partition of the request; a partition named again with the same
// timestamp is answered as the first time, without another lookup (each is a round trip to its
// replica, and a max timestamp some 65), so a request naming a partition over and over costs
// its answer's bytes only.
func (k *kafkaListener) listOffsets(r *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := kmsg.NewPtrListOffsetsResponse()
	type lookup struct {
		tp
		ts int64
	}
	answered := map[lookup]kmsg.ListOffsetsResponseTopicPartition{}
	for _, t := range r.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			key := lookup{tp{t.Topic, p.Partition}, p.Timestamp}
			rp, ok := answered[key]
			if !ok {
				rp = k.listOffset(r.Version, t.Topic, p)
				answered[key] = rp
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// listOffset answers one partition of a ListOffsets request of version v.
func (k *kafkaListener) listOffset(v int16, topic string, p kmsg.ListOffsetsRequestTopicPartition) kmsg.ListOffsetsResponseTopicPartition {
	rp := kmsg.NewListOffsetsResponseTopicPartition()
	rp.Partition, rp.Timestamp, rp.Offset, rp.LeaderEpoch = p.Partition, -1, -1, -1
	req := &wire.ListOffsetsRequest{Topic: topic, Partition: p.Partition}
	switch {
	case p.Timestamp == -2, p.Timestamp == -4 && v >= 8:
		// -4: the earliest offset kept locally; Weir keeps every record locally.
		req.Spec = wire.OffsetEarliest
	case p.Timestamp == -1:
		req.Spec = wire.OffsetLatest
	case p.Timestamp >= 0:
		req.Spec, req.Timestamp = wire.OffsetTimestamp, p.Timestamp
	case p.Timestamp == -5 && v >= 9:
		// The latest offset in tiered storage: Weir has none, and answers as Kafka does
		// without remote storage.
		return rp
	case p.Timestamp == -3 && v >= 7:
		rp.ErrorCode, rp.Offset, rp.Timestamp = k.maxTimestamp(topic, p.Partition)
		return rp
	default:
		rp.ErrorCode = kafkaInvalidRequest // -6 (earliest pending upload) and others are not served
		return rp
	}
	res := k.srv.listOffsets(req)().(*wire.ListOffsetsResponse)
	rp.ErrorCode, rp.Offset = kafkaCode(res.Err), res.Offset
	if req.Spec == wire.OffsetTimestamp && res.Err == nil {
		rp.Offset, rp.Timestamp = k.recordAt(topic, p.Partition, res.Offset)
	}
	return rp
}

// maxTimestamp answers ListOffsets' max timestamp (-3): the offset and timestamp of the first
// committed record that has the partition's largest timestamp; -1 and -1 when it has no record
// with a timestamp. Weir keeps no maximum per partition, so the timestamp is searched for by
// halving, with lookups by time (each finds the first record at least that new through the
// segments' time indexes): about 63 lookups.
func (k *kafkaListener) maxTimestamp(topic string, partition int32) (int16, int64, int64) {
	// The records below the end of this moment are searched: a lookup that finds none, or
	// finds one appended since, answers an offset at or past it.
	end := k.srv.listOffsets(&wire.ListOffsetsRequest{Topic: topic, Partition: partition, Spec: wire.OffsetLatest})().(*wire.ListOffsetsResponse)
	if end.Err != nil {
		return kafkaCode(end.Err), -1, -1
	}
	newer := func(ts int64) (int64, bool, *wire.Error) { // the first record at least ts new
		res := k.srv.listOffsets(&wire.ListOffsetsRequest{Topic: topic, Partition: partition, Spec: wire.OffsetTimestamp, Timestamp: ts})().(*wire.ListOffsetsResponse)
		if res.Err != nil {
			return -1, false, res.Err
		}
		return res.Offset, res.Offset < end.Offset, nil
	}
	if _, found, e := newer(0); e != nil || !found {
		return kafkaCode(e), -1, -1
	}
	lo, hi := int64(0), int64(math.MaxInt64) // a record is at least lo new; none is hi new
	if _, found, e := newer(hi); e != nil {
		return kafkaCode(e), -1, -1
	} else if found {
		lo = hi
	}
	for lo < hi-1 {
		mid := lo + (hi-lo)/2
		_, found, e := newer(mid)
		if e != nil {
			return kafkaCode(e), -1, -1
		}
		if found {
			lo = mid
		} else {
			hi = mid
		}
	}
	off, found, e := newer(lo)
	if e != nil || !found {
		return kafkaCode(e), -1, -1
	}
	return 0, off, lo
}

// recordAt returns the offset and timestamp of the record at offset, as ListOffsets by time
// answers them: -1 and -1 when there is none (the offset is the log's end).
func (k *kafkaListener) recordAt(topic string, partition int32, offset int64) (int64, int64) {
	res := k.srv.fetch(&wire.FetchRequest{Topic: topic, Partition: partition, Offset: offset, MaxBytes: 1})().(*wire.FetchResponse)
	if res.Err != nil || len(res.Batches) == 0 {
		return -1, -1
	}
	found, ts := int64(-1), int64(-1)
	_, _ = storage.DecodeBatches(res.Batches, offset, func(off int64, r storage.Record) error {
		if found < 0 {
			found, ts = off, r.Timestamp
		}
		return nil
	})
	return found, ts
}

// fetched is one partition's fetch result.
type fetched struct {
	t, p int // indexes in the request
	res  *wire.FetchResponse
}

// maxFetchWait bounds a Kafka fetch's long poll (Server.fetch refuses longer ones).
const maxFetchWait = 60_000

// fetch reads the partitions in request order, each up to its PartitionMaxBytes and what is left
// of the request's MaxBytes (a partition past that budget is not read: only its offsets are
// answered). If none had records or an error, it long-polls them all for MaxWaitMillis and
// answers as soon as one has records (or all have answered); the polls still parked then are
// withdrawn (their partitions answer them at once). A partition named twice is answered
// INVALID_REQUEST.
//
// The request's budget is drawn from the node's fetch memory first (fetchMemory): the fetch
// waits while less than fetchMemoryFloor of it is free, and reads no more than it was given.
// A long poll reads without it (it gave back what it had: it read nothing), and the answer then
// takes its size from it (fetchAnswer).
//
// A long poll ends early, with what was read before it, when quit is closed (the connection
// ended: its answer is not wanted); so does the wait for fetch memory, with no plan (nil).
func (k *kafkaListener) fetch(r *kmsg.FetchRequest, quit <-chan struct{}) *kafkaFetched {
	results := make([][]*wire.FetchResponse, len(r.Topics))
	dup := make([][]bool, len(r.Topics))
	seen := map[string]bool{}
	count, want := 0, 0
	for ti, t := range r.Topics {
		results[ti] = make([]*wire.FetchResponse, len(t.Partitions))
		dup[ti] = make([]bool, len(t.Partitions))
		for pi, p := range t.Partitions {
			key := t.Topic + "\x00" + strconv.Itoa(int(p.Partition))
			dup[ti][pi] = seen[key]
			seen[key] = true
			if !dup[ti][pi] {
				count++
				want = min(want+int(max(p.PartitionMaxBytes, 1)), math.MaxInt32)
			}
		}
	}
	budget := int(r.MaxBytes)
	if budget <= 0 {
		budget = 50 << 20
	}
	budget = min(budget, want)
	held := 0
	if count > 0 {
		var ok bool
		if budget, ok = k.fetchMem.acquire(budget, quit); !ok {
			return nil
		}
		held = budget
	}
	plan := &kafkaFetched{results: results, dup: dup}
	have := false
	for ti, t := range r.Topics {
		for pi, p := range t.Partitions {
			if dup[ti][pi] {
				continue
			}
			if budget <= 0 {
				// Past the response's budget: the offsets only, without reading the log.
				hw := k.srv.listOffsets(&wire.ListOffsetsRequest{Topic: t.Topic, Partition: p.Partition, Spec: wire.OffsetLatest})().(*wire.ListOffsetsResponse)
				results[ti][pi] = &wire.FetchResponse{HighWatermark: hw.Offset, StartOffset: -1, Err: hw.Err}
				continue
			}
			maxBytes := min(max(p.PartitionMaxBytes, 1), int32(min(budget, math.MaxInt32)))
			res := k.srv.fetch(&wire.FetchRequest{Topic: t.Topic, Partition: p.Partition, Offset: p.FetchOffset, MaxBytes: maxBytes})().(*wire.FetchResponse)
			results[ti][pi] = res
			budget -= len(res.Batches)
			plan.read += len(res.Batches)
			have = have || len(res.Batches) > 0 || res.Err != nil
		}
	}
	if wait := min(r.MaxWaitMillis, maxFetchWait); !have && wait > 0 && count > 0 {
		// Nothing was read: the fetch memory is not held through the long poll.
		k.fetchMem.release(held)
		held = 0
		ch := make(chan fetched, count)
		withdraw := make([][]func(), len(r.Topics))
		for ti, t := range r.Topics {
			withdraw[ti] = make([]func(), len(t.Partitions))
			for pi, p := range t.Partitions {
				if dup[ti][pi] {
					continue
				}
				ans, w := k.srv.poll(&wire.FetchRequest{Topic: t.Topic, Partition: p.Partition, Offset: p.FetchOffset, MaxBytes: max(p.PartitionMaxBytes, 1), MaxWaitMs: wait})
				withdraw[ti][pi] = w
				go func() { ch <- fetched{ti, pi, ans().(*wire.FetchResponse)} }()
			}
		}
	poll:
		for range count {
			var f fetched
			select {
			case f = <-ch:
			case <-quit:
				break poll
			}
			withdraw[f.t][f.p] = nil
			if f.res.Err == nil || len(f.res.Batches) > 0 {
				results[f.t][f.p] = f.res
				plan.read += len(f.res.Batches)
			}
			if len(f.res.Batches) > 0 || f.res.Err != nil {
				break
			}
		}
		// The polls still parked are answered at once, so that they neither wait out MaxWait
		// nor read records for this fetch, which is answered.
		for _, ws := range withdraw {
			for _, w := range ws {
				if w != nil {
					w()
				}
			}
		}
	}
	plan.held = held
	return plan
}
