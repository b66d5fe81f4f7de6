package actors

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// A Kafka fetch's answer, written once: the stored batches a fetch read are converted to Kafka
// record batches straight into the response frame, and the node bounds the bytes of fetch
// answers in flight over all its connections (fetchMemory).
//
// The frames are not pooled: a pool's frames are live heap, which the collector multiplies by
// GOGC (400 in weir) to set its target. With a pool of frames of up to 8 MiB, ten groups reading
// at once took the node's RSS to 995 MiB without a memory limit (live heap 190 MB, 150 MB of it
// frames); without, 544 MiB (live heap 101 MB).
//
// Before, a fetch built a kmsg.FetchResponse whose record batches were each converted into a
// buffer of their own (itself built record by record in a scratch buffer, and batch by batch in
// a records buffer that kmsg.RecordBatch.AppendTo copied), and kmsg copied them all again into
// the frame: with ten groups reading one topic, those copies were four fifths of the 13 GB the
// node allocated and 211 MB of its live heap.

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
	size := 64 + plan.read
	for _, t := range r.Topics {
		size += len(t.Topic) + 16 + len(t.Partitions)*64
	}
	frame := k.encodeFetch(make([]byte, 0, size+size/16), h, r, plan)
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
// versions, the body of FetchResponse at the request's version, 4 to 12) to dst, converting the
// stored batches the fetch read straight into it. It writes what kmsg.FetchResponse.AppendTo
// writes for the response fetch used to build (TestEncodeFetchMatchesKmsg).
func (k *kafkaListener) encodeFetch(dst []byte, h kafkaHeader, r *kmsg.FetchRequest, plan *kafkaFetched) []byte {
	v := r.Version
	flex := v >= 12
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.corr))
	if flex {
		dst = append(dst, 0) // the response header's tagged fields
	}
	if v >= 1 {
		dst = binary.BigEndian.AppendUint32(dst, 0) // throttle
	}
	if v >= 7 {
		dst = binary.BigEndian.AppendUint16(dst, 0) // error code
		dst = binary.BigEndian.AppendUint32(dst, 0) // session id
	}
	dst = appendKafkaArrayLen(dst, len(r.Topics), flex)
	for ti, t := range r.Topics {
		if flex {
			dst = binary.AppendUvarint(dst, uint64(len(t.Topic))+1)
		} else {
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.Topic)))
		}
		dst = append(dst, t.Topic...)
		dst = appendKafkaArrayLen(dst, len(t.Partitions), flex)
		for pi, p := range t.Partitions {
			code, hw, start := int16(0), int64(-1), int64(-1)
			res := plan.results[ti][pi]
			switch {
			case plan.dup[ti][pi]:
				code = kafkaInvalidRequest
			case res.Err != nil:
				code = kafkaCode(res.Err)
			default:
				hw, start = res.HighWatermark, res.StartOffset
			}
			dst = binary.BigEndian.AppendUint32(dst, uint32(p.Partition))
			codeAt := len(dst)
			dst = binary.BigEndian.AppendUint16(dst, uint16(code))
			dst = binary.BigEndian.AppendUint64(dst, uint64(hw))
			dst = binary.BigEndian.AppendUint64(dst, uint64(hw)) // last stable offset
			if v >= 5 {
				dst = binary.BigEndian.AppendUint64(dst, uint64(start))
			}
			if flex { // aborted transactions: null
				dst = append(dst, 0)
			} else {
				dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)
			}
			if v >= 11 {
				dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // preferred read replica
			}
			// The record batches: their length, then the batches converted in place. A flexible
			// version's length is a varint, written in its widest form and then narrowed.
			lenAt := len(dst)
			if flex {
				dst = append(dst, 0, 0, 0, 0, 0)
			} else {
				dst = append(dst, 0, 0, 0, 0)
			}
			recsAt := len(dst)
			if code == 0 && len(res.Batches) > 0 {
				var err error
				if dst, err = appendKafkaBatches(dst, res.Batches, p.FetchOffset); err != nil {
					k.logger.Warn("kafka: fetch: a stored batch did not decode", "topic", t.Topic, "partition", p.Partition, "err", err)
					dst = dst[:recsAt]
					binary.BigEndian.PutUint16(dst[codeAt:], kafkaCorruptMessage)
				}
			}
			n := len(dst) - recsAt
			if flex {
				var w [binary.MaxVarintLen32]byte
				m := binary.PutUvarint(w[:], uint64(n)+1)
				copy(dst[lenAt:], w[:m])
				if m < 5 {
					copy(dst[lenAt+m:], dst[recsAt:])
					dst = dst[:len(dst)-(5-m)]
				}
				dst = append(dst, 0) // the partition's tagged fields
			} else {
				binary.BigEndian.PutUint32(dst[lenAt:], uint32(n))
			}
		}
		if flex {
			dst = append(dst, 0) // the topic's tagged fields
		}
	}
	if flex {
		dst = append(dst, 0) // the response's tagged fields
	}
	return dst
}

func appendKafkaArrayLen(dst []byte, n int, flex bool) []byte {
	if flex {
		return binary.AppendUvarint(dst, uint64(n)+1)
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// weirToKafka re-encodes stored batches as Kafka record batches (v2, uncompressed), one per
// stored batch, leaving out records before from.
func weirToKafka(data []byte, from int64) ([]byte, error) {
	return appendKafkaBatches(make([]byte, 0, len(data)+len(data)/16+256), data, from)
}

// Offsets in a Kafka record batch (v2) header, which is kafkaBatchHeader bytes long.
const (
	kbLength          = 8
	kbLeaderEpoch     = 12
	kbMagic           = 16
	kbCRC             = 17
	kbAttributes      = 21 // the CRC covers the batch from here
	kbLastOffsetDelta = 23
	kbFirstTimestamp  = 27
	kbMaxTimestamp    = 35
	kbProducerID      = 43
	kbProducerEpoch   = 51
	kbFirstSequence   = 53
	kbNumRecords      = 57
	kafkaBatchHeader  = 61
)

// appendKafkaBatches appends weirToKafka's batches to dst: each batch's header is written with
// room for what is known only after its records, the records are written after it one by one
// with their length computed first, and the header is completed last. Stored batches other
// than records (raft entries) and records before from are left out.
func appendKafkaBatches(dst, data []byte, from int64) ([]byte, error) {
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
		dst = append(dst, make([]byte, kafkaBatchHeader)...)
		var first, firstTS, maxTS, last int64 = -1, 0, 0, 0
		var count int32
		_, err = storage.DecodeBatch(b, func(off int64, r storage.Record) error {
			if off < from {
				return nil
			}
			if first < 0 {
				first, firstTS = off, r.Timestamp
			}
			dst = appendKafkaRecord(dst, off-first, r.Timestamp-firstTS, r)
			count++
			maxTS = max(maxTS, r.Timestamp)
			last = off
			return nil
		})
		if err != nil {
			return dst[:start], err
		}
		if count == 0 {
			dst = dst[:start]
			continue
		}
		batch := dst[start:]
		be := binary.BigEndian
		be.PutUint64(batch, uint64(first))
		be.PutUint32(batch[kbLength:], uint32(len(batch)-12))
		be.PutUint32(batch[kbLeaderEpoch:], 0xffffffff)
		batch[kbMagic] = 2
		be.PutUint16(batch[kbAttributes:], 0)
		be.PutUint32(batch[kbLastOffsetDelta:], uint32(int32(last-first)))
		be.PutUint64(batch[kbFirstTimestamp:], uint64(firstTS))
		be.PutUint64(batch[kbMaxTimestamp:], uint64(maxTS))
		be.PutUint64(batch[kbProducerID:], 0xffffffffffffffff)
		be.PutUint16(batch[kbProducerEpoch:], 0xffff)
		be.PutUint32(batch[kbFirstSequence:], 0xffffffff)
		be.PutUint32(batch[kbNumRecords:], uint32(count))
		be.PutUint32(batch[kbCRC:], crc32.Checksum(batch[kbAttributes:], castagnoliTable))
	}
	return dst, nil
}

// appendKafkaRecord appends one record of a v2 batch: its length, attributes (0), timestamp
// and offset deltas, key, value and headers.
func appendKafkaRecord(dst []byte, offDelta, tsDelta int64, r storage.Record) []byte {
	n := 1 + varintSize(tsDelta) + varintSize(int64(int32(offDelta))) +
		bytesFieldSize(r.Key) + bytesFieldSize(r.Value) + varintSize(int64(len(r.Headers)))
	for k, v := range r.Headers {
		n += varintSize(int64(len(k))) + len(k) + varintSize(int64(len(v))) + len(v)
	}
	dst = binary.AppendVarint(dst, int64(n))
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, int64(int32(offDelta)))
	dst = appendBytesField(dst, r.Key)
	dst = appendBytesField(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for k, v := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendVarint(dst, int64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// varintSize is the length of v as a zigzag varint.
func varintSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}

// bytesFieldSize is the length of a record's key or value field: a varint length (-1 for nil)
// and the bytes.
func bytesFieldSize(b []byte) int {
	if b == nil {
		return 1
	}
	return varintSize(int64(len(b))) + len(b)
}

func appendBytesField(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
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
