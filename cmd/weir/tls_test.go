package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a node certificate (server and client authentication) and its key to dir and
// returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestClusterTLS runs three `weir node` processes whose transport is mutual TLS: a topic
// replicated over all three takes and serves records, and the cluster port refuses a peer
// whose certificate another CA signed, and one that speaks no TLS.
func TestClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	dir := t.TempDir()
	ca, rogue := newTestCA(t, "weir test cluster CA"), newTestCA(t, "another CA")
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "nodes")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		cert, key := ca.issue(t, dir, name)
		var join []string
		if i > 0 {
			join = []string{nodes[0].gossip}
		}
		nodes[i] = newClusterNode(t, root, name, join, []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", caFile})
	}
	startNodes(t, bin, nodes)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createClusterTopic(t, c, "secure", 3, 3)
	p, err := c.NewProducer("secure", client.Acks(wire.AcksAll), client.Retries(100))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const records = 3000
	for i := range records {
		p.ProduceAsync(ctx, storage.Record{Key: []byte(fmt.Sprint(i)), Value: []byte("v")}, func(_ int64, err error) {
			if err != nil {
				t.Errorf("record %d: %v", i, err)
			}
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitPlaced(t, c, "secure", 30*time.Second, func(held map[string]int) bool { return held["n1"] == 3 })
	total := int64(0)
	for part := int32(0); part < 3; part++ {
		hw, err := c.ListOffsets(ctx, "secure", part, client.Latest())
		if err != nil {
			t.Fatal(err)
		}
		total += hw
	}
	if total != records {
		t.Fatalf("%d records in the topic, want %d", total, records)
	}

	// The cluster port: a certificate from another CA, and plain TCP, get nowhere.
	rc, rk := rogue.issue(t, dir, "intruder")
	cert, err := tls.LoadX509KeyPair(rc, rk)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", nodes[0].remote, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a peer with another CA's certificate: %v, want a certificate error", err)
	}
	plain, err := tls.Dial("tcp", nodes[0].remote, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err == nil {
		_ = plain.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = plain.Read(make([]byte, 1))
		plain.Close()
	}
	if err == nil {
		t.Fatal("a peer without a certificate was served")
	}
	t.Logf("another CA's certificate and none were both refused")
}
