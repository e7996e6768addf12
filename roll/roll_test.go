package roll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/zktest"
)

// connect opens a store on root against a real ZooKeeper.
func connect(t testing.TB, zkc *zktest.Cluster, root string) *Store {
	t.Helper()
	cfg := config.ZooKeeper{Servers: zkc.Servers(), Root: root, SessionTimeout: 4 * time.Second, ACL: "open"}
	store, err := Open(context.Background(), cfg, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}

// dump lists every path under root with its data, to compare trees.
func dump(t testing.TB, s *Store, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(string)
	walk = func(p string) {
		data, _, err := s.conn.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(data)
		kids, _, err := s.conn.Children(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kids {
			walk(p + "/" + k)
		}
	}
	walk(root)
	return out
}

const goodSeed = `
[services.db]
quorum = 2
[services.db.health]
min_healthy = "1s"
deadline = "30s"

[services.api]
depends_on = ["db"]
quorum = "50%"
max_parallel = 2

[services.web]
depends_on = ["api"]
quorum = 1
`

func parse(t testing.TB, text string) Catalog {
	t.Helper()
	c, err := ParseCatalog("seed.toml", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seed(t testing.TB, s *Store, c Catalog) *Plan {
	t.Helper()
	p, err := s.PlanSeed(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplySeed(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIntegration_SeedIsIdempotentAndUpdatesPolicies(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc1")

	first := seed(t, s, parse(t, goodSeed))
	if len(first.Changes) == 0 {
		t.Fatal("first seed changed nothing")
	}
	before := dump(t, s, "/dc1")
	for _, want := range []string{"/dc1/services/db", "/dc1/members/api", "/dc1/current/web", "/dc1/deploy", "/dc1/staging", "/dc1/hosts", "/dc1/roll/db"} {
		if _, ok := before[want]; !ok {
			t.Errorf("seed did not create %s", want)
		}
	}

	again := seed(t, s, parse(t, goodSeed))
	if len(again.Changes) != 0 {
		t.Fatalf("second seed of the same file changed %v", again.Changes)
	}
	if after := dump(t, s, "/dc1"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("second seed changed the tree:\n%v\n%v", before, after)
	}

	edited := strings.Replace(goodSeed, "quorum = 1", "quorum = 3", 1)
	p := seed(t, s, parse(t, edited))
	if len(p.Changes) != 1 || p.Changes[0].Op != "update" || p.Changes[0].Path != "/dc1/services/web" {
		t.Fatalf("edit should update exactly /dc1/services/web, got %v", p.Changes)
	}
	svcs, err := s.Services()
	if err != nil {
		t.Fatal(err)
	}
	if svcs["web"].Quorum.Count != 3 || svcs["api"].Quorum.Percent != 50 || svcs["api"].MaxParallel != 2 {
		t.Fatalf("policies not stored: %+v", svcs)
	}
	if svcs["db"].Health.MinHealthy != Duration(time.Second) || svcs["web"].Health.Deadline != DefaultDeadline {
		t.Fatalf("health policy: %+v", svcs)
	}

	// A service dropped from the file is reported, never removed.
	p, err = s.PlanSeed(parse(t, "[services.db]\nquorum = 2\n[services.db.health]\nmin_healthy = \"1s\"\ndeadline = \"30s\""))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.Extra) != "[api web]" || len(p.Changes) != 0 {
		t.Fatalf("plan for a smaller catalog: changes %v extra %v", p.Changes, p.Extra)
	}
}

func TestIntegration_SeedRejectsBadFilesAndChangesNothing(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc2")
	seed(t, s, parse(t, goodSeed))
	before := dump(t, s, "/dc2")

	bad := []struct{ name, text, want string }{
		{"unknown dependency", "[services.a]\nquorum = 1\ndepends_on = [\"ghost\"]", `"a" depends on "ghost", which is not in the catalog`},
		{"cycle", "[services.a]\nquorum = 1\ndepends_on = [\"c\"]\n[services.b]\nquorum = 1\ndepends_on = [\"a\"]\n[services.c]\nquorum = 1\ndepends_on = [\"b\"]", "dependency cycle: a -> c -> b -> a"},
		{"self dependency", "[services.a]\nquorum = 1\ndepends_on = [\"a\"]", `"a" depends on itself`},
		{"quorum negative", "[services.a]\nquorum = -2", "quorum -2 is below 0"},
		{"quorum zero percent", "[services.a]\nquorum = \"0%\"", "below 1%"},
		{"quorum over 100%", "[services.a]\nquorum = \"150%\"", "outside"},
		{"quorum word", "[services.a]\nquorum = \"most\"", "quorum \"most\""},
		{"quorum missing", "[services.a]\nmax_parallel = 1", "quorum is missing"},
		{"max_parallel negative", "[services.a]\nquorum = 1\nmax_parallel = -1", "max_parallel -1"},
		{"unknown key", "[services.a]\nquorum = 1\nqourum = 2", "unknown key services.a.qourum"},
		{"bad duration", "[services.a]\nquorum = 1\n[services.a.health]\ndeadline = \"soon\"", "duration \"soon\""},
		{"min_healthy over deadline", "[services.a]\nquorum = 1\n[services.a.health]\nmin_healthy = \"10m\"\ndeadline = \"1m\"", "longer than the deadline"},
		{"no services", "", "lists no services"},
		{"not toml", "[services.a\nquorum = 1", "seed.toml"},
		{"bad name", "[services.\"a/b\"]\nquorum = 1", `service name "a/b"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCatalog("seed.toml", strings.NewReader(tc.text))
			if err == nil {
				t.Fatal("accepted a bad seed file")
			}
			if !errors.Is(err, ErrBadCatalog) && tc.name != "not toml" {
				t.Errorf("error does not wrap ErrBadCatalog: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// A catalog built in code is validated again before any write.
	c := parse(t, goodSeed)
	web := c["web"]
	web.DependsOn = []string{"nope"}
	c["web"] = web
	if _, err := s.PlanSeed(c); err == nil {
		t.Fatal("PlanSeed accepted an invalid catalog")
	}
	if after := dump(t, s, "/dc2"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a rejected seed changed the tree")
	}
}

func TestIntegration_SeedIsAtomicUnderConcurrentChange(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc3")
	p, err := s.PlanSeed(parse(t, goodSeed))
	if err != nil {
		t.Fatal(err)
	}
	// Someone creates one of the planned nodes in between.
	if _, err := s.conn.Create("/dc3", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplySeed(p); !errors.Is(err, ErrConcurrentChange) {
		t.Fatalf("want ErrConcurrentChange, got %v", err)
	}
	if got := dump(t, s, "/dc3"); len(got) != 1 {
		t.Fatalf("a failed seed left part of the tree: %v", got)
	}
}

func TestIntegration_MalformedZnodesNameThePath(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc4")
	seed(t, s, parse(t, goodSeed))
	acl := zk.WorldACL(zk.PermAll)

	cases := []struct {
		name, path, data string
		read             func() error
		want             string
	}{
		{"service not json", "/dc4/services/db", "{nope", func() error { _, err := s.Services(); return err }, "invalid JSON"},
		{"service quorum negative", "/dc4/services/db", `{"quorum":-1,"max_parallel":1,"health":{"min_healthy":"1s","deadline":"1m"}}`, func() error { _, err := s.Services(); return err }, "quorum -1 is below 0"},
		{"service quorum missing", "/dc4/services/db", `{"max_parallel":1,"health":{"min_healthy":"1s","deadline":"1m"}}`, func() error { _, err := s.Services(); return err }, "quorum: missing"},
		{"service wrong type", "/dc4/services/db", `{"quorum":1,"max_parallel":"many"}`, func() error { _, err := s.Services(); return err }, "invalid JSON"},
		{"service empty", "/dc4/services/db", ``, func() error { _, err := s.Services(); return err }, "empty"},
		{"service oversized", "/dc4/services/db", `{"x":"` + strings.Repeat("a", MaxNodeData) + `"}`, func() error { _, err := s.Services(); return err }, "more than"},
		{"current no version", "/dc4/current/db/h1", `{"since":"2026-01-01T00:00:00Z"}`, func() error { _, err := s.CurrentOf("db"); return err }, "version: missing"},
		{"current bad version", "/dc4/current/db/h1", `{"version":"../../etc"}`, func() error { _, err := s.CurrentOf("db"); return err }, "version"},
		{"current array", "/dc4/current/db/h1", `[1,2]`, func() error { _, err := s.CurrentOf("db"); return err }, "invalid JSON"},
		{"host no agent", "/dc4/hosts/h1", `{"services":[]}`, func() error { _, err := s.Hosts(); return err }, "agent: missing"},
		{"host bad service", "/dc4/hosts/h1", `{"agent":"1","services":["a/b"]}`, func() error { _, err := s.Hosts(); return err }, "a/b"},
		{"host bad machine id", "/dc4/hosts/h1", `{"agent":"1","services":["db"],"machine_id":"web-01"}`, func() error { _, err := s.Hosts(); return err }, `machine_id "web-01"`},
		{"host fetching via carrier pigeon", "/dc4/hosts/h1", `{"agent":"1","services":["db"],"fetching":{"db":{"version":"2","via":"pigeon"}}}`, func() error { _, err := s.Hosts(); return err }, `via "pigeon"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stat, err := s.conn.Get(tc.path)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				if _, err := s.conn.Create(tc.path, []byte(tc.data), 0, acl); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.conn.Delete(tc.path, -1) })
			case err != nil:
				t.Fatal(err)
			default:
				old, _, _ := s.conn.Get(tc.path)
				if _, err := s.conn.Set(tc.path, []byte(tc.data), stat.Version); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _, _ = s.conn.Set(tc.path, old, -1) })
			}
			err = tc.read()
			if strings.Contains(tc.path, "/current/") || strings.Contains(tc.path, "/hosts/") {
				// One bad host's node does not fail the read of the
				// fleet: it is skipped, and Skipped says why.
				if err != nil {
					t.Fatalf("read with a bad %s: %v", tc.path, err)
				}
				i := slices.IndexFunc(s.Skipped(), func(sk Skipped) bool { return sk.Path == strconv.Quote(tc.path) })
				if i < 0 {
					t.Fatalf("%s not in Skipped: %+v", tc.path, s.Skipped())
				}
				if why := s.Skipped()[i].Why; !strings.Contains(why, tc.path) || !strings.Contains(why, tc.want) {
					t.Fatalf("skipped because %q, should name %s and say %q", why, tc.path, tc.want)
				}
				return
			}
			var ne *NodeError
			if !errors.As(err, &ne) || !errors.Is(err, ErrBadNode) {
				t.Fatalf("want a NodeError, got %v", err)
			}
			if ne.Path != tc.path || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name %s and say %q", err, tc.path, tc.want)
			}
		})
	}
}

func TestIntegration_EphemeralsAndStatus(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc5")
	seed(t, s, parse(t, goodSeed))
	for _, h := range []string{"h1", "h2", "h3"} {
		if err := s.EnsureMember("db", h, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EnsureMember("nosuch", "h1", Member{Joined: time.Now()}); err == nil || !strings.Contains(err.Error(), "not in the catalog") {
		t.Fatalf("membership of an unknown service: %v", err)
	}
	other := connect(t, zkc, "/dc5")
	if err := other.SetCurrent("db", "h1", Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCurrent("db", "h2", Current{Version: "v2", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterHost("h2", Host{Agent: "test", Services: []string{"db"}}); err != nil {
		t.Fatal(err)
	}
	// A node of another session is left alone: Register clears those of
	// this machine's earlier sessions, any other is not this agent's.
	err := s.SetCurrent("db", "h1", Current{Version: "v2", Since: time.Now()})
	if !errors.Is(err, ErrHeldElsewhere) || !strings.Contains(err.Error(), "/dc5/current/db/h1") {
		t.Fatalf("writing another session's node: %v, want ErrHeldElsewhere naming it", err)
	}
	data, stat, err := s.conn.Get("/dc5/current/db/h1")
	if err != nil || stat.EphemeralOwner != other.conn.SessionID() || !strings.Contains(string(data), `"v1"`) {
		t.Fatalf("another session's node was touched: %s %v", data, err)
	}
	// This session's own node is rewritten in place.
	if err := s.SetCurrent("db", "h2", Current{Version: "v2", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	var db ServiceStatus
	for _, svc := range st.Services {
		if svc.Name == "db" {
			db = svc
		}
	}
	if fmt.Sprint(db.Online) != "[h1 h2]" || fmt.Sprint(db.Offline) != "[h3]" || db.Versions["v1"] != 1 || db.Versions["v2"] != 1 || db.QuorumHosts != 2 {
		t.Fatalf("db status: %+v", db)
	}
	var names []string
	for _, h := range st.Hosts {
		names = append(names, h.Name)
		if h.Name == "h2" && !h.AgentUp {
			t.Error("h2's agent should be up")
		}
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[h1 h2 h3]" {
		t.Fatalf("hosts: %v", names)
	}
	// Closing the session takes every ephemeral of it with it.
	s.Close()
	cur, err := other.CurrentOf("db")
	if _, ok := cur["h1"]; err != nil || len(cur) != 1 || !ok {
		t.Fatalf("current after close: %v %v: want other's h1 alone", cur, err)
	}
}

func TestIntegration_DigestACL(t *testing.T) {
	zkc := zktest.Standalone(t)
	pw := t.TempDir() + "/pw"
	if err := writeFile(pw, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	cfg := config.ZooKeeper{Servers: zkc.Servers(), Root: "/secure", SessionTimeout: 4 * time.Second, ACL: "digest+read", User: "dcroll", PasswordFile: pw}
	store, err := Open(context.Background(), cfg, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	seed(t, store, parse(t, goodSeed))
	anon := connect(t, zkc, "/secure")
	if _, err := anon.Services(); err != nil {
		t.Fatalf("digest+read should let anyone read: %v", err)
	}
	if _, err := anon.conn.Set("/secure/services/db", []byte("{}"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("an anonymous write should be refused, got %v", err)
	}
}

// The review's finding: seed with a digest config on an open tree said "0
// nodes changed" and left /staging world-writable. It now repairs the ACL
// of every node.
func TestIntegration_DigestSeedRepairsAnOpenTree(t *testing.T) {
	zkc := zktest.Standalone(t)
	open := connect(t, zkc, "/dc")
	seed(t, open, parse(t, goodSeed))
	pw := t.TempDir() + "/pw"
	if err := writeFile(pw, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	cfg := config.ZooKeeper{Servers: zkc.Servers(), Root: "/dc", SessionTimeout: 4 * time.Second, ACL: "digest+read", User: "dcroll", PasswordFile: pw}
	store, err := Open(context.Background(), cfg, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	plan, err := store.PlanSeed(parse(t, goodSeed))
	if err != nil {
		t.Fatal(err)
	}
	acls := 0
	for _, ch := range plan.Changes {
		if ch.Op != "acl" {
			t.Errorf("change %s: only ACLs should change", ch)
		}
		acls++
	}
	if want := len(dump(t, open, "/dc")); acls != want {
		t.Errorf("%d ACL changes, want one for each of the %d nodes", acls, want)
	}
	if err := store.ApplySeed(plan); err != nil {
		t.Fatal(err)
	}
	if _, err := open.conn.Create("/dc/staging/x", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("an anonymous create under /staging after seed: %v, want zk.ErrNoAuth", err)
	}
	if _, err := open.Services(); err != nil {
		t.Errorf("digest+read still lets anyone read: %v", err)
	}
}

func TestQuorumNeed(t *testing.T) {
	for _, tc := range []struct {
		q       Quorum
		members int
		want    int
	}{
		{Quorum{Count: 2}, 10, 2},
		{Quorum{Percent: 50}, 10, 5},
		{Quorum{Percent: 50}, 9, 5},
		{Quorum{Percent: 100}, 3, 3},
		{Quorum{Percent: 1}, 1, 1},
	} {
		if got := tc.q.Need(tc.members); got != tc.want {
			t.Errorf("%s of %d: %d, want %d", tc.q, tc.members, got, tc.want)
		}
	}
}

func FuzzDecodeService(f *testing.F) {
	f.Add([]byte(`{"depends_on":["a"],"quorum":"50%","max_parallel":1,"health":{"min_healthy":"1s","deadline":"1m"}}`))
	f.Add([]byte(`{"quorum":2}`))
	f.Add([]byte(`{"version":"v1","since":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":"v2","size":10,"sha256":"` + strings.Repeat("a", 64) + `","urls":["http://x/a"],"infohash":"` + strings.Repeat("b", 40) + `","metainfo":"ZDQ6aW5mb2Rl"}`))
	f.Add([]byte(`{"services":["db","api"],"ordered":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte("[services.a]\nquorum = \"50%\"\n[services.b]\nquorum = 1\ndepends_on = [\"a\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Service
		if err := decode("/dc/services/x", data, &s); err == nil {
			b, err := encode(s)
			if err != nil {
				t.Fatalf("decoded a service it cannot encode: %v", err)
			}
			var again Service
			if err := decode("/dc/services/x", b, &again); err != nil {
				t.Fatalf("round trip: %v", err)
			}
		}
		var c Current
		_ = decode("/dc/current/x/h", data, &c)
		var h Host
		_ = decode("/dc/hosts/h", data, &h)
		for _, v := range []node{&Manifest{}, &Step{}, &Control{}, &DeployControl{}, &Turn{}, &Ready{}, &Member{}} {
			if err := decode("/dc/x", data, v); err == nil {
				if _, err := encode(v); err != nil {
					t.Fatalf("decoded %T it cannot encode: %v", v, err)
				}
			}
		}
		if c, err := ParseCatalog("fuzz.toml", bytes.NewReader(data)); err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("ParseCatalog accepted a catalog Validate refuses: %v", err)
			}
		}
	})
}
