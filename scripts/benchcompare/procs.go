//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on Linux/x86-64).
const clockTicks = 100

// procTable remembers every process the harness started, so that the end of the run can check
// that none is left and stop any that is (after a failed step).
type procTable struct {
	mu    sync.Mutex
	procs []*os.Process
	total int
}

// start starts cmd, registered in the table. A started process gets SIGTERM if the harness
// dies first.
func (t *procTable) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return err
	}
	t.mu.Lock()
	t.procs = append(t.procs, cmd.Process)
	t.total++
	t.mu.Unlock()
	return nil
}

// count is how many processes the table has started.
func (t *procTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// alive returns the pids of started processes, and of their children, that still exist (a
// zombie not yet waited for counts as gone).
func (t *procTable) alive() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for _, p := range t.procs {
		if running(p.Pid) {
			out = append(out, p.Pid)
		}
		for _, c := range children(p.Pid) {
			if running(c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// stopAll kills whatever the table started that still runs, children first.
func (t *procTable) stopAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.procs {
		for _, c := range children(p.Pid) {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
		if running(p.Pid) {
			_ = p.Kill()
		}
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != "Z"
}

// children returns the pids whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(c); err == nil && st.ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// procStat is what the harness reads from /proc/PID/stat.
type procStat struct {
	state string
	ppid  int
	cpu   time.Duration // utime + stime
}

// readStat parses /proc/PID/stat (the command name, in parentheses, may hold spaces).
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("stat %q: no command name", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat %q: too few fields", s)
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("stat %q: bad number", s)
	}
	return procStat{state: f[0], ppid: ppid, cpu: time.Duration(ut+st) * time.Second / clockTicks}, nil
}

// rssBytes is VmRSS of pid, from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(v))
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS %q", v)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// usage is what a sampler saw of the server processes during one measurement.
type usage struct {
	peakRSS int64         // the largest sum over the servers of their resident memory
	cpu     time.Duration // CPU time the servers used, user and system
}

// sampler reads the servers' resident memory every period, until stopped.
type sampler struct {
	pids   []int
	cancel context.CancelFunc
	done   chan usage
}

const samplePeriod = 250 * time.Millisecond

// startSampler starts sampling pids; stop returns what it saw.
func startSampler(pids []int) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{pids: pids, cancel: cancel, done: make(chan usage, 1)}
	cpu0 := s.cpuTime()
	go func() {
		var u usage
		tick := time.NewTicker(samplePeriod)
		defer tick.Stop()
		for {
			u.peakRSS = max(u.peakRSS, s.rss())
			select {
			case <-ctx.Done():
				u.cpu = s.cpuTime() - cpu0
				s.done <- u
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() usage {
	s.cancel()
	return <-s.done
}

func (s *sampler) rss() int64 {
	var sum int64
	for _, p := range s.pids {
		if r, err := rssBytes(p); err == nil {
			sum += r
		}
	}
	return sum
}

func (s *sampler) cpuTime() time.Duration {
	var sum time.Duration
	for _, p := range s.pids {
		if st, err := readStat(p); err == nil {
			sum += st.cpu
		}
	}
	return sum
}
