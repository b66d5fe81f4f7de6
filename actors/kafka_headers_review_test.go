package actors

import (
	"encoding/binary"
	"hash/crc32"
	"runtime"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKafkaToWeirManyHeadersBounded: a record claiming many headers does not make the node
// allocate many times the record's size. kmsg.Record.ReadFrom makes the headers slice at the
// length a record claims (a kmsg.Header, 40 bytes, per header; an empty one takes 2 bytes on
// the wire), and the map of headers was sized by the claim: a record of 1 MiB of empty headers
// took 64 MB to convert. What the request may allocate is drawn from its budget, so it is
// refused or stays within the budget.
func TestKafkaToWeirManyHeadersBounded(t *testing.T) {
	r := kmsg.Record{Value: []byte("v"), Headers: make([]kmsg.Header, 1<<19)}
	batch := rvBatch(0, nil, r)
	const budget = 4 << 20
	b := budget
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := convertBatches(batch, &b)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte batch: %d bytes allocated (err %v)", len(batch), allocated, err)
	if limit := uint64(2*len(batch) + budget); allocated > limit {
		t.Fatalf("a %d-byte batch of one record with %d headers: %d bytes allocated, want at most %d", len(batch), len(r.Headers), allocated, limit)
	}
}

// TestKafkaRecordCutShortMessage: a record cut short within its length is refused with an
// error that says so, not with kmsg's "response did not contain enough data to be valid" (a
// produce is a request), which the producer is sent as the partition's error message.
func TestKafkaRecordCutShortMessage(t *testing.T) {
	body := (&kmsg.Record{Key: []byte("k"), Value: []byte("value")}).AppendTo(nil)[1:] // without its length
	for cut := 1; cut < len(body); cut++ {
		recs := append(binary.AppendVarint(nil, int64(cut)), body[:cut]...)
		rb := kmsg.RecordBatch{Magic: 2, PartitionLeaderEpoch: -1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: recs}
		batch := rb.AppendTo(nil)
		binary.BigEndian.PutUint32(batch[8:12], uint32(len(batch)-12))
		binary.BigEndian.PutUint32(batch[17:21], crc32.Checksum(batch[21:], castagnoliTable))
		_, code, err := kafkaToWeir(batch)
		if err == nil {
			t.Fatalf("cut at %d of %d: accepted", cut, len(body))
		}
		if code != kafkaCorruptMessage || !strings.Contains(err.Error(), "cut short") || strings.Contains(err.Error(), "response") {
			t.Fatalf("cut at %d of %d: code %d, %q; want CORRUPT_MESSAGE saying the record is cut short", cut, len(body), code, err)
		}
	}
}
