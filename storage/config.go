package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// SyncMode says when appended data is fsynced.
type SyncMode int

const (
	// SyncAlways fsyncs before Append returns: an acknowledged batch survives a machine crash.
	// Every append pays one fsync (milliseconds on most disks), so batch generously.
	SyncAlways SyncMode = iota
	// SyncInterval fsyncs at most every Config.SyncInterval, from the appending goroutine and from
	// the log's syncer goroutine: a machine crash loses at most that window, a process crash nothing
	// (the page cache survives it).
	SyncInterval
	// SyncNever leaves the active segment to the kernel's writeback: for logs whose durability comes
	// from replication (a majority of replicas holds every committed entry), where a machine crash
	// of one replica is repaired from the others. A process crash still loses nothing.
	SyncNever
)

func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// ParseSyncMode reads "always", "interval" or "never".
func ParseSyncMode(s string) (SyncMode, error) {
	for _, m := range []SyncMode{SyncAlways, SyncInterval, SyncNever} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("sync mode %q: want always, interval or never", s)
}

// Config configures one log. Start from DefaultConfig and call Validate (Open does).
type Config struct {
	// FS is where files live; vfs.OS by default.
	FS vfs.FS
	// SegmentBytes rolls the active segment once it holds this many bytes.
	SegmentBytes int64
	// SegmentAge rolls the active segment once its first batch is this old (0: never by age).
	SegmentAge time.Duration
	// IndexIntervalBytes is how many log bytes lie between two sparse index entries at most: a
	// lookup reads at most about this much beyond the index entry it lands on.
	IndexIntervalBytes int
	// Sync is the durability policy; SyncInterval is the period for SyncInterval.
	Sync         SyncMode
	SyncInterval time.Duration
	// RetentionBytes deletes the oldest segments while the log is larger (0: unlimited).
	RetentionBytes int64
	// RetentionAge deletes segments whose newest record is older (0: unlimited).
	RetentionAge time.Duration
	// DropCache asks the OS to drop sealed segments from its page cache once they are fsynced,
	// all but the newest CachedSealedSegments of them, and the active segment's data older than
	// its newest CachedTailBytes once written back, so that the page cache does not grow by
	// every byte written. On the benchmark VM a write into a growing page cache became 14 times
	// as costly once about 1.4 GB was cached (docs/benchmarks.md); consumers that keep up read
	// the active segment and the newest sealed ones, which stay cached, while catching-up
	// consumers read older segments from disk. False leaves the page cache to the kernel, as
	// Kafka does. Only clean pages are dropped: it never loses data.
	DropCache bool
	// VerifyReads checks the CRC of every batch that Read returns. It costs little (CRC32C runs in
	// hardware) and turns silent bit rot into an ErrCorrupt naming the file and position.
	VerifyReads bool
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Logger receives recovery and retention events; discarded by default.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: 128 MiB segments, an index entry every 4 KiB, fsync on
// every append, unlimited retention, verified reads.
func DefaultConfig() Config {
	return Config{
		FS:                 vfs.OS,
		SegmentBytes:       128 << 20,
		DropCache:          true,
		IndexIntervalBytes: 4096,
		Sync:               SyncAlways,
		SyncInterval:       time.Second,
		VerifyReads:        true,
		Now:                time.Now,
	}
}

// CachedSealedSegments is how many of the newest sealed segments DropCache leaves cached.
const CachedSealedSegments = 2

// CachedTailBytes is how much of the active segment's newest data DropCache leaves cached: the
// log's syncer writes back and drops everything older, EvictStep bytes at a time, so that the
// page cache (and the kernel's dirty pages) holds about this much per partition whatever the
// segment size. Consumers that keep up read inside it.
const (
	CachedTailBytes = 16 << 20
	EvictStep       = 4 << 20
)

// maxSegmentBytes keeps positions inside a segment within the index's 32-bit fields.
const maxSegmentBytes = 1<<32 - MaxBatchSize - 1

// Validate checks the config and fills unset optional fields with defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.FS == nil {
		c.FS = vfs.OS
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SegmentBytes < 4096 || c.SegmentBytes > maxSegmentBytes {
		errs = append(errs, fmt.Errorf("SegmentBytes %d: want 4096 to %d", c.SegmentBytes, int64(maxSegmentBytes)))
	}
	if c.SegmentAge < 0 {
		errs = append(errs, fmt.Errorf("SegmentAge %v: must not be negative", c.SegmentAge))
	}
	if c.IndexIntervalBytes < 64 || c.IndexIntervalBytes > 1<<24 {
		errs = append(errs, fmt.Errorf("IndexIntervalBytes %d: want 64 to %d", c.IndexIntervalBytes, 1<<24))
	}
	switch c.Sync {
	case SyncAlways, SyncNever:
	case SyncInterval:
		if c.SyncInterval <= 0 {
			errs = append(errs, fmt.Errorf("SyncInterval %v: must be positive with SyncInterval mode", c.SyncInterval))
		}
	default:
		errs = append(errs, fmt.Errorf("Sync %v: unknown mode", c.Sync))
	}
	if c.RetentionBytes < 0 {
		errs = append(errs, fmt.Errorf("RetentionBytes %d: must not be negative", c.RetentionBytes))
	}
	if c.RetentionAge < 0 {
		errs = append(errs, fmt.Errorf("RetentionAge %v: must not be negative", c.RetentionAge))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage config: %w", err)
	}
	return nil
}
