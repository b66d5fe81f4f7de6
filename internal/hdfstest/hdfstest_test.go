package hdfstest

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"github.com/colinmarc/hdfs/v2"
)

func write(t *testing.T, cl *hdfs.Client, name string, data []byte) {
	t.Helper()
	w, err := cl.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	// Close retries while the NameNode has not yet heard from the DataNodes (the Java client
	// does the same, with backoff).
	err = w.Close()
	for wait := 50 * time.Millisecond; hdfs.IsErrReplicating(err) && wait < 10*time.Second; wait *= 2 {
		time.Sleep(wait)
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, cl *hdfs.Client, name string) []byte {
	t.Helper()
	r, err := cl.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMiniCluster: the real HDFS the sink tests use takes writes from the Go client
// (colinmarc/hdfs), keeps them across a DataNode restart, refuses requests while its NameNode
// is down and takes them again once it is back.
func TestMiniCluster(t *testing.T) {
	c := Start(t, 2)
	cl := c.Client(t)
	data := bytes.Repeat([]byte("weir\n"), 300_000) // 1.5 MB: two blocks of 1 MiB
	if err := cl.MkdirAll("/t", 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, cl, "/t/a", data)
	if !bytes.Equal(read(t, cl, "/t/a"), data) {
		t.Fatal("read back other bytes")
	}
	if err := c.Do("restart-datanode 0"); err != nil {
		t.Fatal(err)
	}
	write(t, cl, "/t/b", data[:1000])
	if !bytes.Equal(read(t, cl, "/t/a"), data) {
		t.Fatal("a file changed across a DataNode restart")
	}
	if err := c.Do("stop-namenode"); err != nil {
		t.Fatal(err)
	}
	short, err := hdfs.NewClient(hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"})
	if err == nil {
		_, err = short.Stat("/t/a")
		short.Close()
	}
	if err == nil {
		t.Fatal("a request succeeded with the NameNode down")
	}
	if err := c.Do("start-namenode"); err != nil {
		t.Fatal(err)
	}
	var fi os.FileInfo
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		cl2, err := hdfs.NewClient(hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"})
		if err == nil {
			fi, err = cl2.Stat("/t/b")
			cl2.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NameNode did not come back: %v", err)
		}
	}
	if fi.Size() != 1000 {
		t.Fatalf("/t/b has %d bytes after the NameNode restart, want 1000", fi.Size())
	}
}
