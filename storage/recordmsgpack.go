package storage

import (
	"encoding/binary"
	"math"
)

// The msgpack of a stored record, appended to a byte slice: the bytes msgpack.Encoder writes for
// EncodeArrayLen(4), EncodeInt(delta), EncodeBytes(key), EncodeBytes(value) and a map of str to
// str (or nil), in its smallest forms (see the msgpack spec's format codes below).
const (
	mpFixArray4 = 0x94 // fixarray of 4
	mpNil       = 0xc0
	mpBin8      = 0xc4
	mpBin16     = 0xc5
	mpBin32     = 0xc6
	mpUint8     = 0xcc
	mpUint16    = 0xcd
	mpUint32    = 0xce
	mpUint64    = 0xcf
	mpInt8      = 0xd0
	mpInt16     = 0xd1
	mpInt32     = 0xd2
	mpInt64     = 0xd3
	mpFixMap    = 0x80 // | length, below 16
	mpMap16     = 0xde
	mpMap32     = 0xdf
	mpFixStr    = 0xa0 // | length, below 32
	mpStr8      = 0xd9
	mpStr16     = 0xda
	mpStr32     = 0xdb
)

// appendRecord appends one record's msgpack array [delta, key, value, headers].
func appendRecord(b []byte, delta int64, key, value []byte, headers map[string]string) []byte {
	b = append(b, mpFixArray4)
	b = appendInt(b, delta)
	b = appendBin(b, key)
	b = appendBin(b, value)
	if headers == nil {
		return append(b, mpNil)
	}
	b = appendLen(b, len(headers), 16, mpFixMap, 0, mpMap16, mpMap32)
	for k, v := range headers {
		b = appendStr(b, k)
		b = appendStr(b, v)
	}
	return b
}

// appendInt appends n as msgpack.Encoder.EncodeInt does: a positive fixint up to 127, a negative
// one down to -32, else the smallest (u)int 8, 16, 32 or 64 that holds it.
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= math.MaxInt8, n < 0 && n >= -32:
		return append(b, byte(n))
	case n >= 0 && n <= math.MaxUint8:
		return append(b, mpUint8, byte(n))
	case n >= 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpUint16), uint16(n))
	case n >= 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, mpUint32), uint32(n))
	case n >= 0:
		return binary.BigEndian.AppendUint64(append(b, mpUint64), uint64(n))
	case n >= math.MinInt8:
		return append(b, mpInt8, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, mpInt16), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, mpInt32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, mpInt64), uint64(n))
}

// appendBin appends v as bin 8, 16 or 32, or nil for a nil slice (an empty one stays empty).
func appendBin(b, v []byte) []byte {
	if v == nil {
		return append(b, mpNil)
	}
	b = appendLen(b, len(v), 0, 0, mpBin8, mpBin16, mpBin32)
	return append(b, v...)
}

// appendStr appends s as fixstr, str 8, 16 or 32.
func appendStr(b []byte, s string) []byte {
	b = appendLen(b, len(s), 32, mpFixStr, mpStr8, mpStr16, mpStr32)
	return append(b, s...)
}

// appendLen appends a length: below fixBelow in the fix code's low bits, else below 256 with
// code8 (if the type has one: nonzero), up to 65535 with code16, else with code32.
func appendLen(b []byte, n, fixBelow int, fix, code8, code16, code32 byte) []byte {
	switch {
	case n < fixBelow:
		return append(b, fix|byte(n))
	case code8 != 0 && n <= math.MaxUint8:
		return append(b, code8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, code16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, code32), uint32(n))
}
