package exec

import (
	"bufio"
	"context"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCommandDiesWithItsProcess: when the process running the source dies (SIGKILL, OOM, a
// crash), its command must not run on as an orphan (a `tail -F` of a quiet log would outlive
// every crashed node). The command gets SIGKILL when its parent dies (Pdeathsig); before that
// it ran on, in its own process group.
func TestCommandDiesWithItsProcess(t *testing.T) {
	if os.Getenv("EXEC_REVIEW_CHILD") == "1" {
		s, err := New(Config{Command: []string{"sh", "-c", "echo $$; exec sleep 60"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Open(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		recs, _, _ := s.Read(context.Background())
		os.Stdout.WriteString("pid " + string(recs[0].Value) + "\n")
		select {}
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestCommandDiesWithItsProcess$")
	cmd.Env = append(os.Environ(), "EXEC_REVIEW_CHILD=1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	pid := 0
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "pid "); ok {
			pid, _ = strconv.Atoi(p)
			break
		}
	}
	if pid == 0 {
		t.Fatal("the child did not report its command's pid")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	defer syscall.Kill(pid, syscall.SIGKILL) // the orphan this test made, by its pid
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Fatalf("the command (pid %d, %q) still runs 3 s after the process of its source was killed", pid, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}
