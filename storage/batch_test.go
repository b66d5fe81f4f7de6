package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func testRecords(n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{
			Key:       []byte{byte('a' + i%26)},
			Value:     bytes.Repeat([]byte{byte(i)}, i%300),
			Timestamp: 1_700_000_000_000 + int64(i*7%50) - 20, // not monotonic
		}
		if i%3 == 0 {
			out[i].Headers = map[string]string{"host": "h1", "n": strings.Repeat("x", i%5)}
		}
		if i%4 == 0 {
			out[i].Key = nil
		}
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 17, 1000} {
		recs := testRecords(n)
		b, err := EncodeBatch(recs)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.Count != uint32(n) || h.Size() != len(b) || h.Kind != KindRecords || h.ProducerID != -1 || h.BaseSequence != -1 {
			t.Fatalf("n=%d: header %+v", n, h)
		}
		var minTS, maxTS = recs[0].Timestamp, recs[0].Timestamp
		for _, r := range recs {
			maxTS = max(maxTS, r.Timestamp)
			minTS = min(minTS, r.Timestamp)
		}
		if h.FirstTimestamp != recs[0].Timestamp || h.MaxTimestamp != maxTS {
			t.Fatalf("timestamps first %d max %d, want %d %d", h.FirstTimestamp, h.MaxTimestamp, recs[0].Timestamp, maxTS)
		}
		got, err := Records(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			want := recs[i]
			if len(want.Value) == 0 {
				want.Value = got[i].Value // an empty value and a nil value encode alike
			}
			if !bytes.Equal(got[i].Key, want.Key) || !bytes.Equal(got[i].Value, want.Value) ||
				got[i].Timestamp != want.Timestamp || !reflect.DeepEqual(got[i].Headers, want.Headers) {
				t.Fatalf("n=%d record %d: got %+v want %+v", n, i, got[i], want)
			}
		}
	}
}

func TestBatchBuilderReuse(t *testing.T) {
	b := NewBatchBuilder()
	b.SetProducer(42, 7)
	for i := 0; i < 3; i++ {
		if err := b.Add(Record{Value: []byte("one"), Timestamp: 5}); err != nil {
			t.Fatal(err)
		}
	}
	first := bytes.Clone(b.Build())
	b.Reset()
	if err := b.Add(Record{Value: []byte("two"), Timestamp: 9}); err != nil {
		t.Fatal(err)
	}
	second := b.Build()
	h1, err1 := ParseBatch(first)
	h2, err2 := ParseBatch(second)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if h1.Count != 3 || h1.ProducerID != 42 || h1.BaseSequence != 7 {
		t.Fatalf("first: %+v", h1)
	}
	if h2.Count != 1 || h2.ProducerID != -1 || h2.FirstTimestamp != 9 {
		t.Fatalf("second after Reset: %+v", h2)
	}
}

// TestBatchChecksums: the log writes base offset, term and index and reseals the header without
// recomputing the body's crc, so those bytes must be outside the crc; and every byte of the
// batch must be covered by one of the two checksums.
func TestBatchChecksums(t *testing.T) {
	b, _ := EncodeBatch(testRecords(3))
	crc := binary.BigEndian.Uint32(b[offCRC:])
	putPlacement(b, 1234, 5, 6)
	h, err := ParseBatch(b)
	if err != nil {
		t.Fatalf("placement broke a checksum: %v", err)
	}
	if h.BaseOffset != 1234 || h.Term != 5 || h.Index != 6 || h.CRC != crc {
		t.Fatalf("placement not read back, or the crc changed: %+v", h)
	}
	for i := 0; i < len(b); i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := ParseBatch(c); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good, _ := EncodeBatch(testRecords(2))
	// mod changes header fields and reseals the header, so that the check of each field is
	// reached; "header crc" leaves it unsealed.
	mod := func(f func(b []byte)) []byte {
		c := bytes.Clone(good)
		f(c)
		sealHeader(c)
		return c
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:HeaderSize-1], "shorter than"},
		{"header crc", func() []byte { c := bytes.Clone(good); c[offIndex] ^= 1; return c }(), "header crc"},
		{"count beyond body", mod(func(b []byte) { binary.BigEndian.PutUint32(b[offCount:], uint32(len(b))) }), "cannot fit"},
		{"magic", mod(func(b []byte) { b[0] = 'X' }), "magic"},
		{"version", mod(func(b []byte) { b[offVersion] = 9 }), "version"},
		{"kind", mod(func(b []byte) { binary.BigEndian.PutUint16(b[offAttributes:], 9) }), "unknown kind"},
		{"huge length", mod(func(b []byte) { binary.BigEndian.PutUint32(b[offLength:], 1<<30) }), "exceeds"},
		{"body cut", good[:len(good)-1], "header says"},
		{"crc", mod(func(b []byte) { b[len(b)-1] ^= 1 }), "crc"},
		{"negative offset", mod(func(b []byte) { binary.BigEndian.PutUint64(b[offBaseOffset:], 1<<63) }), "base offset"},
		{"control with records", mod(func(b []byte) { binary.BigEndian.PutUint16(b[offAttributes:], uint16(KindNoop)) }), "claims"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBatch(c.b)
			if err == nil || !errors.Is(err, ErrBadBatch) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an ErrBadBatch mentioning %q", err, c.want)
			}
		})
	}
}

func TestDecodeBatchBadBody(t *testing.T) {
	// A valid header and CRC around a body that is not what it claims must fail cleanly.
	cases := map[string]struct {
		body  []byte
		count uint32
	}{
		"count beyond body":  {[]byte{0x94, 0, 0xc0, 0xc0, 0xc0}, 1000},
		"not an array":       {[]byte{0x01, 0, 0xc0, 0xc0, 0xc0}, 1},
		"three fields":       {[]byte{0x93, 0, 0xc0, 0xc0, 0xc0}, 1},
		"trailing bytes":     {[]byte{0x94, 0, 0xc0, 0xc0, 0xc0, 0xff}, 1},
		"bin past end":       {[]byte{0x94, 0, 0xc4, 0x40, 0xc0, 0xc0}, 1},
		"headers not a map":  {[]byte{0x94, 0, 0xc0, 0xc0, 0x01}, 1},
		"header value int":   {[]byte{0x94, 0, 0xc0, 0xc0, 0x81, 0xa1, 'k', 0x01}, 1},
		"huge map in header": {[]byte{0x94, 0, 0xc0, 0xc0, 0xdf, 0x7f, 0xff, 0xff, 0xff}, 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := make([]byte, HeaderSize+len(c.body))
			copy(b[HeaderSize:], c.body)
			fillHeader(b, KindRecords, c.count, 0, 0, -1, -1)
			_, err := Records(b)
			if !errors.Is(err, ErrBadBatch) {
				t.Fatalf("got %v, want ErrBadBatch", err)
			}
		})
	}
}

func FuzzDecodeBatch(f *testing.F) {
	good, _ := EncodeBatch(testRecords(5))
	f.Add(good)
	f.Add(controlBatch(KindConfChange, []byte("cc"), 1))
	f.Add(good[:HeaderSize])
	// A header claiming more records than its body can hold, which would make offsets wrap.
	many := bytes.Clone(good)
	binary.BigEndian.PutUint32(many[offCount:], 1<<31)
	sealHeader(many)
	f.Add(many)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// The checksums stop almost every mutation at the door; fix them so that the header
		// checks and the body decoder meet the mutated bytes too.
		if len(b) < HeaderSize {
			return
		}
		c := bytes.Clone(b)
		sealHeader(c)
		if h, err := ParseHeader(c); err == nil && len(c) >= h.Size() {
			c = c[:h.Size()]
			binary.BigEndian.PutUint32(c[offCRC:], checksum(c))
			sealHeader(c)
			checkDecode(t, c)
		}
	})
}

func checkDecode(t *testing.T, b []byte) {
	{
		h, err := DecodeBatch(b, func(off int64, r Record) error { return nil })
		if err != nil {
			if !errors.Is(err, ErrBadBatch) {
				t.Fatalf("error not an ErrBadBatch: %v", err)
			}
			return
		}
		// A batch that decodes must survive a round trip with the same records.
		recs, err := Records(b)
		if err != nil || len(recs) != int(h.Count) {
			t.Fatalf("Records disagrees with DecodeBatch: %d records, %v", len(recs), err)
		}
		if h.Kind != KindRecords {
			return
		}
		again, err := EncodeBatch(recs)
		if err != nil {
			t.Fatal(err)
		}
		recs2, err := Records(again)
		if err != nil || len(recs2) != len(recs) {
			t.Fatalf("re-encoded batch: %d records, %v", len(recs2), err)
		}
		for i := range recs {
			if !bytes.Equal(recs[i].Key, recs2[i].Key) || !bytes.Equal(recs[i].Value, recs2[i].Value) ||
				recs[i].Timestamp != recs2[i].Timestamp || len(recs[i].Headers) != len(recs2[i].Headers) {
				t.Fatalf("record %d changed in a round trip", i)
			}
		}
	}
}

// TestDecodeBatches: records before from are skipped, whole earlier batches without decoding;
// the next offset follows the last batch; a batch cut short is an error.
func TestDecodeBatches(t *testing.T) {
	var data []byte
	for base := int64(10); base < 40; base += 10 {
		b := NewBatchBuilder()
		for i := range 10 {
			if err := b.Add(Record{Value: []byte(fmt.Sprint(base + int64(i)))}); err != nil {
				t.Fatal(err)
			}
		}
		batch := b.Build()
		putPlacement(batch, base, 1, uint64(base))
		data = append(data, batch...)
	}
	var got []int64
	next, err := DecodeBatches(data, 15, func(off int64, r Record) error {
		if string(r.Value) != fmt.Sprint(off) {
			t.Fatalf("offset %d holds %q", off, r.Value)
		}
		got = append(got, off)
		return nil
	})
	if err != nil || next != 40 || len(got) != 25 || got[0] != 15 {
		t.Fatalf("next %d, %d records from %v, %v", next, len(got), got[:min(1, len(got))], err)
	}
	if next, err := DecodeBatches(data, 40, func(int64, Record) error { t.Fatal("a record past the end"); return nil }); err != nil || next != 40 {
		t.Fatalf("from the end: next %d, %v", next, err)
	}
	cut := data[:len(data)-5]
	if _, err := DecodeBatches(cut, 0, func(int64, Record) error { return nil }); !errors.Is(err, ErrBadBatch) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("a batch cut short: %v", err)
	}
}
