// Package exec is a source that runs a command and reads the lines of its standard output, as
// Flume's exec source does (`tail -F app.log`, a script that prints events): one record per
// line, read with package lines (Config.Lines sets the line length limit, key separator,
// batching). When the command exits, Config.Restart decides: run it again after
// Config.RestartDelay, or end the source (Read returns io.EOF).
//
// # Guarantee
//
// Weaker than a file source's: a command's output cannot be read twice, so the position is
// always empty. Lines the command printed and the topic had not acknowledged when the process
// crashes are lost (up to a batch, the line being read and the pipe's buffer, 64 KiB); the
// command started after a restart of the process prints what it prints, from its own start (a
// `tail -F` starts at the file's end again, `cat` at its beginning). When the flow's actor
// restarts in the same process, the command is stopped and started again, and the batch in flight
// is lost too. What the command leaves running in its process group when it exits is killed,
// and the command itself is killed when the process running the source dies (on Linux; its own
// children are not, unless they exit when their output pipe closes, as most do).
// For log files, a source that keeps a position in the file is the one to use where loss matters.
package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/weirhq/weir/connectors/source/lines"
	"github.com/weirhq/weir/storage"
)

// Restart says when an exited command is run again.
type Restart int

const (
	// Never ends the source when the command exits (Flume's restart=false).
	Never Restart = iota
	// OnFailure runs the command again when it exits with a status other than 0.
	OnFailure
	// Always runs the command again whenever it exits.
	Always
)

// Config configures a Source.
type Config struct {
	// Command is the program and its arguments (no shell: use "sh", "-c", "..." for one).
	Command []string
	// Dir is the command's working directory; Env its environment (nil: this process's).
	Dir string
	Env []string
	// Restart and RestartDelay (default 10 s, Flume's restartThrottle) say when and how soon
	// an exited command runs again.
	Restart      Restart
	RestartDelay time.Duration
	// Stderr receives the command's standard error (default: discarded).
	Stderr io.Writer
	// Lines configures the reading of standard output; its Reader is set by the source.
	Lines lines.Config
	// Logger receives the command's exits and restarts; discarded by default.
	Logger *slog.Logger
}

// Source runs a command and reads its output lines. It is a connectors.Source.
type Source struct {
	cfg Config

	mu     sync.Mutex
	cmd    *osexec.Cmd
	out    *lines.Source
	stdout *os.File      // the read end of the command's output pipe
	waited chan struct{} // closed when cmd was waited for
	next   time.Time     // when the command may start again (after an exit, with a restart due)
	done   bool
}

// New checks cfg and returns a Source; the command starts at Open.
func New(cfg Config) (*Source, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("exec source: no command")
	}
	if cfg.Restart < Never || cfg.Restart > Always {
		return nil, fmt.Errorf("exec source: unknown restart policy %d", cfg.Restart)
	}
	if cfg.RestartDelay <= 0 {
		cfg.RestartDelay = 10 * time.Second
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Lines.Validate(); err != nil {
		return nil, fmt.Errorf("exec source: %w", err)
	}
	if _, err := osexec.LookPath(cfg.Command[0]); err != nil {
		return nil, fmt.Errorf("exec source: command %q: %w", cfg.Command[0], err)
	}
	return &Source{cfg: cfg}, nil
}

// Open starts the command. The position is ignored (see Guarantee).
func (s *Source) Open(ctx context.Context, _ []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = false
	s.next = time.Time{}
	return s.start(ctx)
}

// start runs the command with its output read by a new lines source. The caller holds s.mu.
func (s *Source) start(ctx context.Context) error {
	cmd := osexec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
	cmd.Dir, cmd.Env = s.cfg.Dir, s.cfg.Env
	if s.cfg.Stderr != io.Discard {
		cmd.Stderr = s.cfg.Stderr // nil: /dev/null, with no copying goroutine to wait for
	}
	// Its own process group, so that Close stops the command's children too; and SIGKILL when
	// this process dies (Linux's parent-death signal), so that it does not run on as an orphan.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A child that keeps the stderr pipe open (a daemon the command started) must not hold up
	// Wait: after the command exits, the pipes are closed a second later.
	cmd.WaitDelay = time.Second
	// A pipe of our own, not StdoutPipe: Wait closes that one when the command exits, maybe
	// before the output in it was read; this one is read to its end (every writer gone).
	stdout, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("exec source: %v: %w", s.cfg.Command, err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		return fmt.Errorf("exec source: start %v: %w", s.cfg.Command, err)
	}
	lc := s.cfg.Lines
	lc.Reader = stdout
	out, err := lines.New(lc)
	if err == nil {
		err = out.Open(ctx, nil)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		stdout.Close()
		return fmt.Errorf("exec source: %w", err)
	}
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the status is in cmd.ProcessState
		// What the command left running in its process group goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(waited)
	}()
	s.cmd, s.out, s.stdout, s.waited = cmd, out, stdout, waited
	s.cfg.Logger.Info("exec source: command started", "command", s.cfg.Command, "pid", cmd.Process.Pid)
	return nil
}

// Read returns the command's next lines. When its output ends it waits for the command, and
// either starts it again once Config.RestartDelay has passed (returning nothing until then) or
// returns io.EOF.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, nil, io.EOF
	}
	if s.out == nil { // exited, a restart due at s.next
		if wait := time.Until(s.next); wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			s.mu.Unlock()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			s.mu.Lock()
			if time.Now().Before(s.next) || s.out != nil || s.done {
				return nil, nil, nil
			}
		}
		if err := s.start(ctx); err != nil {
			return nil, nil, err
		}
	}
	recs, _, err := s.out.Read(ctx)
	if errors.Is(err, io.EOF) {
		// The output ended; the command may still run (it closed its stdout). Wait for it no
		// longer than the read may take: the next Read looks again.
		select {
		case <-s.waited:
		case <-ctx.Done():
			return recs, nil, nil
		}
		s.exited()
		if len(recs) > 0 || !s.done {
			return recs, nil, nil
		}
		return nil, nil, io.EOF
	}
	if err != nil {
		return recs, nil, fmt.Errorf("exec source: %v: %w", s.cfg.Command, err)
	}
	return recs, nil, nil
}

// exited handles the command whose output ended and which was waited for, and decides on a
// restart. The caller holds s.mu.
func (s *Source) exited() {
	state := s.cmd.ProcessState
	_ = s.out.Close()
	s.stdout.Close()
	s.cmd, s.out, s.stdout = nil, nil, nil
	failed := state == nil || !state.Success()
	var err error
	if failed && state != nil {
		err = errors.New(state.String())
	}
	restart := s.cfg.Restart == Always || (s.cfg.Restart == OnFailure && failed)
	s.cfg.Logger.Info("exec source: command exited", "command", s.cfg.Command, "err", err, "restart", restart)
	if !restart {
		s.done = true
		return
	}
	s.next = time.Now().Add(s.cfg.RestartDelay)
}

// Close stops the command (SIGTERM to its process group, SIGKILL after 2 s) and the reading.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	cmd, waited := s.cmd, s.waited
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	}
	_ = s.out.Close()
	s.stdout.Close() // ends the reading goroutine of package lines
	s.cmd, s.out, s.stdout = nil, nil, nil
	return nil
}
