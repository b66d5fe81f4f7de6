package exec

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadReturnsWhenCommandClosesStdout: Read returns when its context is done, also while a
// command that closed its standard output goes on running (Read used to wait for the command).
func TestReadReturnsWhenCommandClosesStdout(t *testing.T) {
	readsReturnInTime(t, open(t, Config{Command: []string{"sh", "-c", "echo hi; exec >&-; sleep 5"}}))
}

// TestReadReturnsWhenChildOutlivesCommand: the command exits, leaving a background child; Read
// returns in time (Wait used to wait for the child's copy of stderr).
func TestReadReturnsWhenChildOutlivesCommand(t *testing.T) {
	readsReturnInTime(t, open(t, Config{Command: []string{"sh", "-c", "echo hi; sleep 5 >/dev/null &"}}))
}

// readsReturnInTime checks that three Reads with a 200 ms context each return within 2 s.
func readsReturnInTime(t *testing.T, s *Source) {
	t.Helper()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		s.Read(ctx)
		cancel()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Read %d took %v with a 200ms context", i, d)
		}
	}
}

// TestNoOrphanLeftRunning: a child the command left behind in its process group is killed when
// the command exits (dead, or a zombie waiting for init to reap it).
func TestNoOrphanLeftRunning(t *testing.T) {
	s := open(t, Config{Command: []string{"sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"}})
	got, _ := readAll(t, s, 0, 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("%q", got)
	}
	s.Close()
	pid, _ := strconv.Atoi(got[0])
	time.Sleep(100 * time.Millisecond)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil && !strings.Contains(string(stat), ") Z ") {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("child %d of the command still runs after the source ended and closed: %s", pid, stat)
	}
}

// TestCloseReturnsWhenAChildEscapes: a descendant that left the process group (setsid) and holds
// stderr does not keep Close from returning (Wait gives up on the pipes a second after the exit).
func TestCloseReturnsWhenAChildEscapes(t *testing.T) {
	s := open(t, Config{Command: []string{"sh", "-c", "setsid sleep 6 >/dev/null & while true; do echo tick; sleep 0.05; done"}})
	if got, err := readAll(t, s, 2, 10*time.Second); err != nil || len(got) < 2 {
		t.Fatalf("%q, %v", got, err)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}
