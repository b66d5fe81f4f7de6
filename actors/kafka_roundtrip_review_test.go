package actors

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaRoundTrip: records produced and fetched back come out as kmsg read them when
// produced: null and empty keys and values apart, empty header values empty (not null),
// negative timestamp deltas, and records whose length takes 1, 2, 3 and 4 bytes as a varint;
// records before the fetch offset are left out, and the batch's CRC covers what it should.
func TestKafkaRoundTrip(t *testing.T) {
	in := []kmsg.Record{
		{Value: []byte("v")},
		{Key: []byte{}, Value: []byte{}},
		{Key: []byte("k"), Value: nil, TimestampDelta64: -5},
		{Value: []byte("h"), Headers: []kmsg.Header{{Key: "e", Value: []byte{}}}},
		{Key: []byte("k"), Value: make([]byte, 60), TimestampDelta64: 3},
		{Value: make([]byte, 200), Headers: []kmsg.Header{{Key: "a", Value: []byte("1")}}},
		{Value: make([]byte, 9000), TimestampDelta64: -1},
		{Value: make([]byte, 1<<20+10)},
	}
	for i := range in {
		if len(in[i].Value) > 0 {
			in[i].Value[0] = byte(i)
		}
	}
	stored, code, err := kafkaToWeir(rvBatch(0, nil, in...))
	if err != nil {
		t.Fatalf("produce: %d %v", code, err)
	}
	for from := int64(0); from < int64(len(in)); from++ {
		out, err := weirToKafka(stored, from)
		if err != nil {
			t.Fatal(err)
		}
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(out); err != nil {
			t.Fatal(err)
		}
		if int(rb.Length)+12 != len(out) || rb.FirstOffset != from || int(rb.NumRecords) != len(in)-int(from) || rb.LastOffsetDelta != rb.NumRecords-1 {
			t.Fatalf("from %d: batch length %d of %d bytes, first offset %d, %d records, last delta %d", from, rb.Length, len(out), rb.FirstOffset, rb.NumRecords, rb.LastOffsetDelta)
		}
		if got, want := uint32(rb.CRC), crc32.Checksum(out[21:], castagnoliTable); got != want {
			t.Fatalf("from %d: CRC %08x, computed %08x", from, got, want)
		}
		recs := rb.Records
		for i := from; i < int64(len(in)); i++ {
			want := in[i]
			var kr kmsg.Record
			if err := kr.ReadFrom(recs); err != nil {
				t.Fatalf("from %d: record %d: %v", from, i, err)
			}
			l, n := binary.Varint(recs)
			recs = recs[n+int(l):]
			wantTS := 1_700_000_000_000 + want.TimestampDelta64
			if got := rb.FirstTimestamp + kr.TimestampDelta64; got != wantTS {
				t.Fatalf("from %d: record %d: timestamp %d, want %d", from, i, got, wantTS)
			}
			if kr.OffsetDelta != int32(i-from) {
				t.Fatalf("from %d: record %d: offset delta %d", from, i, kr.OffsetDelta)
			}
			if (kr.Key == nil) != (want.Key == nil) || !bytes.Equal(kr.Key, want.Key) || (kr.Value == nil) != (want.Value == nil) || !bytes.Equal(kr.Value, want.Value) {
				t.Fatalf("from %d: record %d: key %q (nil %v) value of %d (nil %v); want key %q (nil %v) value of %d (nil %v)", from, i,
					kr.Key, kr.Key == nil, len(kr.Value), kr.Value == nil, want.Key, want.Key == nil, len(want.Value), want.Value == nil)
			}
			if len(kr.Headers) != len(want.Headers) {
				t.Fatalf("from %d: record %d: %d headers, want %d", from, i, len(kr.Headers), len(want.Headers))
			}
			for j, h := range kr.Headers {
				w := want.Headers[j]
				if h.Key != w.Key || !bytes.Equal(h.Value, w.Value) || (h.Value == nil) != (w.Value == nil) {
					t.Fatalf("from %d: record %d: header %q=%q (null %v), want %q=%q (null %v)", from, i, h.Key, h.Value, h.Value == nil, w.Key, w.Value, w.Value == nil)
				}
			}
		}
		if len(recs) != 0 {
			t.Fatalf("from %d: %d bytes after the records", from, len(recs))
		}
	}
}
