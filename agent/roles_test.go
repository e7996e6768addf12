package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// rolesZooKeeper is the [zookeeper] settings of the roles ACL over TLS with
// x509 identities, for a holder of certFile.
func rolesZooKeeper(pki *zktest.PKI, certFile, keyFile string) string {
	return fmt.Sprintf("acl = \"roles\"\noperator_id = \"x509:CN=dcroll-operator\"\nagent_id = \"x509:CN=dcroll-agent\"\ntls_ca = %q\ntls_cert = %q\ntls_key = %q\n",
		pki.CAFile, certFile, keyFile)
}

// TestIntegration_RolloutWithRoles: over TLS, with x509 identities, the
// operator seeds, stages and orders, the agents roll the release out with
// the agent role alone, and the agent's credential may not stage.
func TestIntegration_RolloutWithRoles(t *testing.T) {
	pki := zktest.NewPKI(t)
	zkc := zktest.StandaloneTLS(t, zktest.TLS{PKI: pki, ClientAuth: "need"})
	opCert, opKey := pki.Issue(t, "dcroll-operator")
	agentCert, agentKey := pki.Issue(t, "dcroll-agent")
	open := func(cert, key string) *roll.Store {
		t.Helper()
		text := fmt.Sprintf("[zookeeper]\nservers = [%q]\n%s", zkc.Servers()[0], rolesZooKeeper(pki, cert, key))
		cfg, err := config.Load(config.Sources{FileData: []byte(text), Flags: map[string]any{"host.name": "admin"}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := roll.Open(context.Background(), cfg.ZooKeeper, hclog.NewNullLogger(), 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	f := newFleetOn(t, zkc, open(opCert, opKey), fmt.Sprintf(oneServiceCatalog, 2, 1, "200ms", "30s"), []string{"web"}, 3)
	for _, h := range f.hosts {
		b, err := os.ReadFile(h.config)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.Replace(string(b), "[zookeeper]\n", "[zookeeper]\n"+rolesZooKeeper(pki, agentCert, agentKey), 1))
		if err := os.WriteFile(h.config, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.startAll()
	f.stage("web", "v2", false)
	f.order([]string{"web"})
	f.waitQueueEmpty()
	f.waitVersion("web", "v2", f.hosts)

	agent := open(agentCert, agentKey)
	m, err := f.admin.Manifest("web")
	if err != nil {
		t.Fatal(err)
	}
	m.Version = "v3"
	if err := agent.Stage("web", m, true); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("the agent's credential stages: %v, want zk.ErrNoAuth", err)
	}
	if err := agent.AppendSteps([][]string{{"web"}}); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("the agent's credential orders: %v, want zk.ErrNoAuth", err)
	}
}

// An agent that cannot verify the servers says so, rather than waiting in
// silence.
func TestIntegration_AgentSaysWhyItCannotConnect(t *testing.T) {
	pki := zktest.NewPKI(t)
	zkc := zktest.StandaloneTLS(t, zktest.TLS{PKI: pki, ClientAuth: "want"})
	other := zktest.NewPKI(t)
	h := newHost(t, "h1", zkc.ConnString(), "/dc", "v1")
	b, err := os.ReadFile(h.config)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "[zookeeper]\n", fmt.Sprintf("[zookeeper]\ntls_ca = %q\n", other.CAFile), 1))
	if err := os.WriteFile(h.config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		if log := h.log(); !strings.Contains(log, "cannot connect to ZooKeeper") || !strings.Contains(log, "certificate signed by unknown authority") {
			return errors.New("the agent has not said why it cannot connect")
		}
		return nil
	})
}
