package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	body, err := Encode(&ProduceRequest{Topic: "t", Acks: AcksAll, Batches: []PartitionBatch{{Partition: 2, Batch: []byte("b")}}})
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := ReadFrame(bytes.NewReader(AppendFrame(nil, ApiProduce, 77, body)), nil, 0)
	if err != nil || f.API != ApiProduce || f.Corr != 77 {
		t.Fatalf("frame %+v, %v", f, err)
	}
	var req ProduceRequest
	if err := Decode(f.API, f.Body, &req); err != nil || req.Topic != "t" || req.Batches[0].Partition != 2 {
		t.Fatalf("decoded %+v, %v", req, err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"short length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"too large", []byte{0x10, 0, 0, 0, 1}, ErrFrameTooLarge},
		{"truncated body", []byte{0, 0, 0, 9, 1, 0, 0, 0, 1, 'x'}, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(c.in), nil, 0)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 2, 1, 1}), nil, 0); err == nil {
		t.Fatal("frame shorter than its header accepted")
	}
}

func TestPartitionForKey(t *testing.T) {
	// FNV-1a 32: "" -> 2166136261, "a" -> 0xe40c292c.
	cases := []struct {
		key  string
		n    int32
		want int32
	}{
		{"", 1000, int32(2166136261 % 1000)},
		{"a", 1 << 30, int32(0xe40c292c % (1 << 30))},
		{"user-42", 1, 0},
	}
	for _, c := range cases {
		if got := PartitionForKey([]byte(c.key), c.n); got != c.want {
			t.Errorf("PartitionForKey(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}

// FuzzDecode feeds arbitrary frames and bodies to the decoders the node runs on client input:
// they must return errors, never panic.
func FuzzDecode(f *testing.F) {
	body, _ := Encode(&FetchRequest{Topic: "t", Offset: 5})
	f.Add(AppendFrame(nil, ApiFetch, 1, body))
	f.Add([]byte{0, 0, 0, 5, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, _, err := ReadFrame(bytes.NewReader(in), nil, 1<<16)
		if err != nil {
			return
		}
		for _, v := range []any{&ProduceRequest{}, &FetchRequest{}, &MetadataRequest{}, &CreateTopicRequest{},
			&ListOffsetsRequest{}, &JoinGroupRequest{}, &CommitRequest{}, &FetchCommitRequest{}} {
			_ = Decode(fr.API, fr.Body, v)
		}
	})
}

// TestEncodeFrame: EncodeFrame gives the same bytes as Encode and AppendFrame.
func TestEncodeFrame(t *testing.T) {
	for _, v := range []any{
		&ProduceRequest{Topic: "t", Acks: AcksAll, TimeoutMs: 5, Batches: []PartitionBatch{{Partition: 1, Batch: bytes.Repeat([]byte("b"), 70000)}, {Partition: 2, Batch: []byte("c")}}},
		&FetchResponse{HighWatermark: 9, Batches: bytes.Repeat([]byte("x"), 1000)},
		&AdminResponse{Err: Errorf(CodeMalformed, "bad")},
		&MetadataRequest{},
	} {
		body, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeFrame(ApiProduce, 42, v)
		if err != nil {
			t.Fatal(err)
		}
		if want := AppendFrame(nil, ApiProduce, 42, body); !bytes.Equal(got, want) {
			t.Fatalf("%T: EncodeFrame differs from AppendFrame(Encode)", v)
		}
	}
}

// TestDecodeDoesNotAlias guards the node's reuse of a connection's frame buffer: a decoded
// request must not share memory with the body it was decoded from.
func TestDecodeDoesNotAlias(t *testing.T) {
	cases := []struct {
		api  API
		msg  any
		into func() any
	}{
		{ApiProduce, &ProduceRequest{Topic: "topic", Acks: AcksAll, Batches: []PartitionBatch{{Partition: 3, Batch: []byte("batch bytes")}}}, func() any { return &ProduceRequest{} }},
		{ApiJoinGroup, &JoinGroupRequest{Group: "group", MemberID: "member", Topics: []string{"a", "b"}}, func() any { return &JoinGroupRequest{} }},
		{ApiCommit, &CommitRequest{Group: "group", MemberID: "member", Offsets: []PartitionOffset{{Topic: "t", Partition: 1, Offset: 7, Metadata: []byte("source position")}}}, func() any { return &CommitRequest{} }},
	}
	for _, c := range cases {
		body, err := Encode(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		got, want := c.into(), c.into()
		if err := Decode(c.api, body, got); err != nil {
			t.Fatal(err)
		}
		if err := Decode(c.api, bytes.Clone(body), want); err != nil {
			t.Fatal(err)
		}
		for i := range body {
			body[i] = 0xff
		}
		a, _ := Encode(got)
		b, _ := Encode(want)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the decoded request changed when its frame body was overwritten", c.api)
		}
	}
}

// TestEncodeFrameTo: a frame encoded into a reused buffer is the same as a new one and uses the
// buffer's memory when it is large enough.
func TestEncodeFrameTo(t *testing.T) {
	req := &ProduceRequest{Topic: "t", Acks: AcksAll, Batches: []PartitionBatch{{Partition: 1, Batch: bytes.Repeat([]byte("x"), 1000)}}}
	want, err := EncodeFrame(ApiProduce, 7, req)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte{0xee}, 4096)
	got, err := EncodeFrameTo(old[:10], ApiProduce, 7, req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("a frame encoded into a reused buffer differs from a new one")
	}
	if &got[0] != &old[0] {
		t.Fatal("the reused buffer was large enough but not used")
	}
	small, err := EncodeFrameTo(make([]byte, 0, 8), ApiProduce, 7, req)
	if err != nil || !bytes.Equal(small, want) {
		t.Fatalf("a frame encoded past a small buffer differs: %v", err)
	}
}
