package actors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterTLSFiles: missing or unreadable files are named in the error.
func TestClusterTLSFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tls  ClusterTLS
		want string
	}{
		{ClusterTLS{CertFile: "a"}, "needs a certificate, its key and the cluster's CA"},
		{ClusterTLS{CertFile: filepath.Join(dir, "none.crt"), KeyFile: "k", CAFile: "c"}, "none.crt"},
		{ClusterTLS{CertFile: junk, KeyFile: junk, CAFile: junk}, "junk.pem"},
	} {
		if _, _, err := c.tls.configs(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.tls, err, c.want)
		}
	}
}
