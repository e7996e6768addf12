package modes_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// digestID is ZooKeeper's digest identity of user with password.
func digestID(user, password string) string {
	return "digest:" + zk.DigestACL(zk.PermAll, user, password)[0].ID
}

// rolesConfig is a [zookeeper] table for the roles ACL with digest
// credentials, logged in as user.
func rolesConfig(t testing.TB, zkc *zktest.Cluster, root, user string) string {
	t.Helper()
	pw := writeFile(t, "password", user+"-s3cret\n")
	return fmt.Sprintf("[zookeeper]\nservers = [%q]\nroot = %q\nsession_timeout = \"10s\"\nacl = \"roles\"\nuser = %q\npassword_file = %q\noperator_id = %q\nagent_id = %q\n",
		zkc.Servers()[0], root, user, pw, digestID("operator", "operator-s3cret"), digestID("agent", "agent-s3cret"))
}

// An open tree, seeded again with the roles ACL, gets each node's ACL
// repaired: seed lists every node it changed, /staging is no longer
// world-writable, and the agent role may not stage.
func TestIntegration_SeedRepairsACLs(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/dc"
	store := openStore(t, zkc, root)
	v1 := writeFile(t, "seed.toml", seedV1)
	if r := dcroll(t, seedArgs(t, zkc, root, v1)...); r.code != 0 {
		t.Fatalf("seed open:\n%s", r)
	}
	anon := rolltest.RawOf(t, store)
	if _, err := anon.Create(root+"/staging/x", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("the open tree refuses an anonymous write to /staging: %v", err)
	}
	if err := anon.Delete(root+"/staging/x", -1); err != nil {
		t.Fatal(err)
	}
	nodes := slices.Sorted(func(yield func(string) bool) {
		for p := range dump(t, anon, root) {
			if !yield(p) {
				return
			}
		}
	})

	opConfig := configFile(t, rolesConfig(t, zkc, root, "operator"))
	r := dcroll(t, "--config", opConfig, "seed", "--dry-run", v1)
	if r.code != 0 {
		t.Fatalf("seed --dry-run with roles:\n%s", r)
	}
	if want := fmt.Sprintf("%s: 2 services, %d nodes would change", root, len(nodes)); !strings.Contains(r.stdout, want) {
		t.Errorf("seed --dry-run with roles does not say %q:\n%s", want, r)
	}
	if _, err := anon.Create(root+"/staging/x", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("after seed --dry-run, /staging: %v: the dry run changed an ACL", err)
	}
	_ = anon.Delete(root+"/staging/x", -1)

	r = dcroll(t, "--config", opConfig, "seed", v1)
	if r.code != 0 {
		t.Fatalf("seed with roles:\n%s", r)
	}
	var repaired []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if p, ok := strings.CutPrefix(line, "acl "); ok {
			repaired = append(repaired, p)
		}
	}
	if !slices.Equal(repaired, nodes) {
		t.Errorf("seed with roles repaired the ACLs of\n%s\nwant every node:\n%s", strings.Join(repaired, "\n"), strings.Join(nodes, "\n"))
	}
	if !strings.Contains(r.stdout, "acl "+root+"/staging\n    was: world:anyone:cdrwa\n    now: digest:operator:") {
		t.Errorf("seed does not show /staging's ACL as it was and is:\n%s", r)
	}
	if _, err := anon.Create(root+"/staging/x", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("after seed with roles, an anonymous create under /staging: %v, want zk.ErrNoAuth", err)
	}
	if _, err := anon.Set(root+"/services/db", []byte("{}"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("after seed with roles, an anonymous write of a policy: %v, want zk.ErrNoAuth", err)
	}

	// Seeding again finds nothing to repair.
	r = dcroll(t, "--config", opConfig, "seed", v1)
	if want := fmt.Sprintf("%s: 2 services, 0 nodes changed", root); r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Errorf("seed with roles again:\n%s\nwant %q", r, want)
	}

	// The agent's credential may not stage.
	cfg, err := config.Load(config.Sources{FileData: []byte(rolesConfig(t, zkc, root, "agent")), Flags: map[string]any{"host.name": "h1"}})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := roll.Open(context.Background(), cfg.ZooKeeper, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	m := roll.Manifest{Version: "v666", Size: 1, SHA256: strings.Repeat("a", 64), URLs: []string{"http://evil.example/a"}, Staged: time.Now().UTC()}
	if err := agent.Stage("db", m, false); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("the agent's credential stages: %v, want zk.ErrNoAuth", err)
	}
	if err := agent.AppendSteps([][]string{{"db"}}); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("the agent's credential orders: %v, want zk.ErrNoAuth", err)
	}
	// What ZooKeeper's ACLs cannot stop (docs/PROTOCOL.md): one agent
	// credential may speak for any host, here a host that is not its own.
	if err := agent.SetCurrent("db", "someone-else", roll.Current{Version: "v1", Since: time.Now().UTC()}); err != nil {
		t.Errorf("the agent role cannot write another host's /current node: %v; docs/PROTOCOL.md says it can", err)
	}
}
