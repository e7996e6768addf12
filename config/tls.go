package config

import (
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ClientTLS is the TLS configuration of the connection to ZooKeeper, or nil
// when zookeeper.tls_ca is empty (plain TCP). It reads the files when
// called: a process takes renewed certificates when it starts.
func (z ZooKeeper) ClientTLS() (*tls.Config, error) {
	if z.TLSCA == "" {
		for _, kv := range [][2]string{{"zookeeper.tls_cert", z.TLSCert}, {"zookeeper.tls_key", z.TLSKey}, {"zookeeper.tls_server_name", z.TLSServerName}} {
			if kv[1] != "" {
				return nil, invalid(kv[0], "set, but zookeeper.tls_ca is empty: name the CA file that signs the servers' certificates")
			}
		}
		return nil, nil
	}
	ca, err := readFile("zookeeper.tls_ca", z.TLSCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, invalid("zookeeper.tls_ca", "%s holds no PEM certificate", z.TLSCA)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: z.TLSServerName, MinVersion: tls.VersionTLS12}
	switch {
	case z.TLSCert == "" && z.TLSKey == "":
		return cfg, nil
	case z.TLSCert == "":
		return nil, invalid("zookeeper.tls_cert", "empty, but zookeeper.tls_key is set")
	case z.TLSKey == "":
		return nil, invalid("zookeeper.tls_key", "empty, but zookeeper.tls_cert is set")
	}
	certPEM, err := readFile("zookeeper.tls_cert", z.TLSCert)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate("zookeeper.tls_key", z.TLSKey); err != nil {
		return nil, err
	}
	keyPEM, err := readFile("zookeeper.tls_key", z.TLSKey)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, invalid("zookeeper.tls_cert", "%s with the key in %s: %v", z.TLSCert, z.TLSKey, err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return cfg, nil
}

// readFile reads a small file the config key names by an absolute path.
func readFile(key, path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, invalid(key, "%q is not an absolute path", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, invalid(key, "%v", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
		return nil, invalid(key, "%s is not a regular file of at most 1 MiB", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid(key, "%v", err)
	}
	return b, nil
}

// checkPrivate refuses a key file that others may read.
func checkPrivate(key, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return invalid(key, "%v", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return invalid(key, "%s has mode %04o: others may read it; run chmod 600 %s", path, perm, path)
	}
	return nil
}

// ParseACLID parses a role's identity in ZooKeeper's ACLs, "scheme:id":
// "x509:" and a certificate's subject as ZooKeeper prints it
// ("CN=dcroll-agent,O=example"), or "digest:" and user:base64(sha1(
// user:password)), as ZooKeeper's DigestAuthenticationProvider makes it.
func ParseACLID(s string) (scheme, id string, err error) {
	scheme, id, _ = strings.Cut(s, ":")
	switch scheme {
	case "x509":
		if id == "" {
			return "", "", fmt.Errorf("%q: the subject after x509: is empty", s)
		}
	case "digest":
		user, hash, ok := strings.Cut(id, ":")
		if b, err := base64.StdEncoding.DecodeString(hash); !ok || user == "" || err != nil || len(b) != sha1.Size {
			return "", "", fmt.Errorf("%q: want digest:USER:HASH, HASH the base64 SHA-1 of USER:PASSWORD", s)
		}
	default:
		return "", "", fmt.Errorf("%q: want x509:SUBJECT or digest:USER:HASH", s)
	}
	return scheme, id, nil
}
