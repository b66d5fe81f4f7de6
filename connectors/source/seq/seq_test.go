package seq

import (
	"context"
	"errors"
	"io"
	"testing"
)

func TestSequenceResumesAtPosition(t *testing.T) {
	s, err := New(Config{Count: 25, Batch: 10, Prefix: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	recs, pos, err := s.Read(context.Background())
	if err != nil || len(recs) != 10 || string(recs[0].Value) != "n0" || string(recs[9].Value) != "n9" {
		t.Fatalf("first read: %d records, %v", len(recs), err)
	}
	// A new source opened at the committed position continues after it.
	s2, _ := New(Config{Count: 25, Batch: 10, Prefix: "n"})
	if err := s2.Open(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		recs, _, err := s2.Read(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
	}
	if len(got) != 15 || got[0] != "n10" || got[14] != "n24" {
		t.Fatalf("after resume: %v", got)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := New(Config{Count: -1}); err == nil {
		t.Fatal("negative count accepted")
	}
	s, _ := New(Config{})
	if err := s.Open(context.Background(), []byte{1, 2, 3}); err == nil {
		t.Fatal("3-byte position accepted")
	}
}

func TestRateWaitsWithinContext(t *testing.T) {
	s, _ := New(Config{Rate: 0.001, Batch: 5})
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if recs, _, err := s.Read(context.Background()); err != nil || len(recs) != 1 {
		t.Fatalf("first read at a slow rate: %d records, %v", len(recs), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20e6)
	defer cancel()
	if recs, _, err := s.Read(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("read past the rate: %d records, %v (want none when ctx ends)", len(recs), err)
	}
}
