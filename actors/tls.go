package actors

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ClusterTLS makes the remote transport (the actor messages between nodes: raft, forwarded
// requests) mutual TLS. Every node presents the certificate in CertFile (with its key in
// KeyFile) and accepts a peer only if the peer's certificate chains to a CA in CAFile: the
// cluster's own CA. Host names are not checked (nodes are reached by the addresses they gossip,
// often IPs): any holder of a certificate from that CA is a member. Gossip is not covered;
// encrypt it with the gossip key.
type ClusterTLS struct {
	CertFile, KeyFile, CAFile string
}

// configs loads the files and returns the server's and the dialer's TLS configs.
func (c *ClusterTLS) configs() (server, dial *tls.Config, err error) {
	if c.CertFile == "" || c.KeyFile == "" || c.CAFile == "" {
		return nil, nil, errors.New("cluster TLS needs a certificate, its key and the cluster's CA")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster TLS certificate %s with key %s: %w", c.CertFile, c.KeyFile, err)
	}
	pemCA, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, nil, fmt.Errorf("cluster TLS CA %s: no PEM certificate in it", c.CAFile)
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	dial = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// The chain is checked below against the cluster's CA; the name is not (see ClusterTLS).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, pool)
		},
	}
	return server, dial, nil
}

// verifyChain checks that the peer's certificate (raw[0], intermediates after it) chains to a
// CA in roots and may serve as a TLS server.
func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("cluster TLS: the peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("cluster TLS: the peer's certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("cluster TLS: the peer's certificate is not from the cluster's CA: %w", err)
	}
	return nil
}
