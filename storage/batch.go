package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Batch layout: a fixed header of HeaderSize bytes, big-endian, followed by a msgpack body.
//
//	offset size field
//	 0     4    magic            "WEIR" (0x57454952)
//	 4     1    version          BatchVersion
//	 5     3    reserved         zero
//	 8     4    length           body length in bytes (the whole batch is HeaderSize+length)
//	12     4    crc              CRC32C (Castagnoli) of bytes [40, 76) and [HeaderSize, HeaderSize+length)
//	16     8    base offset      offset of the first record; assigned by the log
//	24     8    term             raft term of the entry; assigned by the log's owner
//	32     8    index            raft index of the entry; assigned by the log's owner
//	40     2    attributes       low 4 bits: Kind
//	42     2    reserved         zero
//	44     4    record count     number of records in the body
//	48     8    first timestamp  unix milliseconds of the first record
//	56     8    max timestamp    largest record timestamp in the batch
//	64     8    producer id      -1 when the producer is not idempotent
//	72     4    base sequence    sequence number of the first record for that producer, -1 if none
//	76     4    header crc       CRC32C of bytes [0, 76)
//
// Two checksums, because two parties write a batch. The producer writes the records and the
// fields about them, and the crc covers those: it is computed once, where the batch is built, and
// checked end to end by whoever decodes it. The log writes the placement (bytes 16 to 40) when it
// appends the batch, and seals the header with the header crc, which covers every header byte
// before it, the crc and the placement included. So a damaged length, offset, term or index is
// caught when the header is parsed, before anything is placed by it, and the log recomputes only
// a checksum of 76 bytes when it places a batch.
//
// Version 1 had a 76-byte header without the header crc, and a crc of bytes [40, end); the log
// does not read it (see segmentVersion).
//
// The body of a records batch is record count msgpack arrays, back to back, each
// [timestamp delta (int, milliseconds after first timestamp), key (bin or nil), value (bin or nil),
// headers (map of str to str, or nil)]. The body of any other kind is opaque bytes (see Kind).
const (
	BatchMagic   uint32 = 0x57454952 // "WEIR"
	BatchVersion byte   = 2
	HeaderSize          = 80
	// MaxBatchSize bounds one batch, header included. A length field beyond it is corruption.
	MaxBatchSize = 64 << 20

	offMagic      = 0
	offVersion    = 4
	offLength     = 8
	offCRC        = 12
	offBaseOffset = 16
	offTerm       = 24
	offIndex      = 32
	offAttributes = 40
	offCount      = 44
	offFirstTS    = 48
	offMaxTS      = 56
	offProducerID = 64
	offBaseSeq    = 72
	offHeaderCRC  = 76
	crcStart      = offAttributes

	// minRecordSize is the least an encoded record takes: a one-byte array header and four
	// one-byte fields. It bounds the record count a body of a given length can hold.
	minRecordSize = 5
)

// Kind says what a batch carries. Only KindRecords batches hold records; the others are raft
// entries stored in the same log so that the raft log and the partition log are one file, and
// consumers skip them like Kafka consumers skip control batches.
type Kind uint8

const (
	KindRecords      Kind = 0 // record batch (raft EntryNormal with data)
	KindNoop         Kind = 1 // raft EntryNormal without data (a new leader's empty entry)
	KindConfChange   Kind = 2 // raft EntryConfChange; body is the entry data
	KindConfChangeV2 Kind = 3 // raft EntryConfChangeV2; body is the entry data
	kindMask              = 0x0f
	maxKind               = KindConfChangeV2
)

func (k Kind) String() string {
	switch k {
	case KindRecords:
		return "records"
	case KindNoop:
		return "noop"
	case KindConfChange:
		return "confchange"
	case KindConfChangeV2:
		return "confchangev2"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadBatch is wrapped by every error about a malformed batch.
var ErrBadBatch = errors.New("bad batch")

// Record is one message: key, value, string headers and a timestamp in unix milliseconds.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   map[string]string
	Timestamp int64
}

// Header is the decoded fixed header of a batch.
type Header struct {
	Length         uint32 // body length
	CRC            uint32
	BaseOffset     int64
	Term           uint64
	Index          uint64
	Kind           Kind
	Count          uint32
	FirstTimestamp int64
	MaxTimestamp   int64
	ProducerID     int64
	BaseSequence   int32
}

// Size is the whole batch's size in bytes.
func (h Header) Size() int { return HeaderSize + int(h.Length) }

// NextOffset is the offset after the batch's last record.
func (h Header) NextOffset() int64 { return h.BaseOffset + int64(h.Count) }

// ParseHeader decodes and checks the fixed header at the start of p: magic, version, the header
// checksum, kind, length and record count bounds. It does not check the body's CRC (see CheckCRC).
func ParseHeader(p []byte) (Header, error) {
	if len(p) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBadBatch, len(p), HeaderSize)
	}
	if m := binary.BigEndian.Uint32(p[offMagic:]); m != BatchMagic {
		return Header{}, fmt.Errorf("%w: magic %#08x, want %#08x", ErrBadBatch, m, BatchMagic)
	}
	if v := p[offVersion]; v != BatchVersion {
		return Header{}, fmt.Errorf("%w: version %d, want %d", ErrBadBatch, v, BatchVersion)
	}
	if got, want := headerChecksum(p), binary.BigEndian.Uint32(p[offHeaderCRC:]); got != want {
		return Header{}, fmt.Errorf("%w: header crc %#08x, header says %#08x", ErrBadBatch, got, want)
	}
	h := Header{
		Length:         binary.BigEndian.Uint32(p[offLength:]),
		CRC:            binary.BigEndian.Uint32(p[offCRC:]),
		BaseOffset:     int64(binary.BigEndian.Uint64(p[offBaseOffset:])),
		Term:           binary.BigEndian.Uint64(p[offTerm:]),
		Index:          binary.BigEndian.Uint64(p[offIndex:]),
		Kind:           Kind(binary.BigEndian.Uint16(p[offAttributes:]) & kindMask),
		Count:          binary.BigEndian.Uint32(p[offCount:]),
		FirstTimestamp: int64(binary.BigEndian.Uint64(p[offFirstTS:])),
		MaxTimestamp:   int64(binary.BigEndian.Uint64(p[offMaxTS:])),
		ProducerID:     int64(binary.BigEndian.Uint64(p[offProducerID:])),
		BaseSequence:   int32(binary.BigEndian.Uint32(p[offBaseSeq:])),
	}
	if h.Kind > maxKind {
		return Header{}, fmt.Errorf("%w: unknown kind %d", ErrBadBatch, h.Kind)
	}
	if h.Size() > MaxBatchSize {
		return Header{}, fmt.Errorf("%w: length %d exceeds the %d-byte limit", ErrBadBatch, h.Length, MaxBatchSize)
	}
	if h.Kind != KindRecords && h.Count != 0 {
		return Header{}, fmt.Errorf("%w: %s batch claims %d records", ErrBadBatch, h.Kind, h.Count)
	}
	if uint64(h.Count)*minRecordSize > uint64(h.Length) {
		return Header{}, fmt.Errorf("%w: %d records cannot fit in %d bytes", ErrBadBatch, h.Count, h.Length)
	}
	if h.BaseOffset < 0 || h.BaseOffset > math.MaxInt64-int64(h.Count) {
		return Header{}, fmt.Errorf("%w: base offset %d out of range", ErrBadBatch, h.BaseOffset)
	}
	return h, nil
}

// checksum computes the CRC of a whole batch (header and body present in b): the producer's
// header fields and the body, not the header crc after them.
func checksum(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[crcStart:offHeaderCRC], castagnoli), castagnoli, b[HeaderSize:])
}

// headerChecksum computes the header crc of the header at the start of b.
func headerChecksum(b []byte) uint32 { return crc32.Checksum(b[:offHeaderCRC], castagnoli) }

// sealHeader writes the header crc; every other header field must be in place.
func sealHeader(hdr []byte) {
	binary.BigEndian.PutUint32(hdr[offHeaderCRC:], headerChecksum(hdr))
}

// CheckCRC verifies the CRC of the whole batch b, whose header h was parsed from it.
func CheckCRC(b []byte, h Header) error {
	if len(b) < h.Size() {
		return fmt.Errorf("%w: %d bytes, header says %d", ErrBadBatch, len(b), h.Size())
	}
	if got := checksum(b[:h.Size()]); got != h.CRC {
		return fmt.Errorf("%w: crc %#08x, header says %#08x", ErrBadBatch, got, h.CRC)
	}
	return nil
}

// ParseBatch parses and fully checks (header, CRC) the batch at the start of p, returning its
// header. p may hold more bytes after the batch.
func ParseBatch(p []byte) (Header, error) {
	h, err := ParseHeader(p)
	if err != nil {
		return h, err
	}
	return h, CheckCRC(p, h)
}

// putPlacement writes the fields the log assigns (base offset, term, index) into a header and
// seals it again.
func putPlacement(hdr []byte, baseOffset int64, term, index uint64) {
	binary.BigEndian.PutUint64(hdr[offBaseOffset:], uint64(baseOffset))
	binary.BigEndian.PutUint64(hdr[offTerm:], term)
	binary.BigEndian.PutUint64(hdr[offIndex:], index)
	sealHeader(hdr)
}

// SameBatch reports whether a and b are the same batch, placed or not: equal in length and in
// every header field but the placement and the header crc. The crc field covers the body, so
// equal headers mean equal batches unless one is damaged.
func SameBatch(a, b []byte) bool {
	if len(a) != len(b) || len(a) < HeaderSize {
		return false
	}
	return bytes.Equal(a[:offBaseOffset], b[:offBaseOffset]) && bytes.Equal(a[offAttributes:offHeaderCRC], b[offAttributes:offHeaderCRC])
}

// controlBatch builds a batch of a kind other than KindRecords, holding data as its body.
func controlBatch(kind Kind, data []byte, ts int64) []byte {
	b := make([]byte, HeaderSize+len(data))
	copy(b[HeaderSize:], data)
	fillHeader(b, kind, 0, ts, ts, -1, -1)
	return b
}

// fillHeader writes every header field except the placement (left zero) and computes both
// checksums; the body must already be in b[HeaderSize:].
func fillHeader(b []byte, kind Kind, count uint32, firstTS, maxTS, producerID int64, baseSeq int32) {
	binary.BigEndian.PutUint32(b[offMagic:], BatchMagic)
	b[offVersion] = BatchVersion
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-HeaderSize))
	binary.BigEndian.PutUint16(b[offAttributes:], uint16(kind))
	binary.BigEndian.PutUint32(b[offCount:], count)
	binary.BigEndian.PutUint64(b[offFirstTS:], uint64(firstTS))
	binary.BigEndian.PutUint64(b[offMaxTS:], uint64(maxTS))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(producerID))
	binary.BigEndian.PutUint32(b[offBaseSeq:], uint32(baseSeq))
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	sealHeader(b)
}

// BatchBuilder encodes records into one batch. It reuses its buffers between batches, so one
// builder per producing goroutine keeps encoding allocation-free. The zero value is not usable;
// call NewBatchBuilder.
type BatchBuilder struct {
	buf        bytes.Buffer
	enc        *msgpack.Encoder
	count      uint32
	firstTS    int64
	maxTS      int64
	producerID int64
	baseSeq    int32
}

// NewBatchBuilder returns an empty builder.
func NewBatchBuilder() *BatchBuilder {
	b := &BatchBuilder{}
	b.enc = msgpack.NewEncoder(&b.buf)
	b.Reset()
	return b
}

// Reset empties the builder for a new batch.
func (b *BatchBuilder) Reset() {
	b.buf.Reset()
	var hdr [HeaderSize]byte
	b.buf.Write(hdr[:])
	b.count, b.firstTS, b.maxTS = 0, 0, 0
	b.producerID, b.baseSeq = -1, -1
}

// Grow makes room for n more bytes of records, so that a caller that knows about how large the
// batch will be has it built without the buffer growing (and being copied) along the way.
func (b *BatchBuilder) Grow(n int) { b.buf.Grow(n) }

// SetProducer stamps the batch with an idempotent producer's id and the sequence of its first record.
func (b *BatchBuilder) SetProducer(id int64, baseSeq int32) { b.producerID, b.baseSeq = id, baseSeq }

// Len is the number of records added so far; Size the encoded size so far, header included.
func (b *BatchBuilder) Len() int  { return int(b.count) }
func (b *BatchBuilder) Size() int { return b.buf.Len() }

// Add appends one record to the batch.
func (b *BatchBuilder) Add(r Record) error {
	if b.count == 0 {
		b.firstTS, b.maxTS = r.Timestamp, r.Timestamp
	} else if r.Timestamp > b.maxTS {
		b.maxTS = r.Timestamp
	}
	e := b.enc
	err := e.EncodeArrayLen(4)
	if err == nil {
		err = e.EncodeInt(r.Timestamp - b.firstTS)
	}
	if err == nil {
		err = e.EncodeBytes(r.Key)
	}
	if err == nil {
		err = e.EncodeBytes(r.Value)
	}
	if err == nil {
		err = encodeHeaders(e, r.Headers)
	}
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	b.count++
	if b.buf.Len() > MaxBatchSize {
		return fmt.Errorf("%w: batch grew past %d bytes", ErrBadBatch, MaxBatchSize)
	}
	return nil
}

func encodeHeaders(e *msgpack.Encoder, h map[string]string) error {
	if h == nil {
		return e.EncodeNil()
	}
	if err := e.EncodeMapLen(len(h)); err != nil {
		return err
	}
	for k, v := range h {
		if err := e.EncodeString(k); err != nil {
			return err
		}
		if err := e.EncodeString(v); err != nil {
			return err
		}
	}
	return nil
}

// Build finishes the batch and returns its bytes. The slice is the builder's own buffer: it is
// valid until the next Add or Reset; copy it to keep it longer.
func (b *BatchBuilder) Build() []byte {
	p := b.buf.Bytes()
	fillHeader(p, KindRecords, b.count, b.firstTS, b.maxTS, b.producerID, b.baseSeq)
	return p
}

// EncodeBatch encodes records into a new batch.
func EncodeBatch(records []Record) ([]byte, error) {
	b := NewBatchBuilder()
	for _, r := range records {
		if err := b.Add(r); err != nil {
			return nil, err
		}
	}
	return bytes.Clone(b.Build()), nil
}

// DecodeBatches decodes data, whole batches back to back as a fetch returns them: it calls fn
// for every record at or after offset from, and returns the offset after the last batch (from if
// data holds none after it). Batches that end at or before from are skipped without being
// decoded; batches of other kinds than KindRecords hold no records. A header that fails its
// checks, or a batch cut short, is an error wrapping ErrBadBatch.
func DecodeBatches(data []byte, from int64, fn func(offset int64, r Record) error) (int64, error) {
	next := from
	for len(data) > 0 {
		h, err := ParseHeader(data)
		if err != nil {
			return next, fmt.Errorf("batch after offset %d: %w", next, err)
		}
		if h.Size() > len(data) {
			return next, fmt.Errorf("%w: batch at offset %d cut short: %d of its %d bytes", ErrBadBatch, h.BaseOffset, len(data), h.Size())
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		if h.NextOffset() <= from {
			continue
		}
		if _, err := DecodeBatch(b, func(off int64, r Record) error {
			if off < from {
				return nil
			}
			return fn(off, r)
		}); err != nil {
			return next, err
		}
		next = max(next, h.NextOffset())
	}
	return next, nil
}

// DecodeBatch checks one batch (header and CRC) and calls fn for each record with its offset.
// The record's byte slices alias batch; copy them to keep them past fn. Batches of kinds other than
// KindRecords hold no records and produce no calls.
func DecodeBatch(batch []byte, fn func(offset int64, r Record) error) (Header, error) {
	h, err := ParseBatch(batch)
	if err != nil {
		return h, err
	}
	if h.Kind != KindRecords {
		return h, nil
	}
	// ParseHeader has checked that count records of minRecordSize bytes fit in the body, which
	// bounds what a hostile count field can make us do.
	body := batch[HeaderSize:h.Size()]
	rd := bytes.NewReader(body)
	d := msgpack.NewDecoder(rd)
	for i := uint32(0); i < h.Count; i++ {
		r, err := decodeRecord(d, body, rd, h.FirstTimestamp)
		if err != nil {
			return h, fmt.Errorf("%w: record %d of %d: %v", ErrBadBatch, i, h.Count, err)
		}
		if err := fn(h.BaseOffset+int64(i), r); err != nil {
			return h, err
		}
	}
	if rd.Len() != 0 {
		return h, fmt.Errorf("%w: %d bytes left after %d records", ErrBadBatch, rd.Len(), h.Count)
	}
	return h, nil
}

func decodeRecord(d *msgpack.Decoder, body []byte, rd *bytes.Reader, firstTS int64) (Record, error) {
	var r Record
	n, err := d.DecodeArrayLen()
	if err != nil {
		return r, err
	}
	if n != 4 {
		return r, fmt.Errorf("record has %d fields, want 4", n)
	}
	delta, err := d.DecodeInt64()
	if err != nil {
		return r, fmt.Errorf("timestamp: %v", err)
	}
	r.Timestamp = firstTS + delta
	if r.Key, err = decodeBin(d, body, rd); err != nil {
		return r, fmt.Errorf("key: %v", err)
	}
	if r.Value, err = decodeBin(d, body, rd); err != nil {
		return r, fmt.Errorf("value: %v", err)
	}
	hn, err := d.DecodeMapLen()
	if err != nil {
		return r, fmt.Errorf("headers: %v", err)
	}
	if hn > rd.Len() {
		return r, fmt.Errorf("headers: %d entries cannot fit in %d bytes", hn, rd.Len())
	}
	if hn >= 0 {
		r.Headers = make(map[string]string, hn)
		for j := 0; j < hn; j++ {
			k, err := d.DecodeString()
			if err != nil {
				return r, fmt.Errorf("header key: %v", err)
			}
			v, err := d.DecodeString()
			if err != nil {
				return r, fmt.Errorf("header %q: %v", k, err)
			}
			r.Headers[k] = v
		}
	}
	return r, nil
}

// decodeBin reads a msgpack bin (or nil) without copying: the returned slice aliases body.
func decodeBin(d *msgpack.Decoder, body []byte, rd *bytes.Reader) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > rd.Len() {
		return nil, fmt.Errorf("length %d exceeds the %d bytes left", n, rd.Len())
	}
	start := len(body) - rd.Len()
	if _, err := rd.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return body[start : start+n : start+n], nil
}

// Records decodes every record of a batch into fresh memory.
func Records(batch []byte) ([]Record, error) {
	var out []Record
	_, err := DecodeBatch(batch, func(_ int64, r Record) error {
		r.Key = bytes.Clone(r.Key)
		r.Value = bytes.Clone(r.Value)
		out = append(out, r)
		return nil
	})
	return out, err
}

// StampProducer writes an idempotent producer's id and the sequence number of the batch's first
// record into a records batch b (as SetProducer would have before Build), and computes its
// checksums again. b must hold exactly one batch that ParseHeader accepts.
func StampProducer(b []byte, id int64, baseSeq int32) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	if h.Size() != len(b) || h.Kind != KindRecords {
		return fmt.Errorf("%w: want exactly one records batch to stamp", ErrBadBatch)
	}
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(id))
	binary.BigEndian.PutUint32(b[offBaseSeq:], uint32(baseSeq))
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	sealHeader(b)
	return nil
}

// LastSequence is the sequence number of the batch's last record for its producer: BaseSequence
// plus Count less one, wrapping past math.MaxInt32 to 0 as producers number their records.
func (h Header) LastSequence() int32 { return AddSequence(h.BaseSequence, int32(h.Count)-1) }

// SequenceBefore reports whether producer sequence number a comes before b, on the circle of
// sequence numbers (they wrap past math.MaxInt32 to 0): b is less than 2^30 ahead of a.
func SequenceBefore(a, b int32) bool {
	const circle = 1 << 31
	d := ((int64(b)-int64(a))%circle + circle) % circle
	return d > 0 && d < circle/2
}

// AddSequence adds n to the producer sequence number seq, wrapping past math.MaxInt32 to 0.
func AddSequence(seq, n int32) int32 {
	return int32((int64(seq) + int64(n)) % (math.MaxInt32 + 1))
}
