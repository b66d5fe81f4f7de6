package actors

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// A Kafka fetch's answer: the stored batches a fetch read are converted to Kafka record batches
// into one buffer (with kmsg's RecordBatch and Record), kmsg's FetchResponse is written into the
// frame, and the node bounds the bytes of fetch answers in flight over all its connections
// (fetchMemory).
//
// The frames are not pooled: a pool's frames are live heap, which the collector multiplies by
// GOGC (400 in weir) to set its target. With a pool of frames of up to 8 MiB, ten groups reading
// at once took the node's RSS to 995 MiB without a memory limit (live heap 190 MB, 150 MB of it
// frames); without, 544 MiB (live heap 101 MB).
//
// Before, each partition's record batches were converted into a buffer of their own (itself
// built record by record in a scratch buffer, and batch by batch in a records buffer that
// kmsg.RecordBatch.AppendTo copied), and kmsg copied them all again into the frame: with ten
// groups reading one topic, those copies were four fifths of the 13 GB the node allocated and
// 211 MB of its live heap. Records are now encoded once, into a buffer for the whole answer.

// DefaultKafkaFetchMemory is the default of NodeConfig.KafkaFetchMemory.
const DefaultKafkaFetchMemory = 64 << 20

// fetchMemoryFloor is the least a fetch starts reading with (or its whole wish, if smaller):
// when less of the node's fetch memory is free, it waits.
const fetchMemoryFloor = 1 << 20

// fetchMemory bounds, over all of a node's Kafka connections, the bytes that fetches read and
// the answers they hold until written: a semaphore in bytes. A fetch takes what it may read
// before it reads (less than it asked for when the rest is in use, and it waits while less
// than fetchMemoryFloor is free), keeps the size of its answer until the answer was written,
// and gives the rest back at once.
type fetchMemory struct {
	mu      sync.Mutex
	max     int
	used    int
	peak    int           // the most ever taken (for tests)
	changed chan struct{} // closed and replaced whenever bytes are given back
}

func newFetchMemory(max int) *fetchMemory {
	return &fetchMemory{max: max, changed: make(chan struct{})}
}

// acquire takes up to want bytes, at least min(want, fetchMemoryFloor), waiting until they are
// free; it returns 0 and false if quit is closed first.
func (m *fetchMemory) acquire(want int, quit <-chan struct{}) (int, bool) {
	want = max(want, 1)
	least := min(want, fetchMemoryFloor, m.max)
	for {
		m.mu.Lock()
		if free := m.max - m.used; free >= least {
			got := min(want, free)
			m.used += got
			m.peak = max(m.peak, m.used)
			m.mu.Unlock()
			return got, true
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-quit:
			return 0, false
		}
	}
}

// take takes n bytes whether free or not: a fetch whose answer came out larger than what it
// was given (a first batch larger than the rest of its budget, which Kafka answers anyway; or a
// long poll's answer), which later fetches then wait for.
func (m *fetchMemory) take(n int) {
	if n <= 0 {
		return
	}
	m.mu.Lock()
	m.used += n
	m.peak = max(m.peak, m.used)
	m.mu.Unlock()
}

// release gives n bytes back.
func (m *fetchMemory) release(n int) {
	if n <= 0 {
		return
	}
	m.mu.Lock()
	m.used -= n
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// inUse is the bytes taken (for tests and metrics).
func (m *fetchMemory) inUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// fetchAnswer is a fetch's response frame (without its size), with the fetch memory it holds.
type fetchAnswer struct {
	frame []byte
	mem   *fetchMemory
	held  int
}

// done gives back the answer's fetch memory, once written (or not wanted).
func (a *fetchAnswer) done() {
	if a == nil {
		return
	}
	a.mem.release(a.held)
	a.held = 0
}

// fetchAnswer serves a fetch and encodes its answer; nil when quit was closed while it waited
// for fetch memory.
func (k *kafkaListener) fetchAnswer(h kafkaHeader, r *kmsg.FetchRequest, quit <-chan struct{}) *fetchAnswer {
	plan := k.fetch(r, quit)
	if plan == nil {
		return nil
	}
	frame := k.encodeFetch(nil, h, r, plan)
	// The answer's bytes are held until written; what the fetch was given beyond them is
	// free again.
	if d := len(frame) - plan.held; d > 0 {
		k.fetchMem.take(d)
	} else {
		k.fetchMem.release(-d)
	}
	return &fetchAnswer{frame: frame, mem: k.fetchMem, held: len(frame)}
}

// encodeFetch appends the response frame of a fetch (correlation id, header tags for flexible
// versions, kmsg's FetchResponse at the request's version) to dst. The stored batches the fetch
// read are first converted into one buffer (appendKafkaBatches), which each partition's
// RecordBatches is a slice of, and kmsg copies them into the frame. The buffer is counted in the
// node's fetch memory until the frame is written, so that an answer takes twice its size only
// within the bound.
func (k *kafkaListener) encodeFetch(dst []byte, h kafkaHeader, r *kmsg.FetchRequest, plan *kafkaFetched) []byte {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(r.Version)
	converted := make([]byte, 0, plan.read+plan.read/16)
	counted := cap(converted)
	k.fetchMem.take(counted)
	defer func() { k.fetchMem.release(counted) }()
	envelope := 64
	resp.Topics = make([]kmsg.FetchResponseTopic, 0, len(r.Topics))
	for ti, t := range r.Topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = t.Topic
		rt.Partitions = make([]kmsg.FetchResponseTopicPartition, 0, len(t.Partitions))
		envelope += len(t.Topic) + 16
		for pi, p := range t.Partitions {
			envelope += 64
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.Partition = p.Partition
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
			rp.PreferredReadReplica = -1
			rp.RecordBatches = []byte{}
			res := plan.results[ti][pi]
			switch {
			case plan.dup[ti][pi]:
				rp.ErrorCode = kafkaInvalidRequest
			case res.Err != nil:
				rp.ErrorCode = kafkaCode(res.Err)
			default:
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = res.HighWatermark, res.HighWatermark, res.StartOffset
				if len(res.Batches) > 0 {
					start := len(converted)
					var err error
					if converted, err = appendKafkaBatches(converted, res.Batches, p.FetchOffset); err != nil {
						k.logger.Warn("kafka: fetch: a stored batch did not decode", "topic", t.Topic, "partition", p.Partition, "err", err)
						converted = converted[:start]
						rp.ErrorCode = kafkaCorruptMessage
					}
					rp.RecordBatches = converted[start:len(converted):len(converted)]
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	// Records with little in them convert larger than stored (up to a third, empty values with
	// equal timestamps): what the buffer grew to is counted too.
	if c := cap(converted); c > counted {
		k.fetchMem.take(c - counted)
		counted = c
	}
	// Room for the frame made by hand, not with slices.Grow: under -race, its append of a make
	// is not fused, and the frame's bytes were allocated twice (TestKafkaFetchAllocatesAboutItsAnswer).
	if need := envelope + len(converted); cap(dst)-len(dst) < need {
		dst = append(make([]byte, 0, len(dst)+need), dst...)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.corr))
	if resp.IsFlexible() {
		dst = append(dst, 0) // the response header's tagged fields
	}
	return resp.AppendTo(dst)
}

// weirToKafka re-encodes stored batches as Kafka record batches (v2, uncompressed), one per
// stored batch, leaving out records before from.
func weirToKafka(data []byte, from int64) ([]byte, error) {
	return appendKafkaBatches(make([]byte, 0, len(data)+len(data)/16+256), data, from)
}

// kbAttributes is where a Kafka record batch's CRC starts covering it.
const kbAttributes = 21

// appendKafkaBatches appends weirToKafka's batches to dst, encoded by kmsg: each batch's header
// (a kmsg.RecordBatch, its records left out) is written first to make room, its records after
// it one by one (kmsg.Record), and the header again in place once its records and then its CRC
// are known. Stored batches other than records (raft entries) and records before from are left
// out.
func appendKafkaBatches(dst, data []byte, from int64) ([]byte, error) {
	var kr kmsg.Record
	for len(data) > 0 {
		h, err := storage.ParseHeader(data)
		if err != nil {
			return dst, err
		}
		if h.Size() > len(data) {
			return dst, fmt.Errorf("batch at offset %d cut short", h.BaseOffset)
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		if h.NextOffset() <= from || h.Kind != storage.KindRecords {
			continue
		}
		start := len(dst)
		rb := kmsg.RecordBatch{FirstOffset: -1, PartitionLeaderEpoch: -1, Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1}
		dst = rb.AppendTo(dst)
		var last int64
		_, err = storage.DecodeBatch(b, func(off int64, r storage.Record) error {
			if off < from {
				return nil
			}
			if rb.FirstOffset < 0 {
				rb.FirstOffset, rb.FirstTimestamp = off, r.Timestamp
			}
			kr = kmsg.Record{OffsetDelta: int32(off - rb.FirstOffset), TimestampDelta64: r.Timestamp - rb.FirstTimestamp,
				Key: r.Key, Value: r.Value, Headers: kr.Headers[:0]}
			for k, v := range r.Headers {
				// kmsg only reads the value: the string's bytes serve without a copy. An empty
				// string's data may be nil, and kmsg writes a nil value as null: an empty value
				// stays empty (as before 5fd32ed), which a consumer may read without a null check.
				val := unsafe.Slice(unsafe.StringData(v), len(v))
				if val == nil {
					val = []byte{}
				}
				kr.Headers = append(kr.Headers, kmsg.Header{Key: k, Value: val})
			}
			dst = appendKafkaRecord(dst, &kr)
			rb.NumRecords++
			rb.MaxTimestamp = max(rb.MaxTimestamp, r.Timestamp)
			last = off
			return nil
		})
		clear(kr.Headers[:cap(kr.Headers)]) // no stored header kept alive
		if err != nil {
			return dst[:start], err
		}
		if rb.NumRecords == 0 {
			dst = dst[:start]
			continue
		}
		rb.LastOffsetDelta = int32(last - rb.FirstOffset)
		rb.Length = int32(len(dst) - start - 12)
		rb.AppendTo(dst[start:start])
		rb.CRC = int32(crc32.Checksum(dst[start+kbAttributes:], castagnoliTable))
		rb.AppendTo(dst[start:start])
	}
	return dst, nil
}

// appendKafkaRecord appends kr encoded by kmsg, with its length in front: kmsg writes the
// Length it is given, so the record is written with a length of 0 (one byte) and the length of
// what follows is put in its place, moving the record when its varint takes more than a byte.
func appendKafkaRecord(dst []byte, kr *kmsg.Record) []byte {
	at := len(dst)
	kr.Length = 0
	dst = kr.AppendTo(dst)
	n := len(dst) - at - 1
	var l [binary.MaxVarintLen32]byte
	w := binary.PutVarint(l[:], int64(n))
	if w > 1 {
		dst = append(dst, l[1:w]...)
		copy(dst[at+w:], dst[at+1:at+1+n])
	}
	copy(dst[at:], l[:w])
	return dst
}

// kafkaFetched is what a fetch read: per request topic and partition, the partition's answer
// (nil for one named twice, dup), and the fetch memory it holds (held) for what it read (read
// bytes of stored batches).
type kafkaFetched struct {
	results [][]*wire.FetchResponse
	dup     [][]bool
	held    int
	read    int
}
