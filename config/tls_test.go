package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/internal/zktest"
)

// The TLS settings of [zookeeper] are checked when the config loads: each
// mistake is an error naming its key, and a good set gives a configuration
// that verifies the servers and presents the client certificate.
func TestZooKeeperTLS(t *testing.T) {
	pki := zktest.NewPKI(t)
	cert, key := pki.Issue(t, "dcroll-agent")
	loose := filepath.Join(t.TempDir(), "loose.key")
	data, _ := os.ReadFile(key)
	if err := os.WriteFile(loose, data, 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	load := func(lines string) (*Config, error) {
		return Load(Sources{File: "dcroll.toml", FileData: []byte("[zookeeper]\n" + lines), Flags: map[string]any{"host.name": "h"}})
	}
	q := func(k, v string) string { return k + " = \"" + v + "\"\n" }
	for _, tc := range []struct{ lines, key, says string }{
		{q("tls_cert", cert) + q("tls_key", key), "zookeeper.tls_cert", "tls_ca is empty"},
		{q("tls_server_name", "zk"), "zookeeper.tls_server_name", "tls_ca is empty"},
		{q("tls_ca", "ca.pem"), "zookeeper.tls_ca", "not an absolute path"},
		{q("tls_ca", notPEM), "zookeeper.tls_ca", "no PEM certificate"},
		{q("tls_ca", pki.CAFile) + q("tls_cert", cert), "zookeeper.tls_key", "empty"},
		{q("tls_ca", pki.CAFile) + q("tls_key", key), "zookeeper.tls_cert", "empty"},
		{q("tls_ca", pki.CAFile) + q("tls_cert", cert) + q("tls_key", loose), "zookeeper.tls_key", "chmod 600"},
		{q("tls_ca", pki.CAFile) + q("tls_cert", pki.CAFile) + q("tls_key", key), "zookeeper.tls_cert", "private key does not match"},
	} {
		_, err := load(tc.lines)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: err = %v, want an error naming %s saying %q", tc.lines, err, tc.key, tc.says)
		}
	}

	c, err := load(q("tls_ca", pki.CAFile) + q("tls_cert", cert) + q("tls_key", key) + q("tls_server_name", "zk.example"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.ZooKeeper.ClientTLS()
	if err != nil || tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "zk.example" {
		t.Fatalf("ClientTLS = %+v, %v", tc, err)
	}
	if tc, err := (ZooKeeper{}).ClientTLS(); tc != nil || err != nil {
		t.Fatalf("no tls_ca: %v %v, want plain TCP", tc, err)
	}
}

// The roles ACL needs both identities, different and well formed, and a
// credential of this host's own.
func TestRolesACL(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret"), 0o600)
	const op, agent = `operator_id = "x509:CN=op"` + "\n", `agent_id = "digest:agent:` + "uSJRNMQTSddPhjGspnFSJGV5JwE=" + `"` + "\n"
	cred := `user = "op"` + "\n" + `password_file = "` + pw + `"` + "\n"
	for _, tc := range []struct{ lines, key, says string }{
		{`acl = "roles"` + "\n" + agent + cred, "zookeeper.operator_id", "want x509:SUBJECT or digest:USER:HASH"},
		{`acl = "roles"` + "\n" + op + `agent_id = "x509:"` + "\n" + cred, "zookeeper.agent_id", "subject after x509: is empty"},
		{`acl = "roles"` + "\n" + op + `agent_id = "digest:agent:secret"` + "\n" + cred, "zookeeper.agent_id", "base64 SHA-1"},
		{`acl = "roles"` + "\n" + op + `agent_id = "x509:CN=op"` + "\n" + cred, "zookeeper.agent_id", "its own credential"},
		{`acl = "roles"` + "\n" + op + agent, "zookeeper.acl", "needs this host's credential"},
	} {
		_, err := Load(Sources{File: "dcroll.toml", FileData: []byte("[zookeeper]\n" + tc.lines), Flags: map[string]any{"host.name": "h"}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: err = %v, want an error naming %s saying %q", tc.lines, err, tc.key, tc.says)
		}
	}
	if _, err := Load(Sources{File: "dcroll.toml", FileData: []byte("[zookeeper]\nacl = \"roles\"\n" + op + agent + cred), Flags: map[string]any{"host.name": "h"}}); err != nil {
		t.Fatal(err)
	}
}
