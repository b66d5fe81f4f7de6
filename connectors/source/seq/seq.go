// Package seq is a sequence-generator source: records whose values are consecutive numbers,
// optionally at a fixed rate. Its position is the next number, so after a crash it resumes
// exactly where the topic's acknowledgements left it.
package seq

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/weirhq/weir/storage"
)

// Config configures the generator.
type Config struct {
	// Count is how many records to generate in all (0: without end).
	Count int64
	// Batch is how many records one Read returns at most (default 100).
	Batch int
	// Rate limits records per second (0: as fast as the topic takes them).
	Rate float64
	// Prefix is put before each number in the value.
	Prefix string
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Source generates the sequence.
type Source struct {
	cfg   Config
	next  int64
	start time.Time
	base  int64
}

// New returns a generator.
func New(cfg Config) (*Source, error) {
	if cfg.Count < 0 || cfg.Rate < 0 || cfg.Batch < 0 {
		return nil, fmt.Errorf("seq: negative count, rate or batch")
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{cfg: cfg}, nil
}

// Open implements connectors.Source: position is the next number (8 bytes, big endian).
func (s *Source) Open(_ context.Context, position []byte) error {
	switch len(position) {
	case 0:
		s.next = 0
	case 8:
		s.next = int64(binary.BigEndian.Uint64(position))
	default:
		return fmt.Errorf("seq: position of %d bytes, want 8", len(position))
	}
	s.start, s.base = s.cfg.Now(), s.next
	return nil
}

// Read implements connectors.Source.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if s.cfg.Count > 0 && s.next >= s.cfg.Count {
		return nil, nil, io.EOF
	}
	n := int64(s.cfg.Batch)
	if s.cfg.Count > 0 {
		n = min(n, s.cfg.Count-s.next)
	}
	if s.cfg.Rate > 0 {
		// Records allowed by now at the rate; wait (within ctx) for at least one.
		for {
			allowed := s.base + int64(s.cfg.Now().Sub(s.start).Seconds()*s.cfg.Rate) + 1
			if allowed > s.next {
				n = min(n, allowed-s.next)
				break
			}
			select {
			case <-ctx.Done():
				return nil, nil, nil
			case <-time.After(time.Duration(float64(time.Second) / s.cfg.Rate)):
			}
		}
	}
	now := s.cfg.Now().UnixMilli()
	recs := make([]storage.Record, n)
	for i := range recs {
		v := s.cfg.Prefix + strconv.FormatInt(s.next+int64(i), 10)
		recs[i] = storage.Record{Value: []byte(v), Timestamp: now}
	}
	s.next += n
	pos := make([]byte, 8)
	binary.BigEndian.PutUint64(pos, uint64(s.next))
	return recs, pos, nil
}

// Close implements connectors.Source.
func (s *Source) Close() error { return nil }
