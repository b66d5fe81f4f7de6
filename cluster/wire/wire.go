// Package wire is the protocol between Weir clients and a node's client port: length-prefixed
// frames over TCP, each carrying one request or response encoded with msgpack.
//
// # Frames
//
//	offset size  field
//	0      4     length of the rest of the frame, big endian (at most MaxFrameSize)
//	4      1     API (ApiProduce, ApiFetch, ...)
//	5      4     correlation id, chosen by the client, echoed in the response
//	9      n     msgpack body: the API's request or response struct
//
// A client may send many requests without waiting (pipelining); the node answers each with the
// same API and correlation id, not necessarily in order. Record data travels as whole batches in
// the storage format (storage/batch.go): a producer sends one batch per partition, and a fetch
// returns the batches as they lie on disk, so the node neither decodes nor re-encodes records.
//
// # Errors
//
// Every response carries an optional *Error with a Code from the list below and a message for
// people. A frame the node cannot parse gets an ApiError response (correlation id 0 if it could
// not be read) and the connection is closed; every other error leaves the connection usable.
//
// # Why not protoactor remote for clients
//
// Actors talk to actors over protoactor remote (DESIGN.md). Clients do not: remote needs the
// client to run an actor system with a listening gRPC server so that answers can reach it, it
// delivers at most once with no flow control, and it would make every client a Go program. A
// framed TCP protocol gives request/response with correlation ids, backpressure by TCP (the node
// stops reading a connection whose in-flight limit is reached), and a spec a client in any
// language can implement.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// API identifies the request type of a frame.
type API uint8

// The APIs. New ones are added at the end; a node answers an unknown API with ErrUnsupported.
const (
	ApiError       API = 0 // response only: the frame could not be handled at all
	ApiProduce     API = 1
	ApiFetch       API = 2
	ApiMetadata    API = 3
	ApiCreateTopic API = 4
	ApiDeleteTopic API = 5
	ApiListOffsets API = 6
	ApiJoinGroup   API = 7
	ApiHeartbeat   API = 8
	ApiLeaveGroup  API = 9
	ApiCommit      API = 10
	ApiFetchCommit API = 11
	ApiDrain       API = 12
)

var apiNames = [...]string{"error", "produce", "fetch", "metadata", "create-topic", "delete-topic",
	"list-offsets", "join-group", "heartbeat", "leave-group", "commit", "fetch-commit", "drain"}

func (a API) String() string {
	if int(a) < len(apiNames) {
		return apiNames[a]
	}
	return fmt.Sprintf("api(%d)", uint8(a))
}

const (
	// HeaderSize is the fixed part of a frame: length, API, correlation id.
	HeaderSize = 9
	// MaxFrameSize bounds a frame's length field: one maximal storage batch plus room for the
	// request around it. A larger length is a protocol error.
	MaxFrameSize = 64<<20 + 1<<20
)

// ErrFrameTooLarge is returned by ReadFrame for a length field over the limit.
var ErrFrameTooLarge = errors.New("frame too large")

// Frame is one decoded frame. Body aliases the buffer it was read into.
type Frame struct {
	API  API
	Corr uint32
	Body []byte
}

// EncodeFrame encodes v (as Encode does) straight into a new frame: one buffer, sized up front
// for messages that carry batches (ProduceRequest, FetchResponse), and no copy of the body.
func EncodeFrame(api API, corr uint32, v any) ([]byte, error) {
	return EncodeFrameTo(nil, api, corr, v)
}

// EncodeFrameTo is EncodeFrame into dst's memory when it is large enough (dst's contents are
// overwritten), so that a caller can reuse frames it has written.
func EncodeFrameTo(dst []byte, api API, corr uint32, v any) ([]byte, error) {
	hint := 64
	switch m := v.(type) {
	case *ProduceRequest:
		for _, b := range m.Batches {
			hint += len(b.Batch) + 16
		}
	case *FetchResponse:
		hint += len(m.Batches)
	}
	if cap(dst) < HeaderSize+hint {
		dst = make([]byte, 0, HeaderSize+hint)
	}
	buf := bytes.NewBuffer(dst[:HeaderSize])
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)-4))
	b[4] = byte(api)
	binary.BigEndian.PutUint32(b[5:], corr)
	return b, nil
}

// AppendFrame appends a frame holding body to dst.
func AppendFrame(dst []byte, api API, corr uint32, body []byte) []byte {
	var h [HeaderSize]byte
	binary.BigEndian.PutUint32(h[0:], uint32(5+len(body)))
	h[4] = byte(api)
	binary.BigEndian.PutUint32(h[5:], corr)
	dst = append(dst, h[:]...)
	return append(dst, body...)
}

// ReadFrame reads one frame from r into buf (grown as needed) and returns it with the buffer
// for reuse. Frames longer than limit (at most MaxFrameSize) fail with ErrFrameTooLarge.
func ReadFrame(r io.Reader, buf []byte, limit int) (Frame, []byte, error) {
	if limit <= 0 || limit > MaxFrameSize {
		limit = MaxFrameSize
	}
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return Frame{}, buf, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n < 5 {
		return Frame{}, buf, fmt.Errorf("frame length %d is shorter than its header", n)
	}
	if int64(n) > int64(limit) {
		return Frame{}, buf, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	if _, err := io.ReadFull(r, h[4:]); err != nil {
		return Frame{}, buf, unexpected(err)
	}
	body := int(n) - 5
	if cap(buf) < body {
		buf = make([]byte, body)
	}
	buf = buf[:body]
	if _, err := io.ReadFull(r, buf); err != nil {
		return Frame{}, buf, unexpected(err)
	}
	return Frame{API: API(h[4]), Corr: binary.BigEndian.Uint32(h[5:]), Body: buf}, buf, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
