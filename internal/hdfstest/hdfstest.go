// Package hdfstest runs a real HDFS for tests: Hadoop's MiniDFSCluster, started by
// scripts/hdfs-minicluster/run.sh (which fetches it from Maven Central with Maven once, and needs
// Java 17). A test that calls Start fails, saying what to install, where Java or Maven is
// missing; make test runs on machines that have both.
package hdfstest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/colinmarc/hdfs/v2"
)

// Cluster is a running MiniDFSCluster.
type Cluster struct {
	// Addr is the NameNode's RPC address (host:port).
	Addr string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	done  chan struct{}
}

// script finds scripts/hdfs-minicluster/run.sh above the working directory.
func script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "hdfs-minicluster", "run.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("scripts/hdfs-minicluster/run.sh not found above the working directory")
		}
		dir = up
	}
}

// Options configure a cluster.
type Options struct {
	// DataNodes is the number of DataNodes (at least 1).
	DataNodes int
	// Conf holds Hadoop settings (such as "dfs.blocksize") over those of
	// scripts/hdfs-minicluster/MiniHdfs.java, which suit tests: 1 MiB blocks, 1 s heartbeats.
	Conf map[string]string
}

// Start starts a cluster with datanodes DataNodes and the launcher's settings; it is shut down
// when the test ends.
func Start(t testing.TB, datanodes int) *Cluster {
	t.Helper()
	return StartOptions(t, Options{DataNodes: datanodes})
}

// StartOptions starts a cluster as opts say; it is shut down when the test ends.
func StartOptions(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.DataNodes < 1 {
		t.Fatalf("hdfstest: %d DataNodes", opts.DataNodes)
	}
	for _, tool := range []string{"java", "javac", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the HDFS tests need %s: install a JDK 17 and Maven", tool)
		}
	}
	run, err := script()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"0", fmt.Sprint(opts.DataNodes), t.TempDir()}
	keys := make([]string, 0, len(opts.Conf))
	for k := range opts.Conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k+"="+opts.Conf[k])
	}
	cmd := exec.Command(run, args...)
	var stderr tail
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.stop)
	select {
	case l, ok := <-c.lines:
		addr, found := strings.CutPrefix(l, "namenode ")
		if !ok || !found {
			t.Fatalf("the MiniDFSCluster did not start (%q); its last output:\n%s", l, stderr.String())
		}
		c.Addr = addr
	case <-time.After(5 * time.Minute):
		t.Fatalf("the MiniDFSCluster did not start within 5 minutes; its last output:\n%s", stderr.String())
	}
	return c
}

// Do sends a command (see scripts/hdfs-minicluster/MiniHdfs.java: "restart-datanode 0",
// "stop-namenode", ...) and waits for its answer.
func (c *Cluster) Do(command string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.stdin, command+"\n"); err != nil {
		return fmt.Errorf("hdfs minicluster %q: %w", command, err)
	}
	select {
	case l, ok := <-c.lines:
		if !ok {
			return fmt.Errorf("hdfs minicluster %q: the cluster exited", command)
		}
		if l != "ok" {
			return fmt.Errorf("hdfs minicluster %q: %s", command, l)
		}
		return nil
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("hdfs minicluster %q: no answer in 2 minutes", command)
	}
}

// Client returns a client of the cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *hdfs.Client {
	t.Helper()
	cl, err := hdfs.NewClient(hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func (c *Cluster) stop() {
	c.stdin.Close() // the cluster shuts down when its input ends
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// tail keeps the last 8 KiB written to it.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > 8<<10 {
		w.b = w.b[len(w.b)-8<<10:]
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
