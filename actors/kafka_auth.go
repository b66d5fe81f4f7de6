package actors

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaSecurity secures the Kafka protocol listener: TLS, and SASL/PLAIN authentication of
// every connection before any other request.
type KafkaSecurity struct {
	// TLS, if set, makes the listener speak TLS (the clients' security.protocol SSL or
	// SASL_SSL).
	TLS *tls.Config
	// Users, if set, are the SASL/PLAIN users and their passwords: a connection must
	// authenticate (SaslHandshake v1, then SaslAuthenticate) before any request other than
	// ApiVersions, or it is closed. Without TLS the password crosses the network in clear.
	Users map[string]string
}

// Kafka error codes of SASL.
const (
	kafkaIllegalSaslState          = 34
	kafkaUnsupportedSaslMechanism  = 33
	kafkaSaslAuthenticationFailure = 58
)

// kafkaConn is a connection's state.
type kafkaConn struct {
	remote    string // the client's address, for DescribeGroups
	mechanism string // "PLAIN" once SaslHandshake chose it
	user      string // authenticated user ("" until then)
	closing   bool   // close the connection after this answer (a failed authentication)
	held      int    // bytes the request just read keeps until answered (a produce's batches)

	lastFetch   chan struct{}   // closed once the last fetch read was answered (kafkaPending.sent)
	lastProduce chan struct{}   // closed once the last produce read was acknowledged (kafkaPending.acked)
	writerDone  <-chan struct{} // closed when the connection's writer stopped
}

// authenticated reports whether the connection may send any request.
func (k *kafkaListener) authenticated(c *kafkaConn) bool {
	return len(k.sec.Users) == 0 || c.user != ""
}

func (k *kafkaListener) saslHandshake(r *kmsg.SASLHandshakeRequest, c *kafkaConn) *kmsg.SASLHandshakeResponse {
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.SupportedMechanisms = []string{"PLAIN"}
	switch {
	case len(k.sec.Users) == 0:
		resp.ErrorCode = kafkaIllegalSaslState
	case c.user != "":
		resp.ErrorCode = kafkaIllegalSaslState
	case r.Mechanism != "PLAIN":
		resp.ErrorCode = kafkaUnsupportedSaslMechanism
	default:
		c.mechanism = "PLAIN"
	}
	return resp
}

func (k *kafkaListener) saslAuthenticate(r *kmsg.SASLAuthenticateRequest, c *kafkaConn) *kmsg.SASLAuthenticateResponse {
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	fail := func(why string) *kmsg.SASLAuthenticateResponse {
		resp.ErrorCode = kafkaSaslAuthenticationFailure
		msg := "authentication failed"
		resp.ErrorMessage = &msg
		c.closing = true
		k.logger.Warn("kafka: SASL/PLAIN authentication failed", "why", why)
		return resp
	}
	if c.mechanism != "PLAIN" || c.user != "" {
		resp.ErrorCode = kafkaIllegalSaslState
		c.closing = true
		return resp
	}
	user, pass, err := parsePlain(r.SASLAuthBytes)
	if err != nil {
		return fail(err.Error())
	}
	want, ok := k.sec.Users[user]
	if !ok {
		want = "\x00never matches\x00"
	}
	if subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 || !ok {
		return fail(fmt.Sprintf("user %q: wrong user or password", user))
	}
	c.user = user
	return resp
}

// parsePlain reads a SASL/PLAIN message (RFC 4616): [authzid] NUL authcid NUL passwd.
func parsePlain(b []byte) (user, pass string, err error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 {
		return "", "", errors.New("malformed PLAIN message")
	}
	if len(parts[0]) > 0 && !bytes.Equal(parts[0], parts[1]) {
		return "", "", fmt.Errorf("user %q may not act as %q", parts[1], parts[0])
	}
	if len(parts[1]) == 0 {
		return "", "", errors.New("empty user")
	}
	return string(parts[1]), string(parts[2]), nil
}
