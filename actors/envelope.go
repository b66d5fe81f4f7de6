package actors

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Actor messages that may cross a node boundary are Go structs registered here with a type tag.
// Over protoactor remote they travel inside one protobuf type, wrapperspb.BytesValue (remote
// only carries protobuf messages), holding:
//
//	offset size field
//	0      2    type tag, big endian
//	2      n    msgpack of the struct
//
// A node that receives a tag it does not know answers nothing and logs it; it never crashes.
// Within one node the structs are sent as they are, without encoding.

// Envelope is the one message type on the wire between actors of different nodes.
type Envelope = wrapperspb.BytesValue

var codec = struct {
	sync.RWMutex
	byTag  map[uint16]reflect.Type
	byType map[reflect.Type]uint16
}{byTag: map[uint16]reflect.Type{}, byType: map[reflect.Type]uint16{}}

// register records a message type (a struct, sent as a pointer) under tag. Tags are part of the
// protocol: never reuse or renumber one.
func register(tag uint16, msg any) {
	t := reflect.TypeOf(msg)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("actors: register %T: want a pointer to a struct", msg))
	}
	codec.Lock()
	defer codec.Unlock()
	if old, ok := codec.byTag[tag]; ok && old != t {
		panic(fmt.Sprintf("actors: tag %d registered twice (%v, %v)", tag, old, t))
	}
	codec.byTag[tag] = t
	codec.byType[t] = tag
}

// Wrap encodes a registered message into an envelope.
func Wrap(msg any) (*Envelope, error) {
	codec.RLock()
	tag, ok := codec.byType[reflect.TypeOf(msg)]
	codec.RUnlock()
	if !ok {
		return nil, fmt.Errorf("actors: %T is not a registered message", msg)
	}
	b := make([]byte, 2, 64)
	binary.BigEndian.PutUint16(b, tag)
	body, err := msgpack.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("actors: encode %T: %w", msg, err)
	}
	return &Envelope{Value: append(b, body...)}, nil
}

// Unwrap decodes an envelope into a new message of its registered type.
func Unwrap(env *Envelope) (any, error) {
	b := env.GetValue()
	if len(b) < 2 {
		return nil, fmt.Errorf("actors: envelope of %d bytes has no type tag", len(b))
	}
	tag := binary.BigEndian.Uint16(b)
	codec.RLock()
	t, ok := codec.byTag[tag]
	codec.RUnlock()
	if !ok {
		return nil, fmt.Errorf("actors: envelope with unknown type tag %d", tag)
	}
	v := reflect.New(t.Elem()).Interface()
	if err := msgpack.Unmarshal(b[2:], v); err != nil {
		return nil, fmt.Errorf("actors: decode %v (tag %d): %w", t.Elem(), tag, err)
	}
	return v, nil
}
