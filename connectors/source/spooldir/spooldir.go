// Package spooldir is a source that ingests complete files dropped into a directory, as Flume's
// spooling directory source: one record per line, files oldest first (by modification time, then
// name), and a file whose every line the topic acknowledged is marked done: renamed with
// Config.DoneSuffix (".COMPLETED"), or deleted with Config.Delete.
//
// Files must be complete when they appear (write them elsewhere and rename them in). Hidden files
// (a leading '.') and done ones are ignored.
//
// # Position and delivery
//
// The position is the file being read and the byte offset after the last line returned. After a
// crash the source reopens that file at that offset, so a line is lost never and read twice only
// within the one batch in flight. A file is marked done only once the topic acknowledged its last
// line (connectors.Acker), and a file found fully read at Open (a crash between the commit and
// the rename) is marked done then.
//
// # Bad files
//
// A file that cannot be read, or that holds a line longer than Config.MaxLine, is moved to the
// quarantine directory (Config.Quarantine, default DIR/.quarantine) with a NAME.error file next
// to it saying why; the source logs the reason and goes on with the next file. Lines of it
// already returned stay delivered.
package spooldir

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/weirhq/weir/storage"
)

// Config configures a Source.
type Config struct {
	// Dir is the spooling directory.
	Dir string
	// DoneSuffix is added to a file's name once it is ingested (default ".COMPLETED"); with
	// Delete the file is removed instead.
	DoneSuffix string
	Delete     bool
	// Quarantine is where bad files go (default Dir/.quarantine).
	Quarantine string
	// MaxLine is the longest line, in bytes (default 1 MiB); a file with a longer one is bad.
	MaxLine int
	// Batch is the most lines one Read returns (default 1,000).
	Batch int
	// Poll is how often an empty directory is looked at again (default 500 ms).
	Poll time.Duration
	// Logger receives files done and quarantined; discarded by default.
	Logger *slog.Logger
}

// Source ingests a directory's files. It is a connectors.Source and a connectors.Acker.
type Source struct {
	cfg Config

	f    *os.File
	br   *bufio.Reader
	name string // the file being read
	ino  uint64 // its inode, which tells it from a later file of the same name
	off  int64  // offset after the last line returned
	eof  bool   // every line of name was returned
	bad  error  // name is to be quarantined for this, once the lines before are acknowledged
}

// New checks cfg and returns a Source.
func New(cfg Config) (*Source, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spooldir source: no directory")
	}
	if st, err := os.Stat(cfg.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("spooldir source: %s is not a directory (%v)", cfg.Dir, err)
	}
	if cfg.DoneSuffix == "" {
		cfg.DoneSuffix = ".COMPLETED"
	}
	if cfg.Quarantine == "" {
		cfg.Quarantine = filepath.Join(cfg.Dir, ".quarantine")
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 1 << 20
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg}, nil
}

// encodePosition is the offset and the file's inode (8 bytes each, big endian), then its name.
func encodePosition(name string, ino uint64, off int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(off))
	b = binary.BigEndian.AppendUint64(b, ino)
	return append(b, name...)
}

func decodePosition(p []byte) (name string, ino uint64, off int64, err error) {
	if len(p) < 17 {
		return "", 0, 0, fmt.Errorf("spooldir source: position of %d bytes: want an offset, an inode and a file name", len(p))
	}
	name, ino, off = string(p[16:]), binary.BigEndian.Uint64(p[8:]), int64(binary.BigEndian.Uint64(p))
	if off < 0 || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return "", 0, 0, fmt.Errorf("spooldir source: position names file %q at offset %d: not a file of the directory", name, off)
	}
	return name, ino, off, nil
}

// inode is the inode number of fi.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// Open resumes after position: the file it names at its offset, if the file is still there.
func (s *Source) Open(_ context.Context, position []byte) error {
	s.closeFile()
	if len(position) == 0 {
		return nil
	}
	name, ino, off, err := decodePosition(position)
	if err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(s.cfg.Dir, name))
	if errors.Is(err, os.ErrNotExist) || (err == nil && (!fi.Mode().IsRegular() || inode(fi) != ino)) {
		return nil // marked done already, or removed, or another file now has the name: read anew
	}
	if err := s.openFile(name, off); err != nil {
		return s.quarantine(name, err)
	}
	if off >= fi.Size() {
		return s.done() // read and acknowledged before a crash, not yet marked done
	}
	return nil
}

func (s *Source) openFile(name string, off int64) error {
	f, err := os.Open(filepath.Join(s.cfg.Dir, name))
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.Seek(off, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.br, s.name, s.ino, s.off, s.eof, s.bad = f, bufio.NewReaderSize(f, 64<<10), name, inode(fi), off, false, nil
	return nil
}

func (s *Source) closeFile() {
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.br, s.name, s.ino, s.off, s.eof, s.bad = nil, nil, "", 0, 0, false, nil
}

// next opens the oldest file waiting, if any.
func (s *Source) next() (bool, error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return false, fmt.Errorf("spooldir source: list %s: %w", s.cfg.Dir, err)
	}
	type cand struct {
		name string
		mod  time.Time
	}
	var cs []cand
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, s.cfg.DoneSuffix) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		cs = append(cs, cand{n, info.ModTime()})
	}
	sort.Slice(cs, func(i, j int) bool {
		if !cs[i].mod.Equal(cs[j].mod) {
			return cs[i].mod.Before(cs[j].mod)
		}
		return cs[i].name < cs[j].name
	})
	for _, c := range cs {
		if err := s.openFile(c.name, 0); err != nil {
			if qerr := s.quarantine(c.name, err); qerr != nil {
				return false, qerr
			}
			continue
		}
		return true, nil
	}
	return false, nil
}

// Read returns the next lines of the current file (opening the next file when there is none),
// and the position after them; it waits for a file until ctx is done.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	// The runner reads again only once what it read before is acknowledged: a file read to its
	// end is done now (Acked does this sooner, but not for a file whose end a Read found with no
	// line), and a bad file whose good lines went out is quarantined.
	switch {
	case s.f != nil && s.bad != nil:
		if err := s.quarantine(s.name, s.bad); err != nil {
			return nil, nil, err
		}
	case s.f != nil && s.eof:
		if err := s.done(); err != nil {
			return nil, nil, err
		}
	}
	for s.f == nil {
		ok, err := s.next()
		if err != nil {
			return nil, nil, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, nil
		case <-time.After(s.cfg.Poll):
		}
	}
	var recs []storage.Record
	off := s.off
	now := time.Now().UnixMilli()
	for len(recs) < s.cfg.Batch {
		line, err := s.br.ReadSlice('\n')
		full := line
		if err == bufio.ErrBufferFull {
			full = bytes.Clone(line) // line is bufio's buffer, which the next read overwrites
		}
		for err == bufio.ErrBufferFull && len(full) <= s.cfg.MaxLine+2 {
			var more []byte
			more, err = s.br.ReadSlice('\n')
			full = append(full, more...)
		}
		if len(full) > 0 {
			text := bytes.TrimSuffix(full, []byte("\n"))
			if len(text) < len(full) {
				text = bytes.TrimSuffix(text, []byte("\r"))
			}
			if len(text) > s.cfg.MaxLine {
				return s.fail(recs, off, fmt.Errorf("line at byte %d is longer than %d bytes", off, s.cfg.MaxLine))
			}
			recs = append(recs, storage.Record{Value: bytes.Clone(text), Timestamp: now})
			off += int64(len(full))
		}
		if err == io.EOF {
			s.eof = true
			break
		}
		if err != nil {
			return s.fail(recs, off, fmt.Errorf("read at byte %d: %w", off, err))
		}
	}
	s.off = off
	return recs, encodePosition(s.name, s.ino, off), nil
}

// fail handles a bad line or a read error at off of the current file: the lines before it in
// this batch go out, and the file is quarantined once they are acknowledged (at the next Read),
// or now if there are none.
func (s *Source) fail(recs []storage.Record, off int64, reason error) ([]storage.Record, []byte, error) {
	if len(recs) == 0 {
		return nil, nil, s.quarantine(s.name, reason)
	}
	s.off, s.bad = off, reason
	return recs, encodePosition(s.name, s.ino, off), nil
}

// Acked marks the current file done once its last line is acknowledged. It implements
// connectors.Acker.
func (s *Source) Acked(position []byte) {
	name, _, off, err := decodePosition(position)
	if err != nil || s.f == nil || !s.eof || s.bad != nil || name != s.name || off != s.off {
		return
	}
	if err := s.done(); err != nil {
		s.cfg.Logger.Error("spooldir source: marking a file done", "err", err) // Read returns it again
	}
}

// done marks the current file done: renamed with DoneSuffix, or deleted. A failure is an error
// for Read to return (the flow's actor fails, visibly), never a reason to read the file again.
func (s *Source) done() error {
	name := s.name
	path := filepath.Join(s.cfg.Dir, name)
	if fi, err := s.f.Stat(); err == nil && fi.Size() > s.off {
		return fmt.Errorf("spooldir source: %s grew after it was read (to %d bytes from %d): files must be complete when they appear", path, fi.Size(), s.off)
	}
	var err error
	if s.cfg.Delete {
		err = os.Remove(path)
	} else if _, serr := os.Lstat(path + s.cfg.DoneSuffix); serr == nil {
		err = fmt.Errorf("%s exists already", path+s.cfg.DoneSuffix)
	} else {
		err = os.Rename(path, path+s.cfg.DoneSuffix)
	}
	if err != nil {
		return fmt.Errorf("spooldir source: marking %s done: %w", path, err)
	}
	s.closeFile()
	s.cfg.Logger.Info("spooldir source: file done", "file", path)
	return nil
}

// quarantine moves a bad file aside with a NAME.error file saying why; a failure is an error
// for Read to return.
func (s *Source) quarantine(name string, reason error) error {
	s.closeFile()
	from := filepath.Join(s.cfg.Dir, name)
	s.cfg.Logger.Error("spooldir source: quarantining a bad file", "file", from, "reason", reason)
	if err := os.MkdirAll(s.cfg.Quarantine, 0o755); err != nil {
		return fmt.Errorf("spooldir source: quarantine %s (%v): %w", from, reason, err)
	}
	to := filepath.Join(s.cfg.Quarantine, name)
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("spooldir source: quarantine %s (%v): %w", from, reason, err)
	}
	_ = os.WriteFile(to+".error", []byte(reason.Error()+"\n"), 0o644)
	return nil
}

// Close closes the file being read.
func (s *Source) Close() error {
	s.closeFile()
	return nil
}
