package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/weirhq/weir/internal/freeport"
)

// proc is a process the benchmark started: a Flume agent (the java that scripts/flume/run.sh
// becomes) or a Weir node (this program again, in a child mode). It runs in a process group of
// its own, which stop signals as a whole, and the kernel kills it if this program dies first
// (Pdeathsig), so that no agent outlives a benchmark that failed or was killed.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, set before done closes
}

// startProc starts name with args; its standard output and error go to logPath.
func startProc(name, logPath string, env []string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	return launch(name, cmd, logf)
}

// launch starts cmd in a process group of its own, killed if this program dies; closer (its
// log) is closed once it has exited.
func launch(name string, cmd *exec.Cmd, closer io.Closer) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		closer.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		closer.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace for the process to end, then
// sends SIGKILL to the group and waits. It reports whether the process ended by itself.
func (p *proc) stop(grace time.Duration) bool {
	if p.exited() {
		return true
	}
	pgid := p.pid() // Setpgid: the group's id is the process's
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	return false
}

// rssSample is the resident memory of a process at a time since its sampler started.
type rssSample struct {
	At    time.Duration
	Bytes int64
}

// rssSampler reads a process's VmRSS every period until stopped.
type rssSampler struct {
	mu      sync.Mutex
	samples []rssSample
	quit    chan struct{}
	done    chan struct{}
}

// sampleRSS starts sampling pid's resident memory every period, from now.
func sampleRSS(pid int, period time.Duration) *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if b, err := readRSS(pid); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, rssSample{At: time.Since(start), Bytes: b})
				s.mu.Unlock()
			}
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling, waits for it and returns the samples.
func (s *rssSampler) stop() []rssSample {
	close(s.quit)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// readRSS returns the VmRSS of pid in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmRSS:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// clockTicks is the unit of the CPU times in /proc/PID/stat (sysconf(_SC_CLK_TCK), 100 on
// Linux on x86-64 and arm64).
const clockTicks = 100

// readCPU returns the CPU time (user and system) pid has used so far, in seconds.
func readCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may hold anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return float64(u+st) / clockTicks, nil
}

// rssStats returns the peak and the mean of samples, in bytes.
func rssStats(samples []rssSample) (peak, mean int64) {
	var sum int64
	for _, s := range samples {
		peak = max(peak, s.Bytes)
		sum += s.Bytes
	}
	if len(samples) > 0 {
		mean = sum / int64(len(samples))
	}
	return peak, mean
}

// waitListening waits until addr accepts TCP connections, p exits, or timeout passes.
func waitListening(p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s (%v)", p.name, addr, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after %v", p.name, addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free a moment ago, outside the kernel's
// ephemeral range (internal/freeport), for a server started in another process.
func freeAddr() (string, error) {
	return freeport.Addr()
}

// flumeChannel writes the properties of a Flume agent's channel c: a file channel (its
// checkpoint and data under work) or a memory channel of capacity events, taking transaction
// events per transaction.
func flumeChannel(p func(format string, args ...any), channel, work string, capacity, transaction int) {
	switch channel {
	case "file":
		p("a.channels.c.type = file")
		p("a.channels.c.checkpointDir = %s", filepath.Join(work, "checkpoint"))
		p("a.channels.c.dataDirs = %s", filepath.Join(work, "data"))
	case "memory":
		p("a.channels.c.type = memory")
		p("a.channels.c.capacity = %d", capacity)
		p("a.channels.c.transactionCapacity = %d", transaction)
	}
}
