package actors

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strconv"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
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

func (k *kafkaListener) metadata(r *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	var names []string
	all := r.Topics == nil
	for _, t := range r.Topics {
		if t.Topic != nil {
			names = append(names, *t.Topic)
		}
	}
	resp := kmsg.NewPtrMetadataResponse()
	self := k.brokerID(k.n.raftID)
	brokers := map[string]int32{} // node name -> broker id, for the nodes with a Kafka listener
	for _, m := range k.n.Members() {
		addr := m.Kafka
		if m.ID == k.n.raftID {
			addr = k.Addr()
		}
		if addr == "" {
			continue
		}
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = k.brokerID(m.ID)
		b.Host, b.Port = splitHostPort(addr)
		resp.Brokers = append(resp.Brokers, b)
		brokers[m.Node] = b.NodeID
	}
	cluster := "weir"
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

// produce appends each partition's record batches, as one Weir batch per partition.
func (k *kafkaListener) produce(r *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := kmsg.NewPtrProduceResponse()
	acks := wire.Acks(r.Acks)
	if acks != wire.AcksNone && acks != wire.AcksLeader && acks != wire.AcksAll {
		acks = wire.Acks(-2) // answered INVALID_REQUEST per partition by Server.produce
	}
	for _, t := range r.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		req := &wire.ProduceRequest{Topic: t.Topic, Acks: acks, TimeoutMs: r.TimeoutMillis}
		var idx []int // response partition index of each request batch
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = p.Partition, -1, -1, -1
			batch, code, err := kafkaToWeir(p.Records)
			if err != nil {
				rp.ErrorCode = code
				msg := err.Error()
				rp.ErrorMessage = &msg
				k.logger.Info("kafka: produce refused", "topic", t.Topic, "partition", p.Partition, "err", err)
			} else {
				req.Batches = append(req.Batches, wire.PartitionBatch{Partition: p.Partition, Batch: batch})
				idx = append(idx, len(rt.Partitions))
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		if len(req.Batches) > 0 {
			res := k.srv.produce(req)().(*wire.ProduceResponse)
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
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// kafkaToWeir checks the record batches (v2) of one partition and re-encodes their records as
// one Weir batch; on error it also returns the Kafka error code to answer.
func kafkaToWeir(data []byte) ([]byte, int16, error) {
	bb := storage.NewBatchBuilder()
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
		recs, err := decompress(int(rb.Attributes&7), rb.Records)
		if err != nil {
			code := int16(kafkaCorruptMessage)
			if errors.Is(err, errUnknownCodec) {
				code = kafkaUnsupportedCompressor
			}
			return nil, code, err
		}
		batches++
		if rb.ProducerID >= 0 {
			if batches > 1 {
				return nil, kafkaInvalidRequest, errors.New("more than one idempotent record batch for a partition in one request")
			}
			bb.SetProducer(rb.ProducerID, rb.FirstSequence)
		}
		for i := range rb.NumRecords {
			l, n := binary.Varint(recs)
			if n <= 0 || l < 0 || int64(len(recs)-n) < l {
				return nil, kafkaCorruptMessage, fmt.Errorf("record %d of %d: bad length", i, rb.NumRecords)
			}
			var kr kmsg.Record
			if err := kr.ReadFrom(recs[:n+int(l)]); err != nil {
				return nil, kafkaCorruptMessage, fmt.Errorf("record %d of %d: %v", i, rb.NumRecords, err)
			}
			recs = recs[n+int(l):]
			rec := storage.Record{Key: kr.Key, Value: kr.Value, Timestamp: rb.FirstTimestamp + kr.TimestampDelta64}
			if rec.Timestamp < 0 {
				rec.Timestamp = 0
			}
			if len(kr.Headers) > 0 {
				rec.Headers = make(map[string]string, len(kr.Headers))
				for _, h := range kr.Headers {
					rec.Headers[h.Key] = string(h.Value)
				}
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

var errUnknownCodec = errors.New("unknown compression codec")

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func decompress(codec int, b []byte) ([]byte, error) {
	switch codec {
	case 0:
		return b, nil
	case 1:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return readAllLimited(zr)
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
				d, err := snappy.Decode(nil, b[4:4+n])
				if err != nil {
					return nil, fmt.Errorf("snappy: %w", err)
				}
				out = append(out, d...)
				if len(out) > maxKafkaFrame {
					return nil, errors.New("snappy: records over 100 MiB")
				}
				b = b[4+n:]
			}
			return out, nil
		}
		if n, err := snappy.DecodedLen(b); err != nil || n > maxKafkaFrame {
			return nil, fmt.Errorf("snappy: bad or oversized block (%v)", err)
		}
		d, err := snappy.Decode(nil, b)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		return d, nil
	case 3:
		return readAllLimited(lz4.NewReader(bytes.NewReader(b)))
	case 4:
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderMaxMemory(maxKafkaFrame))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		return readAllLimited(zr)
	}
	return nil, fmt.Errorf("%w %d", errUnknownCodec, codec)
}

func readAllLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKafkaFrame+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKafkaFrame {
		return nil, errors.New("decompressed records over 100 MiB")
	}
	return b, nil
}

func (k *kafkaListener) listOffsets(r *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := kmsg.NewPtrListOffsetsResponse()
	for _, t := range r.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition, rp.Timestamp, rp.Offset, rp.LeaderEpoch = p.Partition, -1, -1, -1
			req := &wire.ListOffsetsRequest{Topic: t.Topic, Partition: p.Partition}
			switch {
			case p.Timestamp == -2:
				req.Spec = wire.OffsetEarliest
			case p.Timestamp == -1:
				req.Spec = wire.OffsetLatest
			case p.Timestamp >= 0:
				req.Spec, req.Timestamp = wire.OffsetTimestamp, p.Timestamp
			default:
				rp.ErrorCode = kafkaInvalidRequest // -3 (max timestamp) and others are not served
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			res := k.srv.listOffsets(req)().(*wire.ListOffsetsResponse)
			rp.ErrorCode, rp.Offset = kafkaCode(res.Err), res.Offset
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// fetched is one partition's fetch result.
type fetched struct {
	t, p int // indexes in the request
	res  *wire.FetchResponse
}

// fetch reads each partition without waiting; if none had records, it long-polls them all for
// MaxWaitMillis and answers as soon as one has records (or all have answered).
func (k *kafkaListener) fetch(r *kmsg.FetchRequest) *kmsg.FetchResponse {
	results := make([][]*wire.FetchResponse, len(r.Topics))
	run := func(wait int32) <-chan fetched {
		n := 0
		for _, t := range r.Topics {
			n += len(t.Partitions)
		}
		ch := make(chan fetched, n)
		for ti, t := range r.Topics {
			results[ti] = make([]*wire.FetchResponse, len(t.Partitions))
			for pi, p := range t.Partitions {
				maxBytes := p.PartitionMaxBytes
				if maxBytes <= 0 {
					maxBytes = 1 << 20
				}
				ans := k.srv.fetch(&wire.FetchRequest{Topic: t.Topic, Partition: p.Partition, Offset: p.FetchOffset, MaxBytes: maxBytes, MaxWaitMs: wait})
				go func() { ch <- fetched{ti, pi, ans().(*wire.FetchResponse)} }()
			}
		}
		return ch
	}
	count := 0
	for _, t := range r.Topics {
		count += len(t.Partitions)
	}
	ch := run(0)
	have := false
	for range count {
		f := <-ch
		results[f.t][f.p] = f.res
		have = have || len(f.res.Batches) > 0
	}
	if !have && r.MaxWaitMillis > 0 && count > 0 {
		first := make([][]*wire.FetchResponse, len(results))
		for i := range results {
			first[i] = append([]*wire.FetchResponse(nil), results[i]...)
		}
		ch := run(r.MaxWaitMillis)
		for i := range results {
			copy(results[i], first[i])
		}
		for range count {
			f := <-ch
			if f.res.Err == nil {
				results[f.t][f.p] = f.res
			}
			if len(f.res.Batches) > 0 {
				break
			}
		}
	}
	resp := kmsg.NewPtrFetchResponse()
	budget := int(r.MaxBytes)
	if budget <= 0 {
		budget = 50 << 20
	}
	for ti, t := range r.Topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = t.Topic
		for pi, p := range t.Partitions {
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.Partition, rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset, rp.PreferredReadReplica = p.Partition, -1, -1, -1, -1
			rp.RecordBatches = []byte{} // empty, not null: librdkafka refuses a null record set
			res := results[ti][pi]
			if res.Err != nil {
				rp.ErrorCode = kafkaCode(res.Err)
			} else {
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = res.HighWatermark, res.HighWatermark, res.StartOffset
				if budget > 0 && len(res.Batches) > 0 {
					kb, err := weirToKafka(res.Batches, p.FetchOffset)
					if err != nil {
						k.logger.Warn("kafka: fetch: a stored batch did not decode", "topic", t.Topic, "partition", p.Partition, "err", err)
						rp.ErrorCode = kafkaCorruptMessage
					} else {
						rp.RecordBatches = kb
						budget -= len(kb)
					}
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// weirToKafka re-encodes stored batches as Kafka record batches (v2, uncompressed), one per
// stored batch, leaving out records before from.
func weirToKafka(data []byte, from int64) ([]byte, error) {
	var out []byte
	for len(data) > 0 {
		h, err := storage.ParseHeader(data)
		if err != nil {
			return nil, err
		}
		if h.Size() > len(data) {
			return nil, fmt.Errorf("batch at offset %d cut short", h.BaseOffset)
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		if h.NextOffset() <= from || h.Kind != storage.KindRecords {
			continue
		}
		rb := kmsg.RecordBatch{FirstOffset: -1, PartitionLeaderEpoch: -1, Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1}
		var recs, scratch []byte
		var last int64
		_, err = storage.DecodeBatch(b, func(off int64, r storage.Record) error {
			if off < from {
				return nil
			}
			if rb.FirstOffset < 0 {
				rb.FirstOffset, rb.FirstTimestamp = off, r.Timestamp
			}
			kr := kmsg.Record{OffsetDelta: int32(off - rb.FirstOffset), TimestampDelta64: r.Timestamp - rb.FirstTimestamp, Key: r.Key, Value: r.Value}
			for k, v := range r.Headers {
				kr.Headers = append(kr.Headers, kmsg.Header{Key: k, Value: []byte(v)})
			}
			// AppendTo writes Length as given: encode with 0 (one byte), then put the length
			// of what follows it in front.
			scratch = kr.AppendTo(scratch[:0])
			recs = binary.AppendVarint(recs, int64(len(scratch)-1))
			recs = append(recs, scratch[1:]...)
			rb.NumRecords++
			rb.MaxTimestamp = max(rb.MaxTimestamp, r.Timestamp)
			last = off
			return nil
		})
		if err != nil {
			return nil, err
		}
		if rb.NumRecords == 0 {
			continue
		}
		rb.LastOffsetDelta = int32(last - rb.FirstOffset)
		rb.Records = recs
		start := len(out)
		out = rb.AppendTo(out)
		batch := out[start:]
		binary.BigEndian.PutUint32(batch[8:12], uint32(len(batch)-12))
		binary.BigEndian.PutUint32(batch[17:21], crc32.Checksum(batch[21:], castagnoliTable))
	}
	return out, nil
}
