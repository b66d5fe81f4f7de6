package storage

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// msgpackRecord is a record as msgpack.Encoder encodes it (how BatchBuilder encoded records
// before appendRecord): the reference appendRecord must match byte for byte.
func msgpackRecord(t testing.TB, delta int64, key, value []byte, headers map[string]string) []byte {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	err := e.EncodeArrayLen(4)
	if err == nil {
		err = e.EncodeInt(delta)
	}
	if err == nil {
		err = e.EncodeBytes(key)
	}
	if err == nil {
		err = e.EncodeBytes(value)
	}
	if err == nil && headers == nil {
		err = e.EncodeNil()
	} else if err == nil {
		err = e.EncodeMapLen(len(headers))
		for k, v := range headers { // one entry at most where bytes are compared: map order
			if err == nil {
				err = e.EncodeString(k)
			}
			if err == nil {
				err = e.EncodeString(v)
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAppendRecordLikeMsgpack: appendRecord writes the bytes msgpack.Encoder writes, at every
// boundary of the integer, bin, str and map forms.
func TestAppendRecordLikeMsgpack(t *testing.T) {
	var deltas []int64
	for _, n := range []int64{0, 127, 255, 1<<16 - 1, 1<<32 - 1, math.MaxInt64, 32, 128, 256, 1 << 16, 1 << 32} {
		deltas = append(deltas, n, n-1, n+1, -n, -n-1, -n+1)
	}
	deltas = append(deltas, math.MinInt64, math.MinInt8, math.MinInt16, math.MinInt32, -33, -32, -31)
	for _, d := range deltas {
		if got, want := appendRecord(nil, d, nil, nil, nil), msgpackRecord(t, d, nil, nil, nil); !bytes.Equal(got, want) {
			t.Fatalf("delta %d: %x, msgpack %x", d, got, want)
		}
	}
	sizes := []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000}
	for _, n := range sizes {
		v := bytes.Repeat([]byte{'v'}, n)
		s := strings.Repeat("s", n)
		for _, c := range []struct {
			key, value []byte
			headers    map[string]string
		}{
			{v, nil, nil},
			{nil, v, nil},
			{[]byte{}, v, map[string]string{}},
			{v, v, map[string]string{s: "x"}},
			{nil, []byte("x"), map[string]string{"k": s}},
		} {
			got := appendRecord([]byte("prefix"), 7, c.key, c.value, c.headers)
			want := append([]byte("prefix"), msgpackRecord(t, 7, c.key, c.value, c.headers)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d: the bytes differ from msgpack's (%d and %d bytes)", n, len(got), len(want))
			}
		}
	}
	for _, n := range []int{2, 15, 16, 17, 1 << 16} { // map lengths; entries in map order
		h := map[string]string{}
		for i := range n {
			h[strings.Repeat("k", i%40)+string(rune('a'+i%26))+strings.Repeat("x", i/1040)+string(rune(i))] = "v"
		}
		n = len(h)
		got := appendRecord(nil, 0, nil, nil, h)
		want := msgpackRecord(t, 0, nil, nil, map[string]string{})
		// The map's header (fixmap, map 16 or map 32) as msgpack writes it for n entries.
		var head bytes.Buffer
		if err := msgpack.NewEncoder(&head).EncodeMapLen(n); err != nil {
			t.Fatal(err)
		}
		want = append(want[:len(want)-1], head.Bytes()...)
		if !bytes.HasPrefix(got, want) {
			t.Fatalf("%d headers: starts %x, msgpack %x", n, got[:len(want)], want)
		}
		b := NewBatchBuilder()
		if err := b.Add(Record{Headers: h}); err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeBatch(b.Build(), func(_ int64, r Record) error {
			if len(r.Headers) != len(h) {
				t.Fatalf("%d headers decoded, %d added", len(r.Headers), len(h))
			}
			for k, v := range h {
				if r.Headers[k] != v {
					t.Fatalf("header %q: %q, want %q", k, r.Headers[k], v)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzAppendRecord: appendRecord and msgpack.Encoder write the same bytes.
func FuzzAppendRecord(f *testing.F) {
	f.Add(int64(-200), []byte("k"), []byte("v"), false, "h", "x")
	f.Add(int64(1<<40), []byte(nil), []byte{}, true, "", "")
	f.Fuzz(func(t *testing.T, delta int64, key, value []byte, nilValue bool, hk, hv string) {
		if nilValue {
			value = nil
		}
		var h map[string]string
		if hk != "" {
			h = map[string]string{hk: hv}
		}
		if got, want := appendRecord(nil, delta, key, value, h), msgpackRecord(t, delta, key, value, h); !bytes.Equal(got, want) {
			t.Fatalf("%x, msgpack %x", got, want)
		}
	})
}
