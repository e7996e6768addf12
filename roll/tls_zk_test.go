package roll

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/zktest"
)

// TestIntegration_TLS: dcroll reaches an ensemble that serves only its
// secure client port, verifies the server's certificate, reconnects over
// TLS after the server restarts; plain TCP gets nothing from that port.
func TestIntegration_TLS(t *testing.T) {
	pki := zktest.NewPKI(t)
	zkc := zktest.StandaloneTLS(t, zktest.TLS{PKI: pki, ClientAuth: "want"})
	addr := zkc.Servers()[0]

	cfg := config.ZooKeeper{Servers: zkc.Servers(), Root: "/tls", SessionTimeout: 10 * time.Second, ACL: "open", TLSCA: pki.CAFile}
	store, err := Open(context.Background(), cfg, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	seed(t, store, parse(t, goodSeed))
	if svcs, err := store.Services(); err != nil || len(svcs) != 3 {
		t.Fatalf("services over TLS: %v %v", svcs, err)
	}

	// The jittered reconnect dialer dials TLS too.
	first := store.Session().ID
	zkc.Stop(0)
	zkc.Start(0)
	deadline := time.Now().Add(30 * time.Second)
	for !store.Session().Up {
		if time.Now().After(deadline) {
			t.Fatalf("no session over TLS after the server restarted (had %x)", first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := store.Services(); err != nil {
		t.Fatalf("services after the restart: %v", err)
	}

	// A server whose certificate another CA signed is refused.
	other := zktest.NewPKI(t)
	tlsOther, err := config.ZooKeeper{TLSCA: other.CAFile}.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if c, err := tlsDialer(tlsOther)("tcp", addr, 5*time.Second); !errors.As(err, &unknown) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a server signed by another CA: got %v, want x509.UnknownAuthorityError", err)
	}

	// An operator command says why it got no session.
	bad := cfg
	bad.TLSCA = other.CAFile
	if _, err := Open(context.Background(), bad, hclog.NewNullLogger(), 2*time.Second); !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("Open with the wrong CA: %v, want ErrNoSession naming the certificate", err)
	}

	// A plain ZooKeeper connect request is answered by a closed connection.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	connect := make([]byte, 4+44)
	binary.BigEndian.PutUint32(connect, 44)
	binary.BigEndian.PutUint32(connect[4+12:], 10000) // timeout; the rest zero: a new session
	binary.BigEndian.PutUint32(connect[4+28:], 16)    // an empty 16-byte password
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	if n, err := io.ReadFull(c, make([]byte, 4)); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
		t.Fatalf("plain TCP to the secure port: read %d bytes, %v; want the connection closed", n, err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
