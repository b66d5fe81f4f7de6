package http

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", -1},
		{"0", 0},
		{" 3 ", 3 * time.Second},
		{"-2", -1},
		{"soon", -1},
		{"Fri, 02 Jan 2026 03:04:15 GMT", 10 * time.Second},
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0}, // in the past
		{"99999999999", 365 * 24 * time.Hour},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	for status, want := range map[int]bool{0: true, 408: true, 429: true, 500: true, 502: true, 503: true,
		400: false, 401: false, 404: false, 409: false, 413: false, 301: false, 304: false} {
		if got := retryable(status); got != want {
			t.Errorf("retryable(%d) = %v, want %v", status, got, want)
		}
	}
}
