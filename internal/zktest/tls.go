package zktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a certificate authority made for one test: it signs the server's
// certificate of a TLS cluster and the clients' certificates. Its files live
// in the test's t.TempDir().
type PKI struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
	// CAFile is the CA's certificate, PEM: what clients and servers trust.
	CAFile string
}

// NewPKI makes a new certificate authority.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("zktest: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "zktest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("zktest: CA certificate: %v", err)
	}
	if p.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatalf("zktest: CA certificate: %v", err)
	}
	p.key = key
	p.serial.Store(1)
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.CAFile, 0o644, "CERTIFICATE", der)
	return p
}

// Issue makes a certificate signed by the CA whose subject is CN=cn, for
// both server and client use, valid for hosts (DNS names or IP addresses).
// It writes the certificate and its key (mode 0600), PEM, and returns their
// paths. ZooKeeper's x509 authentication makes "CN=cn" the client's
// identity.
func (p *PKI) Issue(t testing.TB, cn string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("zktest: key for %s: %v", cn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatalf("zktest: certificate for %s: %v", cn, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("zktest: key for %s: %v", cn, err)
	}
	base := filepath.Join(p.dir, strings.NewReplacer("/", "_", " ", "_").Replace(cn)+fmt.Sprintf("-%d", tmpl.SerialNumber))
	certFile, keyFile = base+".pem", base+".key"
	writePEM(t, certFile, 0o644, "CERTIFICATE", der)
	writePEM(t, keyFile, 0o600, "PRIVATE KEY", pkcs8)
	return certFile, keyFile
}

// ClientConfig is a TLS configuration that trusts the CA and presents a
// certificate for cn.
func (p *PKI) ClientConfig(t testing.TB, cn string) *tls.Config {
	t.Helper()
	certFile, keyFile := p.Issue(t, cn)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("zktest: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}
}

func writePEM(t testing.TB, path string, mode os.FileMode, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
		t.Fatalf("zktest: %v", err)
	}
}

// TLS says how a TLS cluster serves clients.
type TLS struct {
	// PKI signs the server's certificate (for 127.0.0.1 and localhost)
	// and is what the server trusts in clients' certificates.
	PKI *PKI
	// ClientAuth is ZooKeeper's ssl.clientAuth: "need" (a client must
	// present a certificate), "want" (it may) or "none".
	ClientAuth string
}

// StandaloneTLS starts a single server that serves clients only on a
// secure client port, over TLS (ZooKeeper's Netty server), with x509
// authentication: a client's certificate subject ("CN=...") is its ACL
// identity. Servers returns that port's address; plain TCP to it gets no
// session.
func StandaloneTLS(t testing.TB, opts TLS) *Cluster {
	t.Helper()
	if opts.ClientAuth == "" {
		opts.ClientAuth = "need"
	}
	return newClusterTLS(t, &opts)
}

// tlsServer is what a server of a TLS cluster needs: its key store, and the
// client configuration of the cluster's own checks.
type tlsServer struct {
	keyStore   string // the server's key and certificate, PEM
	trustStore string // the CA, PEM
	clientAuth string
	client     *tls.Config // for the four-letter words
}

func newTLSServer(t testing.TB, opts *TLS) *tlsServer {
	t.Helper()
	certFile, keyFile := opts.PKI.Issue(t, "zookeeper", "127.0.0.1", "localhost")
	cert, err1 := os.ReadFile(certFile)
	key, err2 := os.ReadFile(keyFile)
	if err1 != nil || err2 != nil {
		t.Fatalf("zktest: server key store: %v %v", err1, err2)
	}
	keyStore := strings.TrimSuffix(certFile, ".pem") + "-keystore.pem"
	if err := os.WriteFile(keyStore, append(key, cert...), 0o600); err != nil {
		t.Fatalf("zktest: server key store: %v", err)
	}
	return &tlsServer{keyStore: keyStore, trustStore: opts.PKI.CAFile, clientAuth: opts.ClientAuth, client: opts.PKI.ClientConfig(t, "zktest")}
}

// config is the server's zoo.cfg lines for TLS.
func (ts *tlsServer) config(host string, port int) string {
	return fmt.Sprintf(`secureClientPort=%d
secureClientPortAddress=%s
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=%s
ssl.keyStore.type=PEM
ssl.trustStore.location=%s
ssl.trustStore.type=PEM
ssl.clientAuth=%s
ssl.hostnameVerification=false
authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider
`, port, host, ts.keyStore, ts.trustStore, ts.clientAuth)
}
