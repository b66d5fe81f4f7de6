package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/weirhq/weir/storage"
)

// runLog handles `weir log dump|verify DIR`, the operator's view of a partition log on disk.
func runLog(args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: log needs a subcommand: dump, verify or demo", errUsage)
	}
	sub := args[0]
	switch {
	case isHelp(sub):
		return logHelp()
	case sub == "demo":
		return runLogDemo(args[1:], out)
	case sub != "dump" && sub != "verify":
		return fmt.Errorf("%w: unknown log subcommand %q (want dump, verify or demo)", errUsage, sub)
	}
	fs, from, maxBatches, records := logFlags(sub)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: log %s takes one log directory", errUsage, sub)
	}
	// Open creates a missing log; an inspection tool must not, so a typo fails loudly instead.
	if st, err := os.Stat(pos[0]); err != nil {
		return fmt.Errorf("log %s: %w", sub, err)
	} else if !st.IsDir() {
		return fmt.Errorf("log %s: %s is not a directory", sub, pos[0])
	}
	cfg := storage.DefaultConfig()
	l, err := storage.Open(pos[0], cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	off := l.StartOffset()
	if *from >= 0 {
		off = *from
	}
	var batches, recs int64
	var buf []byte
	for off < l.EndOffset() {
		buf, err = l.Read(buf[:0], off, 1<<20, l.EndOffset())
		if err != nil {
			return err
		}
		for p := buf; len(p) > 0; {
			h, err := storage.DecodeBatch(p, func(o int64, r storage.Record) error {
				if o >= off {
					recs++
					if sub == "dump" && *records {
						fmt.Fprintf(out, "  offset=%d ts=%d key=%q value=%q headers=%v\n", o, r.Timestamp, r.Key, r.Value, r.Headers)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			batches++
			if sub == "dump" {
				fmt.Fprintf(out, "batch index=%d term=%d kind=%s offsets=[%d,%d) count=%d first_ts=%d max_ts=%d bytes=%d\n",
					h.Index, h.Term, h.Kind, h.BaseOffset, h.NextOffset(), h.Count, h.FirstTimestamp, h.MaxTimestamp, h.Size())
			}
			off = max(off, h.NextOffset())
			p = p[h.Size():]
			if *maxBatches > 0 && batches >= int64(*maxBatches) {
				return nil
			}
		}
	}
	if sub == "verify" {
		fmt.Fprintf(out, "ok: %d batches, %d records, offsets [%d, %d), %d segments, %d bytes\n",
			batches, recs, l.StartOffset(), l.EndOffset(), l.Segments(), l.Size())
	}
	return nil
}

// logFlags registers the flags of `weir log dump` and `weir log verify`.
func logFlags(sub string) (fs *flag.FlagSet, from *int64, maxBatches *int, records *bool) {
	fs = flag.NewFlagSet("log "+sub, flag.ContinueOnError)
	from = fs.Int64("from", -1, "first offset to dump (default: the log start)")
	maxBatches = fs.Int("max", 0, "stop after this many batches (0: all)")
	records = fs.Bool("records", false, "print every record, not only batch headers")
	return fs, from, maxBatches, records
}

// logHelp is `weir log -h`.
func logHelp() error {
	dump, _, _, _ := logFlags("dump")
	verify, _, _, _ := logFlags("verify")
	demo, _, _, _ := logDemoFlags()
	return groupHelp("log", []subcommand{
		{"dump DIR [--from OFFSET] [--max N] [--records]", "print the batches (and records) of a partition log", dump},
		{"verify DIR", "recover a partition log and check every checksum", verify},
		{"demo [--data DIR] [--records N] [--batch N]", "append records to a bare log, reopen it, read them back", demo},
	})
}
