package storage

import (
	"fmt"
	"testing"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentBytes = 8192
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		b, _ := EncodeBatch([]Record{{Value: []byte(fmt.Sprint("v", i)), Timestamp: int64(1000 + i)}, {Key: []byte("k"), Value: make([]byte, 100), Timestamp: int64(1000 + i), Headers: map[string]string{"a": "b"}}})
		off, err := l.Append(b)
		if err != nil || off != int64(2*i) {
			t.Fatal(off, err)
		}
	}
	t.Log("segments", l.Segments(), "end", l.EndOffset())
	l.Close()
	l, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 200; off++ {
		buf, err := l.Read(nil, off, 10, l.EndOffset())
		if err != nil {
			t.Fatal(off, err)
		}
		h, err := ParseBatch(buf)
		if err != nil || h.BaseOffset > off || h.NextOffset() <= off {
			t.Fatal(off, h, err)
		}
	}
	o, ok, err := l.OffsetForTime(1050)
	t.Log(o, ok, err)
	l.Close()
}
