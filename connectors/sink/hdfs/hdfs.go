// Package hdfs is a sink that writes records to HDFS files, as Flume's HDFS sink, exactly once:
// every record the flow reads lands in exactly one finished file, and no in-progress file
// survives a restart. It writes with github.com/colinmarc/hdfs/v2.
//
// # Files
//
// Config.Path is the directory of each record's file, a template: %Y %m %d %H %M %S are taken
// from the record's timestamp (in Config.Location, UTC by default), floored to a multiple of
// Config.Round if set; %{topic} and %{partition} are the record's topic and partition, and
// %{NAME} the value of its header NAME (empty if it has none; a '/' in it becomes '_'). A
// partition's records go to the files of the directories they name, several open at a time;
// each is written under a hidden in-progress name and renamed when the partition rolls:
//
//	DIR/.PREFIXTOPIC-PARTITION-FIRST.TOKEN.inprogress       being written (TOKEN: the sink's)
//	DIR/PREFIXTOPIC-PARTITION-FIRST-LASTSUFFIX              finished
//
// FIRST and LAST are the first and last offsets of the partition's roll (zero-padded to 20
// digits), so the name tells which records the file may hold. A partition rolls, closing and
// renaming all of its files, when one of them reaches Config.RollSize bytes or
// Config.RollCount records, when its oldest file is Config.RollInterval old, when it has not been
// written to for Config.IdleTimeout, and when the sink closes.
//
// # Exactly once
//
// HDFS data is durable only once its file is closed. The sink is a connectors.StagingSink: the
// runner commits a partition's offset only when the sink reports the records before it durable,
// that is after the roll that renamed their files. For each partition the sink keeps its state
// in HDFS, as numbered files Config.StateDir/TOPIC-PARTITION/N.json (the highest that reads
// whole is current), each created exclusively: a new one before each in-progress file is created
// (listing it) and before a roll's renames (listing them, with the last offset they make
// durable). When a partition comes to the sink (at start, after a crash, after a rebalance), it
// reads the state: it finishes the renames listed, removes the in-progress files listed, skips
// the records at or below the last durable offset (which the runner reads again when a crash
// came between a roll and the commit), and writes a new state. That write fences off a member
// that had the partition before and has not yet noticed losing it (a Write stuck past its
// session): its next state write finds the number taken and it gives the partition up
// (connectors.ErrReplay) instead of writing over the new owner's work. One state directory
// belongs to one sink and its group.
//
// Such a member may still create an in-progress file that it listed in a state just before the
// new owner read it (the new owner found it missing). The new owner watches for the listed files
// it found missing for ten minutes (every second, and before each state write; its states list
// them too, for whoever comes next) and removes them when they appear, so that none is left even
// when the former owner dies without being fenced off. A former owner may also finish renames
// that the new owner also finishes (the same names, so nothing is repeated).
//
// A failed HDFS operation is retried with a growing wait for Config.RetryFor; then, or when a
// write to a DataNode fails, the partition's in-progress files are abandoned and the sink
// returns connectors.ErrReplay: the runner reads the records again from the committed offset
// after a backoff, and the sink writes them to new files. An HDFS outage of any length thus
// delays the files, while the topic holds the backlog.
//
// # Formats
//
// Text writes each value and "\n"; JSON writes one object per line with topic, partition,
// offset, timestamp (milliseconds), key, headers and value (key and value as strings). Gzip
// compresses either, one gzip stream per file. Avro writes an object container file of records
// of AvroSchema (the same fields, key and value as bytes), a block per Write and file,
// compressed as Config.AvroCodec says. Parquet writes ParquetRecord rows (github.com/parquet-go),
// row groups of 50,000 rows at most, pages compressed as Config.ParquetCodec says; a row group is
// held in memory until it is written.
package hdfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/colinmarc/hdfs/v2"
	"github.com/linkedin/goavro/v2"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/weirhq/weir/connectors"
)

// Format is how records are written.
type Format int

// The formats.
const (
	Text    Format = iota // each value, then "\n"
	JSON                  // one JSON object per line
	Avro                  // an Avro object container file (schema AvroSchema)
	Parquet               // a Parquet file of ParquetRecord rows
)

// ParquetRecord is a row of the Parquet format.
type ParquetRecord struct {
	Topic     string            `parquet:"topic"`
	Partition int32             `parquet:"partition"`
	Offset    int64             `parquet:"offset"`
	Timestamp int64             `parquet:"timestamp"` // milliseconds since 1970
	Key       []byte            `parquet:"key,optional"`
	Headers   map[string]string `parquet:"headers"`
	Value     []byte            `parquet:"value"`
}

// AvroSchema is the schema of the Avro format's records.
const AvroSchema = `{"type": "record", "name": "Record", "namespace": "io.weir", "fields": [
  {"name": "topic", "type": "string"},
  {"name": "partition", "type": "int"},
  {"name": "offset", "type": "long"},
  {"name": "timestamp", "type": "long", "doc": "milliseconds since 1970"},
  {"name": "key", "type": ["null", "bytes"], "default": null},
  {"name": "headers", "type": {"type": "map", "values": "string"}},
  {"name": "value", "type": "bytes"}]}`

// Config configures a Sink.
type Config struct {
	// Client is passed to hdfs.NewClient: the NameNode addresses, the user, and for a
	// Kerberized cluster KerberosClient and KerberosServicePrincipleName (passed through as
	// they are; not tested here).
	Client hdfs.ClientOptions
	// Path is the directory template (see the package doc); it must be absolute.
	Path string
	// Prefix and Suffix go around finished file names (Suffix defaults to ".txt", ".jsonl",
	// with ".gz" after it with Gzip).
	Prefix, Suffix string
	// Round floors the timestamp before the time escapes (0: not at all); Location is their
	// time zone (UTC by default).
	Round    time.Duration
	Location *time.Location
	// Format and Gzip say how records are written (Gzip is for Text and JSON); AvroCodec is
	// the Avro format's block compression: "null" (default), "deflate" or "snappy";
	// ParquetCodec the Parquet format's page compression: "snappy" (default), "zstd", "gzip"
	// or "none".
	Format       Format
	Gzip         bool
	AvroCodec    string
	ParquetCodec string
	// Roll triggers (0: not used): size in bytes (before compression) and records of a file,
	// and age of a partition's oldest open file; with none of them set, RollCount is 100,000.
	// IdleTimeout rolls a partition not written to for so long (default 30 s, so that the last
	// records of a quiet topic become durable; negative: never).
	RollSize     int64
	RollCount    int
	RollInterval time.Duration
	IdleTimeout  time.Duration
	// StateDir holds the sink's per-partition state (default: the part of Path before its
	// first escape, then ".weir-state").
	StateDir string
	// RetryFor bounds the retries of one HDFS operation (default 10 s).
	RetryFor time.Duration
	// CallTimeout bounds how long one NameNode call waits to send its request or for its answer
	// (default 30 s; negative: no bound), so that a NameNode that hangs fails the call (which is
	// retried within RetryFor) instead of blocking the sink. It is applied through a dialer for
	// Client.NamenodeDialFunc, around the one given there if any.
	CallTimeout time.Duration
	// DataNodeTimeout bounds each read and write on a connection to a DataNode (default 60 s,
	// as HDFS's own dfs.client.socket-timeout; negative: no bound), so that a DataNode that
	// stops answering in the middle of a file fails the write (the in-progress file is
	// abandoned and its records written again) instead of blocking the sink for ever. It is
	// applied through a dialer for Client.DatanodeDialFunc, around the one given there if any.
	DataNodeTimeout time.Duration
	// Logger receives rolls, recoveries and abandoned files; discarded by default.
	Logger *slog.Logger
}

// Sink writes records to HDFS. It is a connectors.StagingSink and a connectors.DurableNotifier.
type Sink struct {
	cfg   Config
	tmpl  []segment
	token string // in in-progress names: this sink's, told from another member's
	avro  *goavro.Codec
	// Parquet: the page compression.
	pqCodec compress.Codec

	mu     sync.Mutex
	client *hdfs.Client
	parts  map[partKey]*part
	failed error  // a roll by time failed: Durable returns it (ErrReplay)
	notify func() // told after a roll by time (NotifyDurable)
	stop   chan struct{}
	done   chan struct{}
}

type partKey struct {
	topic     string
	partition int32
}

// part is one partition's state.
type part struct {
	key     partKey
	loaded  bool
	last    int64 // the last offset durable in finished files (-1: none)
	written int64 // the last offset written to open files (last when none)
	files   map[string]*openFile
	touched time.Time // last write
	stateN  int64     // the number of the partition's newest state file
	// ghosts are in-progress files the state it loaded listed but that did not exist then: a
	// former owner may still create one (it listed the file, then lost the partition before
	// creating it). Every state this sink writes lists them too, and it removes them when they
	// appear, for ghostTTL.
	ghosts map[string]time.Time
	swept  time.Time // the timer's last sweep of the ghosts
}

// ghostTTL is how long a sink watches for a ghost (see part.ghosts) to appear: longer than a
// former owner's create can take (a Write is bounded by the runner's one-minute timeout).
const ghostTTL = 10 * time.Minute

type openFile struct {
	dir, tmp string
	first    int64
	w        *hdfs.FileWriter
	z        *gzip.Writer
	out      io.Writer
	ocf      *goavro.OCFWriter // Avro: the container, and the records for its next block
	pending  []any
	pq       *parquet.GenericWriter[ParquetRecord] // Parquet: the writer, and the rows to give it
	rows     []ParquetRecord
	bytes    int64
	count    int
	opened   time.Time
}

// segment is a piece of the path template: a literal, or an escape.
type segment struct {
	lit    string
	escape string // "Y", "m", ... or "{name}"
}

var escapeRE = regexp.MustCompile(`%([YmdHMS]|\{[^}]*\})`)

func parseTemplate(p string) ([]segment, error) {
	var out []segment
	at := 0
	for _, m := range escapeRE.FindAllStringIndex(p, -1) {
		if m[0] > at {
			out = append(out, segment{lit: p[at:m[0]]})
		}
		e := p[m[0]+1 : m[1]]
		if e == "{}" {
			return nil, fmt.Errorf("empty %%{} at byte %d", m[0])
		}
		out = append(out, segment{escape: e})
		at = m[1]
	}
	if at < len(p) {
		out = append(out, segment{lit: p[at:]})
	}
	for _, s := range out {
		if strings.Contains(s.lit, "%") {
			return nil, fmt.Errorf("unknown escape in %q: use %%Y %%m %%d %%H %%M %%S or %%{name}", s.lit)
		}
	}
	return out, nil
}

// New checks cfg and returns a Sink. It does not contact HDFS: Open does not either, so a sink
// starts while HDFS is away and writes once it is back.
func New(cfg Config) (*Sink, error) {
	if len(cfg.Client.Addresses) == 0 {
		return nil, errors.New("hdfs sink: no NameNode address (Client.Addresses)")
	}
	if !strings.HasPrefix(cfg.Path, "/") {
		return nil, fmt.Errorf("hdfs sink: path %q is not absolute", cfg.Path)
	}
	tmpl, err := parseTemplate(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("hdfs sink: path %q: %w", cfg.Path, err)
	}
	if cfg.Format < Text || cfg.Format > Parquet {
		return nil, fmt.Errorf("hdfs sink: unknown format %d", cfg.Format)
	}
	var codec *goavro.Codec
	if cfg.Format == Avro {
		if cfg.Gzip {
			return nil, errors.New("hdfs sink: Gzip is for Text and JSON; Avro compresses its blocks (AvroCodec)")
		}
		switch cfg.AvroCodec {
		case "":
			cfg.AvroCodec = "null"
		case "null", "deflate", "snappy":
		default:
			return nil, fmt.Errorf("hdfs sink: unknown AvroCodec %q: use null, deflate or snappy", cfg.AvroCodec)
		}
		codec, _ = goavro.NewCodec(AvroSchema)
	}
	var pqCodec compress.Codec
	if cfg.Format == Parquet {
		if cfg.Gzip {
			return nil, errors.New("hdfs sink: Gzip is for Text and JSON; Parquet compresses its pages (ParquetCodec)")
		}
		switch cfg.ParquetCodec {
		case "", "snappy":
			pqCodec = &parquet.Snappy
		case "zstd":
			pqCodec = &parquet.Zstd
		case "gzip":
			pqCodec = &parquet.Gzip
		case "none":
			pqCodec = &parquet.Uncompressed
		default:
			return nil, fmt.Errorf("hdfs sink: unknown ParquetCodec %q: use snappy, zstd, gzip or none", cfg.ParquetCodec)
		}
	}
	if cfg.Suffix == "" {
		cfg.Suffix = map[Format]string{Text: ".txt", JSON: ".jsonl", Avro: ".avro", Parquet: ".parquet"}[cfg.Format]
		if cfg.Gzip {
			cfg.Suffix += ".gz"
		}
	}
	if strings.ContainsAny(cfg.Prefix+cfg.Suffix, "/") || strings.HasPrefix(cfg.Prefix, ".") {
		return nil, fmt.Errorf("hdfs sink: prefix %q and suffix %q must not hold '/', nor the prefix start with '.'", cfg.Prefix, cfg.Suffix)
	}
	if cfg.RollSize < 0 || cfg.RollCount < 0 || cfg.RollInterval < 0 || cfg.Round < 0 {
		return nil, errors.New("hdfs sink: negative RollSize, RollCount, RollInterval or Round")
	}
	if cfg.RollSize == 0 && cfg.RollCount == 0 && cfg.RollInterval == 0 {
		cfg.RollCount = 100_000
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.StateDir == "" {
		root := cfg.Path
		if i := strings.IndexByte(root, '%'); i >= 0 {
			root = root[:i]
		}
		cfg.StateDir = path.Join(path.Dir(root+"x"), ".weir-state")
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 10 * time.Second
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.DataNodeTimeout == 0 {
		cfg.DataNodeTimeout = time.Minute
	}
	cfg.Client.NamenodeDialFunc = withDeadlines(cfg.Client.NamenodeDialFunc, cfg.CallTimeout)
	cfg.Client.DatanodeDialFunc = withDeadlines(cfg.Client.DatanodeDialFunc, cfg.DataNodeTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var tok [6]byte
	_, _ = rand.Read(tok[:])
	return &Sink{cfg: cfg, tmpl: tmpl, token: hex.EncodeToString(tok[:]), avro: codec, pqCodec: pqCodec, parts: map[partKey]*part{}}, nil
}

// dirOf expands the path template for m.
func (s *Sink) dirOf(m connectors.Message) string {
	ts := time.UnixMilli(m.Timestamp).In(s.cfg.Location)
	if s.cfg.Round > 0 {
		// Floor the wall clock of Location, not the absolute time (a zone's offset need not be
		// a whole number of Rounds).
		_, off := ts.Zone()
		shift := time.Duration(off) * time.Second
		ts = ts.Add(shift).Truncate(s.cfg.Round).Add(-shift).In(s.cfg.Location)
	}
	var b strings.Builder
	for _, seg := range s.tmpl {
		switch seg.escape {
		case "":
			b.WriteString(seg.lit)
		case "Y":
			fmt.Fprintf(&b, "%04d", ts.Year())
		case "m":
			fmt.Fprintf(&b, "%02d", int(ts.Month()))
		case "d":
			fmt.Fprintf(&b, "%02d", ts.Day())
		case "H":
			fmt.Fprintf(&b, "%02d", ts.Hour())
		case "M":
			fmt.Fprintf(&b, "%02d", ts.Minute())
		case "S":
			fmt.Fprintf(&b, "%02d", ts.Second())
		default:
			name := seg.escape[1 : len(seg.escape)-1]
			var v string
			switch name {
			case "topic":
				v = m.Topic
			case "partition":
				v = strconv.Itoa(int(m.Partition))
			default:
				v = m.Headers[name]
			}
			v = strings.ReplaceAll(v, "/", "_")
			if v == "." || v == ".." {
				v = "_"
			}
			b.WriteString(v)
		}
	}
	return path.Clean(b.String())
}

// NotifyDurable sets the function called after a roll by time, so that the runner commits at
// once what it made durable. It implements connectors.DurableNotifier.
func (s *Sink) NotifyDurable(notify func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify = notify
}

// Open starts the timer of rolls by time. It does not contact HDFS.
func (s *Sink) Open(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return nil
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.timer(s.stop, s.done)
	return nil
}

// tickEvery is how often the timer looks for partitions due to roll by time: a tenth of the
// shorter of IdleTimeout and RollInterval, between 10 ms and 1 s, so that a roll comes at most
// a tenth of its time late (a 300 ms IdleTimeout checked every second would roll after 1.3 s).
func (s *Sink) tickEvery() time.Duration {
	every := time.Second
	for _, d := range []time.Duration{s.cfg.IdleTimeout, s.cfg.RollInterval} {
		if d > 0 {
			every = min(every, d/10)
		}
	}
	return max(every, 10*time.Millisecond)
}

func (s *Sink) timer(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.tickEvery())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			rolled := false
			for _, p := range s.sortedParts() {
				if len(p.ghosts) > 0 && now.Sub(p.swept) >= time.Second {
					// At most a NameNode call per ghost a second, however fast the timer ticks.
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					s.sweepGhosts(ctx, p)
					cancel()
					p.swept = now
				}
				if len(p.files) > 0 && s.due(p, now) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					if err := s.roll(ctx, p); err != nil && s.failed == nil {
						s.failed = err
					}
					cancel()
					rolled = true
				}
			}
			notify := s.notify
			s.mu.Unlock()
			if rolled && notify != nil {
				notify()
			}
		}
	}
}

// due reports whether p rolls by time at now.
func (s *Sink) due(p *part, now time.Time) bool {
	if s.cfg.IdleTimeout > 0 && now.Sub(p.touched) >= s.cfg.IdleTimeout {
		return true
	}
	if s.cfg.RollInterval > 0 {
		for _, f := range p.files {
			if now.Sub(f.opened) >= s.cfg.RollInterval {
				return true
			}
		}
	}
	return false
}

func (s *Sink) sortedParts() []*part {
	ps := make([]*part, 0, len(s.parts))
	for _, p := range s.parts {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i].key, ps[j].key
		return a.topic < b.topic || a.topic == b.topic && a.partition < b.partition
	})
	return ps
}

// retry runs op until it succeeds, for RetryFor at most (and not past ctx), waiting more after
// each failure; a failure forgets the client, so that the next try connects again.
func (s *Sink) retry(ctx context.Context, what string, op func(*hdfs.Client) error) error {
	deadline := time.Now().Add(s.cfg.RetryFor)
	wait := 100 * time.Millisecond
	for {
		err := s.connect()
		if err == nil {
			if err = op(s.client); err == nil {
				return nil
			}
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrExist) {
				return err // an answer, not a failure
			}
			s.client.Close()
			s.client = nil
		}
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("hdfs sink: %s: %w", what, err)
		}
		s.cfg.Logger.Info("hdfs sink: retrying", "op", what, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("hdfs sink: %s: %w (%v)", what, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// withDeadlines returns a dial function (dial, or a net.Dialer's when nil) whose connections
// give each read and write timeout to finish; timeout <= 0 returns dial unchanged.
func withDeadlines(dial func(context.Context, string, string) (net.Conn, error), timeout time.Duration) func(context.Context, string, string) (net.Conn, error) {
	if timeout <= 0 {
		return dial
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &deadlineConn{Conn: c, timeout: timeout}, nil
	}
}

// deadlineConn bounds each Read and Write by timeout. The NameNode connection is request and
// answer, one at a time (colinmarc/hdfs reads only while it waits for an answer), so a Read that
// times out is a NameNode that did not answer. On a DataNode connection colinmarc/hdfs reads
// acknowledgements only while a packet it sent awaits one, so a Read that times out is a
// DataNode that did not acknowledge a packet in time.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (s *Sink) connect() error {
	if s.client != nil {
		return nil
	}
	c, err := hdfs.NewClient(s.cfg.Client)
	if err != nil {
		return err
	}
	s.client = c
	return nil
}

// state is a partition's state file.
type state struct {
	Version int      `json:"version"`
	Last    int64    `json:"last"`
	Open    []string `json:"open,omitempty"`
	Renames []rename `json:"renames,omitempty"`
}

type rename struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// stateDir is the directory of k's state files: STATEDIR/TOPIC-PARTITION, holding
// NNNNNNNNNNNNNNNNNNNN.json, one per change, the highest number the current one.
func (s *Sink) stateDir(k partKey) string {
	return path.Join(s.cfg.StateDir, fmt.Sprintf("%s-%d", k.topic, k.partition))
}

func stateName(n int64) string { return fmt.Sprintf("%020d.json", n) }

// errFenced says that another member wrote a newer state of the partition: it has taken the
// partition over.
var errFenced = errors.New("another member has taken the partition over")

// writeState writes p's next state file. Files are created exclusively (HDFS refuses to create
// a file that exists), so when another member has taken the partition over and written a state
// of its own, this write fails (errFenced, wrapping connectors.ErrReplay) and the sink gives the
// partition up instead of writing over the new owner's work. A number whose file was created
// but not written whole is burned, and the next one is tried.
// sweepGhosts removes the ghosts of p (see part.ghosts) that appeared, and forgets those
// watched for ghostTTL.
func (s *Sink) sweepGhosts(ctx context.Context, p *part) {
	for f, since := range p.ghosts {
		if strings.HasSuffix(f, "."+s.token+".inprogress") {
			// This sink's own name (a file it abandoned, listed by its own state): the file it
			// creates under that name again is its own, not a former owner's.
			delete(p.ghosts, f)
			continue
		}
		err := s.retry(ctx, "remove "+f, func(c *hdfs.Client) error { return c.Remove(f) })
		switch {
		case err == nil:
			s.cfg.Logger.Warn("hdfs sink: removed an in-progress file a former owner created after it lost the partition", "file", f)
			delete(p.ghosts, f)
		case errors.Is(err, os.ErrNotExist):
			if time.Since(since) >= ghostTTL {
				delete(p.ghosts, f)
			}
		default:
			s.cfg.Logger.Info("hdfs sink: could not check for a former owner's in-progress file", "file", f, "err", err)
		}
	}
}

func (s *Sink) writeState(ctx context.Context, p *part, st state) error {
	s.sweepGhosts(ctx, p)
	if len(p.ghosts) > 0 {
		st.Open = append(slices.Clone(st.Open), slices.Collect(maps.Keys(p.ghosts))...)
		sort.Strings(st.Open)
	}
	st.Version = 1
	b, _ := json.Marshal(st)
	dir := s.stateDir(p.key)
	var fenced bool
	err := s.retry(ctx, "write state in "+dir, func(c *hdfs.Client) error {
		if err := c.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		name := path.Join(dir, stateName(p.stateN+1))
		w, err := c.Create(name)
		if errors.Is(err, os.ErrExist) {
			fenced = true
			return nil
		}
		if err != nil {
			return err
		}
		p.stateN++ // created: this number is used, whether the rest works or not
		if _, err := w.Write(b); err != nil {
			w.Close()
			return err
		}
		return closeFile(ctx, w)
	})
	if err != nil {
		return err
	}
	if fenced {
		return fmt.Errorf("hdfs sink: %s/%d: state %s exists: %w: %w", p.key.topic, p.key.partition, path.Join(dir, stateName(p.stateN+1)), errFenced, connectors.ErrReplay)
	}
	// Keep the last few (a reader skips one being written); older ones are removed.
	if p.stateN > 3 && s.client != nil {
		_ = s.client.Remove(path.Join(dir, stateName(p.stateN-3)))
	}
	return nil
}

// readState finds p's current state: the highest-numbered state file that reads whole (a
// higher one that does not was being written, or its writer died before closing it, so it was
// never acted on). It sets p.stateN to the highest number found.
func (s *Sink) readState(ctx context.Context, p *part) (state, error) {
	st := state{Last: -1}
	dir := s.stateDir(p.key)
	var names []string
	err := s.retry(ctx, "list "+dir, func(c *hdfs.Client) error {
		fis, err := c.ReadDir(dir)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, fi := range fis {
			names = append(names, fi.Name())
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		p.stateN = 0
		return st, nil
	}
	if err != nil {
		return st, err
	}
	var nums []int64
	for _, n := range names {
		if v, err := strconv.ParseInt(strings.TrimSuffix(n, ".json"), 10, 64); err == nil && strings.HasSuffix(n, ".json") {
			nums = append(nums, v)
		}
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] > nums[j] })
	p.stateN = 0
	if len(nums) > 0 {
		p.stateN = nums[0]
	}
	for _, n := range nums {
		var b []byte
		name := path.Join(dir, stateName(n))
		err := s.retry(ctx, "read "+name, func(c *hdfs.Client) error {
			var err error
			b, err = c.ReadFile(name)
			return err
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, err
		}
		var got state
		if err == nil && json.Unmarshal(b, &got) == nil && got.Version == 1 {
			return got, nil
		}
		s.cfg.Logger.Warn("hdfs sink: skipping a state file that does not read whole", "file", name)
	}
	// None reads whole: each was created by a writer that did not finish it, so none was acted
	// on (a state is acted on only once its file is closed), and the partition has none yet.
	return st, nil
}

// closeFile closes an HDFS file, trying again while the NameNode has not heard from the
// DataNodes ("replication in progress"), as the Java client does.
func closeFile(ctx context.Context, w *hdfs.FileWriter) error {
	err := w.Close()
	for wait := 20 * time.Millisecond; hdfs.IsErrReplicating(err) && wait < 10*time.Second; wait *= 2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		err = w.Close()
	}
	return err
}

// load reads p's state and puts HDFS back in the state it describes: renames finished,
// in-progress files removed. It then writes a new state, which fences off a member that had the
// partition before (its next state write fails).
func (s *Sink) load(ctx context.Context, p *part) error {
	st, err := s.readState(ctx, p)
	if err != nil {
		return err
	}
	for _, r := range st.Renames {
		err := s.retry(ctx, "finish rename "+r.From, func(c *hdfs.Client) error { return c.Rename(r.From, r.To) })
		switch {
		case err == nil:
			s.cfg.Logger.Info("hdfs sink: finished a rename a crash interrupted", "from", r.From, "to", r.To)
		case errors.Is(err, os.ErrNotExist):
			// Done before the crash, unless the finished file is gone too.
			if serr := s.retry(ctx, "stat "+r.To, func(c *hdfs.Client) error { _, err := c.Stat(r.To); return err }); serr != nil {
				return fmt.Errorf("hdfs sink: neither %s nor %s exists: their records are lost (%v)", r.From, r.To, serr)
			}
		default:
			return err
		}
	}
	ghosts := map[string]time.Time{}
	for _, f := range st.Open {
		err := s.retry(ctx, "remove "+f, func(c *hdfs.Client) error { return c.Remove(f) })
		switch {
		case err == nil:
			s.cfg.Logger.Info("hdfs sink: removed a stale in-progress file", "file", f)
		case errors.Is(err, os.ErrNotExist):
			ghosts[f] = time.Now()
		default:
			return err
		}
	}
	p.ghosts = ghosts
	if err := s.writeState(ctx, p, state{Last: st.Last}); err != nil {
		return err
	}
	p.loaded, p.last, p.written, p.files = true, st.Last, st.Last, map[string]*openFile{}
	return nil
}

func (s *Sink) partOf(k partKey) *part {
	p := s.parts[k]
	if p == nil {
		p = &part{key: k, last: -1, written: -1, files: map[string]*openFile{}}
		s.parts[k] = p
	}
	return p
}

func pad(o int64) string { return fmt.Sprintf("%020d", o) }

// openFor returns p's open file in dir, creating it (listed in the state first).
func (s *Sink) openFor(ctx context.Context, p *part, dir string, first int64, now time.Time) (*openFile, error) {
	if f := p.files[dir]; f != nil {
		return f, nil
	}
	tmp := path.Join(dir, "."+s.cfg.Prefix+p.key.topic+"-"+strconv.Itoa(int(p.key.partition))+"-"+pad(first)+"."+s.token+".inprogress")
	open := []string{tmp}
	for _, f := range p.files {
		open = append(open, f.tmp)
	}
	sort.Strings(open)
	if err := s.writeState(ctx, p, state{Last: p.last, Open: open}); err != nil {
		return nil, err
	}
	delete(p.ghosts, tmp) // this sink's own file from here on
	if testHookBeforeCreate != nil {
		testHookBeforeCreate()
	}
	var w *hdfs.FileWriter
	err := s.retry(ctx, "create "+tmp, func(c *hdfs.Client) error {
		if err := c.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := c.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		var err error
		w, err = c.Create(tmp)
		return err
	})
	if err != nil {
		return nil, err
	}
	f := &openFile{dir: dir, tmp: tmp, first: first, w: w, out: w, opened: now}
	if s.cfg.Gzip {
		f.z = gzip.NewWriter(w)
		f.out = f.z
	}
	p.files[dir] = f
	if s.avro != nil {
		ocf, err := goavro.NewOCFWriter(goavro.OCFConfig{W: w, Codec: s.avro, CompressionName: s.cfg.AvroCodec})
		if err != nil {
			return nil, fmt.Errorf("hdfs sink: start Avro file %s: %w", tmp, err)
		}
		f.ocf = ocf
	}
	if s.pqCodec != nil {
		f.pq = parquet.NewGenericWriter[ParquetRecord](w, parquet.Compression(s.pqCodec), parquet.MaxRowsPerRowGroup(50_000))
	}
	return f, nil
}

// record is the JSON format's line.
type record struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp"`
	Key       string            `json:"key,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Value     string            `json:"value"`
}

func (s *Sink) encode(buf *bytes.Buffer, m connectors.Message) {
	buf.Reset()
	if s.cfg.Format == JSON {
		b, _ := json.Marshal(record{m.Topic, m.Partition, m.Offset, m.Timestamp, string(m.Key), m.Headers, string(m.Value)})
		buf.Write(b)
	} else {
		buf.Write(m.Value)
	}
	buf.WriteByte('\n')
}

// Write stages msgs in the partitions' in-progress files, rolling where a file is full. It
// implements connectors.Sink.
func (s *Sink) Write(ctx context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	now := time.Now()
	var buf bytes.Buffer
	for _, m := range msgs {
		p := s.partOf(partKey{m.Topic, m.Partition})
		if !p.loaded {
			if err := s.load(ctx, p); err != nil {
				return s.abandon(ctx, p, err)
			}
		}
		if m.Offset <= p.written {
			continue // durable already (a crash came between a roll and its commit), or staged
		}
		f, err := s.openFor(ctx, p, s.dirOf(m), m.Offset, now)
		if err != nil {
			return s.abandon(ctx, p, err)
		}
		if f.pq != nil {
			f.rows = append(f.rows, ParquetRecord{m.Topic, m.Partition, m.Offset, m.Timestamp, m.Key, m.Headers, m.Value})
			f.bytes += int64(len(m.Key) + len(m.Value) + 32)
		} else if f.ocf != nil {
			var key any
			if m.Key != nil {
				key = goavro.Union("bytes", m.Key)
			}
			h := m.Headers
			if h == nil {
				h = map[string]string{}
			}
			hs := make(map[string]any, len(h))
			for k, v := range h {
				hs[k] = v
			}
			f.pending = append(f.pending, map[string]any{"topic": m.Topic, "partition": m.Partition, "offset": m.Offset,
				"timestamp": m.Timestamp, "key": key, "headers": hs, "value": m.Value})
			f.bytes += int64(len(m.Key) + len(m.Value) + 32)
		} else {
			s.encode(&buf, m)
			if _, err := f.out.Write(buf.Bytes()); err != nil {
				return s.abandon(ctx, p, fmt.Errorf("hdfs sink: write %s: %w", f.tmp, err))
			}
			f.bytes += int64(buf.Len())
		}
		f.count++
		p.written, p.touched = m.Offset, now
		if (s.cfg.RollSize > 0 && f.bytes >= s.cfg.RollSize) || (s.cfg.RollCount > 0 && f.count >= s.cfg.RollCount) {
			if err := s.roll(ctx, p); err != nil {
				return err
			}
		}
	}
	// Avro: this Write's records of each file as one block.
	for _, p := range s.parts {
		if err := s.flushAvro(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// flushAvro appends the records waiting for p's Avro files as a block of each.
func (s *Sink) flushAvro(ctx context.Context, p *part) error {
	for _, f := range p.files {
		if f.ocf != nil && len(f.pending) > 0 {
			if err := f.ocf.Append(f.pending); err != nil {
				return s.abandon(ctx, p, fmt.Errorf("hdfs sink: write %s: %w", f.tmp, err))
			}
			f.pending = f.pending[:0]
		}
		if f.pq != nil && len(f.rows) > 0 {
			if _, err := f.pq.Write(f.rows); err != nil {
				return s.abandon(ctx, p, fmt.Errorf("hdfs sink: write %s: %w", f.tmp, err))
			}
			clear(f.rows)
			f.rows = f.rows[:0]
		}
	}
	return nil
}

// roll closes p's files and renames them to their finished names; their records are durable
// then.
func (s *Sink) roll(ctx context.Context, p *part) error {
	if len(p.files) == 0 {
		return nil
	}
	if err := s.flushAvro(ctx, p); err != nil {
		return err
	}
	dirs := make([]string, 0, len(p.files))
	for d := range p.files {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	var renames []rename
	for _, d := range dirs {
		f := p.files[d]
		var err error
		if f.z != nil {
			err = f.z.Close()
		}
		if f.pq != nil {
			err = f.pq.Close() // the footer
		}
		if err == nil {
			err = closeFile(ctx, f.w)
		}
		if err != nil {
			return s.abandon(ctx, p, fmt.Errorf("hdfs sink: close %s: %w", f.tmp, err))
		}
		to := path.Join(d, s.cfg.Prefix+p.key.topic+"-"+strconv.Itoa(int(p.key.partition))+"-"+pad(f.first)+"-"+pad(p.written)+s.cfg.Suffix)
		renames = append(renames, rename{From: f.tmp, To: to})
	}
	if err := s.writeState(ctx, p, state{Last: p.written, Renames: renames}); err != nil {
		return s.abandon(ctx, p, err)
	}
	// The state says they are durable: from here a failure is finished by the next load.
	p.last, p.files = p.written, map[string]*openFile{}
	if testHookBeforeRenames != nil {
		testHookBeforeRenames()
	}
	for _, r := range renames {
		if err := s.retry(ctx, "rename "+r.From, func(c *hdfs.Client) error { return c.Rename(r.From, r.To) }); err != nil {
			p.loaded = false // the next Write loads the state, which finishes the renames
			return fmt.Errorf("%w: %w", err, connectors.ErrReplay)
		}
	}
	s.cfg.Logger.Info("hdfs sink: rolled", "topic", p.key.topic, "partition", p.key.partition, "last", p.last, "files", len(renames))
	return nil
}

// testHookBeforeRenames, if set, runs between a roll's state write and its renames (tests
// crash there).
var testHookBeforeRenames func()

// testHookBeforeCreate, if set, runs between the state write that lists a new in-progress file
// and its creation (tests only).
var testHookBeforeCreate func()

// abandon gives up p's in-progress files (they are removed now if HDFS answers, and at the
// partition's next load otherwise), so that their records are read again: the error wraps
// connectors.ErrReplay.
func (s *Sink) abandon(_ context.Context, p *part, why error) error {
	s.drop(p)
	s.cfg.Logger.Warn("hdfs sink: abandoned in-progress files; their records will be read again", "topic", p.key.topic, "partition", p.key.partition, "err", why)
	return fmt.Errorf("%w: %w", why, connectors.ErrReplay)
}

// drop closes p's files without renaming them, removes them if HDFS answers (once: the next
// load of p's state removes what is left), and forgets them.
func (s *Sink) drop(p *part) {
	for _, f := range p.files {
		if f.z != nil {
			f.z.Close()
		}
		f.w.Close()
		if s.client != nil {
			_ = s.client.Remove(f.tmp)
		}
	}
	p.files, p.loaded, p.written = map[string]*openFile{}, false, p.last
}

// Durable reports, for every partition written, the offset after its last durable record. It
// implements connectors.StagingSink.
func (s *Sink) Durable() ([]connectors.PartitionOffset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		err := s.failed
		s.failed = nil
		return nil, err
	}
	var out []connectors.PartitionOffset
	for _, p := range s.sortedParts() {
		if p.last >= 0 {
			out = append(out, connectors.PartitionOffset{Topic: p.key.topic, Partition: p.key.partition, Offset: p.last + 1})
		}
	}
	return out, nil
}

// Reset abandons every in-progress file: the runner reads their records again. It implements
// connectors.StagingSink.
func (s *Sink) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.parts {
		s.drop(p)
	}
	s.parts = map[partKey]*part{}
	s.failed = nil
	return nil
}

// Close rolls every partition (a stopped flow leaves finished files only, durable: their
// offsets are committed by the next run, which skips them) and stops the timer.
func (s *Sink) Close() error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, p := range s.sortedParts() {
		if err := s.roll(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	s.parts = map[partKey]*part{}
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	return errors.Join(errs...)
}
