package modes_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

const seedV1 = `
[services.db]
quorum = 2
[services.db.health]
min_healthy = "1s"
deadline = "30s"

[services.api]
depends_on = ["db"]
quorum = "50%"
max_parallel = 2
`

// seedV2 changes db's quorum and nothing else.
const seedV2 = `
[services.db]
quorum = 1
[services.db.health]
min_healthy = "1s"
deadline = "30s"

[services.api]
depends_on = ["db"]
quorum = "50%"
max_parallel = 2
`

// seedArgs are the arguments of one seed run against zkc under root, with a
// config file of its own.
func seedArgs(t testing.TB, zkc *zktest.Cluster, root string, rest ...string) []string {
	t.Helper()
	cfg := configFile(t, "[zookeeper]\nsession_timeout = \"10s\"\n")
	return append([]string{"seed", "--config", cfg, "--zk", zkc.ConnString(), "--root", root}, rest...)
}

// treeNodes are the nodes seeding seedV1 creates under root, in the order
// seed prints them, without the root's ancestors.
func treeNodes(root string) []string {
	nodes := []string{root}
	for _, top := range []string{"services", "members", "hosts", "current", "staging", "deploy", "roll", "refused", "fleet"} {
		nodes = append(nodes, root+"/"+top)
	}
	for _, svc := range []string{"api", "db"} {
		nodes = append(nodes, root+"/services/"+svc, root+"/members/"+svc, root+"/current/"+svc, root+"/roll/"+svc, root+"/roll/"+svc+"/turns")
	}
	return nodes
}

// createdPaths lists the paths of the "create" lines of seed's output, and
// the policies it would write, by path.
func createdPaths(t testing.TB, stdout string) ([]string, map[string]roll.Service) {
	t.Helper()
	var paths []string
	policies := map[string]roll.Service{}
	for _, line := range strings.Split(stdout, "\n") {
		rest, ok := strings.CutPrefix(line, "create ")
		if !ok {
			continue
		}
		p, data, _ := strings.Cut(rest, " ")
		paths = append(paths, p)
		if data != "" {
			var svc roll.Service
			if err := json.Unmarshal([]byte(data), &svc); err != nil {
				t.Fatalf("create line %q: data is not a policy: %v", line, err)
			}
			policies[p] = svc
		}
	}
	return paths, policies
}

func TestIntegration_Seed(t *testing.T) {
	zkc := zktest.Standalone(t)
	// A root below a parent exercises creating the root's ancestors.
	const root = "/org/dc1"
	store := openStore(t, zkc, root)
	v1 := writeFile(t, "seed.toml", seedV1)
	wantNodes := append([]string{"/org"}, treeNodes(root)...)

	// --dry-run prints the whole tree and writes nothing.
	r := dcroll(t, seedArgs(t, zkc, root, "--dry-run", v1)...)
	if r.code != 0 {
		t.Fatalf("seed --dry-run:\n%s", r)
	}
	paths, policies := createdPaths(t, r.stdout)
	if got, want := strings.Join(paths, "\n"), strings.Join(wantNodes, "\n"); got != want {
		t.Errorf("seed --dry-run creates\n%s\nwant\n%s", got, want)
	}
	if db := policies[root+"/services/db"]; db.Quorum.Count != 2 || db.MaxParallel != 1 || db.Health.Deadline.String() != "30s" {
		t.Errorf("seed --dry-run would write db's policy as %+v", db)
	}
	if api := policies[root+"/services/api"]; api.Quorum.Percent != 50 || api.MaxParallel != 2 || len(api.DependsOn) != 1 || api.DependsOn[0] != "db" {
		t.Errorf("seed --dry-run would write api's policy as %+v", api)
	}
	wantSummary := fmt.Sprintf("%s: 2 services, %d nodes would change, 0 unchanged\n", root, len(wantNodes))
	if !strings.HasSuffix(r.stdout, wantSummary) {
		t.Errorf("seed --dry-run does not end with %q:\n%s", wantSummary, r)
	}
	if ok, _, err := rolltest.RawOf(t, store).Exists("/org"); err != nil || ok {
		t.Fatalf("after seed --dry-run, /org exists=%v (err %v): the dry run wrote", ok, err)
	}

	// seed creates what the dry run announced. The global flags go before
	// the mode here: they must survive its own parse. The servers come from
	// the config file, and the root from the flag.
	cfg := configFile(t, fmt.Sprintf("[zookeeper]\nservers = [%q]\nsession_timeout = \"10s\"\n", zkc.Servers()[0]))
	r = dcroll(t, "--config", cfg, "--root", root, "seed", v1)
	if r.code != 0 {
		t.Fatalf("seed:\n%s", r)
	}
	created, _ := createdPaths(t, r.stdout)
	if strings.Join(created, "\n") != strings.Join(paths, "\n") {
		t.Errorf("seed created\n%s\nbut the dry run announced\n%s", strings.Join(created, "\n"), strings.Join(paths, "\n"))
	}
	wantSummary = fmt.Sprintf("%s: 2 services, %d nodes changed, 0 unchanged\n", root, len(wantNodes))
	if !strings.HasSuffix(r.stdout, wantSummary) {
		t.Errorf("seed does not end with %q:\n%s", wantSummary, r)
	}
	tree := dump(t, rolltest.RawOf(t, store), "/org")
	// The history records the seed, and every seed that changes something
	// after it; the rest of the tree is the catalog's.
	if events, err := store.History("", 0); err != nil || len(events) != 1 || events[0].Action != roll.ActSeed {
		t.Errorf("after seed the history is %+v (err %v), want the seed", events, err)
	}
	withoutHistory := func(tree map[string]string) map[string]string {
		for p := range tree {
			if strings.HasPrefix(p, root+"/history") {
				delete(tree, p)
			}
		}
		return tree
	}
	tree = withoutHistory(tree)
	for _, p := range wantNodes {
		if _, ok := tree[p]; !ok {
			t.Errorf("after seed, %s is missing", p)
		}
	}
	if len(tree) != len(wantNodes) {
		t.Errorf("after seed the tree has %d nodes, want %d: %v", len(tree), len(wantNodes), tree)
	}
	services, err := store.Services()
	if err != nil {
		t.Fatalf("read the seeded catalog: %v", err)
	}
	if len(services) != 2 || services["db"].Quorum.Count != 2 || services["api"].Quorum.Percent != 50 {
		t.Errorf("seeded catalog %+v", services)
	}

	// Seeding the same file again changes nothing, not even a version.
	r = dcroll(t, seedArgs(t, zkc, root, v1)...)
	if r.code != 0 {
		t.Fatalf("seed again:\n%s", r)
	}
	wantOut := fmt.Sprintf("%s: 2 services, 0 nodes changed, %d unchanged\n", root, len(wantNodes))
	if r.stdout != wantOut {
		t.Errorf("seed again printed\n%s\nwant\n%s", r.stdout, wantOut)
	}
	if d := diffDumps(tree, withoutHistory(dump(t, rolltest.RawOf(t, store), "/org"))); d != "" {
		t.Errorf("seeding the same file again wrote:\n%s", d)
	}

	// After an edit, the dry run and then seed print the one update.
	v2 := writeFile(t, "seed.toml", seedV2)
	checkUpdate := func(what string, r result, summary string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s:\n%s", what, r)
		}
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("%s printed %d lines, want an update (3 lines) and the summary:\n%s", what, len(lines), r)
		}
		if lines[0] != "update "+root+"/services/db" {
			t.Errorf("%s: first line %q, want the update of db's policy", what, lines[0])
		}
		was, ok1 := strings.CutPrefix(strings.TrimSpace(lines[1]), "was: ")
		now, ok2 := strings.CutPrefix(strings.TrimSpace(lines[2]), "now: ")
		var old, cur roll.Service
		if !ok1 || !ok2 || json.Unmarshal([]byte(was), &old) != nil || json.Unmarshal([]byte(now), &cur) != nil {
			t.Fatalf("%s: the update does not show the old and new policy:\n%s", what, r)
		}
		if old.Quorum.Count != 2 || cur.Quorum.Count != 1 {
			t.Errorf("%s: update shows quorum %v -> %v, want 2 -> 1", what, old.Quorum, cur.Quorum)
		}
		if lines[3] != summary {
			t.Errorf("%s: summary %q, want %q", what, lines[3], summary)
		}
	}
	r = dcroll(t, seedArgs(t, zkc, root, "--dry-run", v2)...)
	checkUpdate("seed --dry-run after an edit", r, fmt.Sprintf("%s: 2 services, 1 nodes would change, %d unchanged", root, len(wantNodes)-1))
	if d := diffDumps(tree, withoutHistory(dump(t, rolltest.RawOf(t, store), "/org"))); d != "" {
		t.Errorf("seed --dry-run after an edit wrote:\n%s", d)
	}
	r = dcroll(t, seedArgs(t, zkc, root, v2)...)
	checkUpdate("seed after an edit", r, fmt.Sprintf("%s: 2 services, 1 nodes changed, %d unchanged", root, len(wantNodes)-1))
	after := withoutHistory(dump(t, rolltest.RawOf(t, store), "/org"))
	if d := diffDumps(tree, after); strings.TrimSpace(d) == "" || strings.Count(strings.TrimSpace(d), "\n") != 0 ||
		!strings.HasPrefix(d, "changed "+root+"/services/db:") {
		t.Errorf("seed after an edit should change db's policy only, but:\n%s", d)
	}
	if services, err := store.Services(); err != nil || services["db"].Quorum.Count != 1 {
		t.Errorf("after the edit, db's policy is %+v (err %v), want quorum 1", services["db"], err)
	}

	// A second data center under the same parent leaves the parent alone.
	r = dcroll(t, seedArgs(t, zkc, "/org/dc2", "--dry-run", v1)...)
	if r.code != 0 {
		t.Fatalf("seed --dry-run of /org/dc2:\n%s", r)
	}
	if paths, _ := createdPaths(t, r.stdout); strings.Join(paths, "\n") != strings.Join(treeNodes("/org/dc2"), "\n") {
		t.Errorf("seed --dry-run of /org/dc2 creates\n%s\nwant\n%s", strings.Join(paths, "\n"), strings.Join(treeNodes("/org/dc2"), "\n"))
	}
	if !strings.HasSuffix(r.stdout, fmt.Sprintf("/org/dc2: 2 services, %d nodes would change, 1 unchanged\n", len(treeNodes("/org/dc2")))) {
		t.Errorf("seed --dry-run of /org/dc2 does not count /org as unchanged:\n%s", r)
	}

	// A service dropped from the file is reported and left alone.
	dbOnly := writeFile(t, "db-only.toml", "[services.db]\nquorum = 1\n[services.db.health]\nmin_healthy = \"1s\"\ndeadline = \"30s\"\n")
	r = dcroll(t, seedArgs(t, zkc, root, dbOnly)...)
	if r.code != 0 {
		t.Fatalf("seed without api:\n%s", r)
	}
	wantNote := fmt.Sprintf("note: service %q is in %s/services but not in %s; left as it is\n", "api", root, dbOnly)
	if !strings.Contains(r.stdout, wantNote) {
		t.Errorf("seed without api does not say %q:\n%s", wantNote, r)
	}
	if !strings.Contains(r.stdout, root+": 1 services, 0 nodes changed") {
		t.Errorf("seed without api changed something:\n%s", r)
	}
	if d := diffDumps(after, withoutHistory(dump(t, rolltest.RawOf(t, store), "/org"))); d != "" {
		t.Errorf("seed without api wrote:\n%s", d)
	}
}

// TestIntegration_SeedBadFile checks that every bad seed file exits 1 naming
// the problem, and leaves a seeded tree exactly as it was, even when the
// rest of the file would change it.
func TestIntegration_SeedBadFile(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/bad"
	store := openStore(t, zkc, root)
	if r := dcroll(t, seedArgs(t, zkc, root, writeFile(t, "seed.toml", seedV1))...); r.code != 0 {
		t.Fatalf("seed:\n%s", r)
	}
	// Every bad file also edits db's policy, which must not be written.
	const dbEdited = "[services.db]\nquorum = 3\n"
	tests := []struct {
		name, file string
		want       []string
	}{
		{
			name: "cycle",
			file: dbEdited + "[services.a]\nquorum = 1\ndepends_on = [\"b\"]\n[services.b]\nquorum = 1\ndepends_on = [\"a\"]\n",
			want: []string{"dependency cycle", "a -> b -> a"},
		},
		{
			name: "longer cycle",
			file: dbEdited + "[services.a]\nquorum = 1\ndepends_on = [\"c\"]\n[services.b]\nquorum = 1\ndepends_on = [\"a\"]\n[services.c]\nquorum = 1\ndepends_on = [\"b\"]\n",
			want: []string{"dependency cycle", "a -> c -> b -> a"},
		},
		{
			name: "depends on itself",
			file: dbEdited + "[services.a]\nquorum = 1\ndepends_on = [\"a\"]\n",
			want: []string{`service "a" depends on itself`},
		},
		{
			name: "unknown dependency",
			file: dbEdited + "[services.api]\nquorum = 1\ndepends_on = [\"cache\"]\n",
			want: []string{`service "api" depends on "cache"`, "not in the catalog"},
		},
		{
			name: "quorum -1",
			file: "[services.db]\nquorum = -1\n",
			want: []string{`service "db"`, "quorum -1 is below 0"},
		},
		{
			name: "quorum 0%",
			file: dbEdited + "[services.api]\nquorum = \"0%\"\n",
			want: []string{`service "api"`, "below 1%"},
		},
		{
			name: "quorum over 100%",
			file: dbEdited + "[services.api]\nquorum = \"150%\"\n",
			want: []string{`service "api"`, "150%"},
		},
		{
			name: "quorum missing",
			file: dbEdited + "[services.api]\nmax_parallel = 1\n",
			want: []string{`service "api"`, "quorum is missing"},
		},
		{
			name: "max_parallel negative",
			file: dbEdited + "[services.api]\nquorum = 1\nmax_parallel = -1\n",
			want: []string{`service "api"`, "max_parallel -1"},
		},
		{
			name: "min_healthy after the deadline",
			file: dbEdited + "[services.api]\nquorum = 1\n[services.api.health]\nmin_healthy = \"10m\"\ndeadline = \"1m\"\n",
			want: []string{`service "api"`, "min_healthy 10m0s is longer than the deadline 1m0s"},
		},
		{
			name: "bad duration",
			file: dbEdited + "[services.api]\nquorum = 1\n[services.api.health]\ndeadline = \"soon\"\n",
			want: []string{"soon"},
		},
		{
			name: "unknown key",
			file: dbEdited + "[services.api]\nquorum = 1\nquorom = 2\n",
			want: []string{"unknown key", "quorom"},
		},
		{
			name: "bad service name",
			file: dbEdited + "[services.\"a b\"]\nquorum = 1\n",
			want: []string{`"a b"`},
		},
		{
			name: "no services",
			file: "# nothing\n",
			want: []string{"lists no services"},
		},
		{
			// Every problem at once, so that one edit fixes the file.
			name: "every error",
			file: dbEdited + "[services.a]\nmax_parallel = 1\n" + "[services.b]\nquorum = 1\nmax_parallel = -1\n" +
				"[services.c]\nquorum = 1\ndepends_on = [\"nope\"]\n" + "[services.d]\nquorum = \"150%\"\ndepends_on = [\"a\"]\n",
			want: []string{`service "a": quorum is missing`, `service "b": max_parallel -1`,
				`service "c" depends on "nope"`, `service "d"`, "150%"},
		},
		{
			name: "not TOML",
			file: "[services.db\nquorum = 1\n",
			want: []string{"roll: bad catalog"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dump(t, rolltest.RawOf(t, store), root)
			path := writeFile(t, "seed.toml", tt.file)
			for _, dry := range []bool{true, false} {
				args := []string{path}
				if dry {
					args = []string{"--dry-run", path}
				}
				r := dcroll(t, seedArgs(t, zkc, root, args...)...)
				if r.code != 1 {
					t.Errorf("seed %q: exit code %d, want 1", args, r.code)
				}
				want := append([]string{"dcroll seed: ", path}, tt.want...)
				for _, w := range want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("seed %q: stderr does not name %q", args, w)
					}
				}
				if r.stdout != "" {
					t.Errorf("seed %q printed changes for a bad file", args)
				}
				if t.Failed() {
					t.Logf("seed %q:\n%s", args, r)
				}
			}
			if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
				t.Errorf("a bad seed file changed the tree:\n%s", d)
			}
		})
	}

	// A missing seed file is an error naming it, not a usage error.
	missing := t.TempDir() + "/missing.toml"
	r := dcroll(t, seedArgs(t, zkc, root, missing)...)
	if r.code != 1 || !strings.Contains(r.stderr, missing) {
		t.Errorf("seed of a missing file: want exit 1 naming %s:\n%s", missing, r)
	}
}

// TestSeedHelpExample checks that the example in `dcroll help seed` is a
// valid seed file, so the help cannot rot.
func TestSeedHelpExample(t *testing.T) {
	r := dcroll(t, "help", "seed")
	if r.code != 0 {
		t.Fatalf("help seed:\n%s", r)
	}
	_, rest, ok1 := strings.Cut(r.stdout, "for example:\n")
	example, _, ok2 := strings.Cut(rest, "\nThe file is validated")
	if !ok1 || !ok2 {
		t.Fatalf("help seed has no example where expected:\n%s", r.stdout)
	}
	var lines []string
	for _, line := range strings.Split(example, "\n") {
		lines = append(lines, strings.TrimPrefix(line, "  "))
	}
	text := strings.Join(lines, "\n")
	c, err := roll.ParseCatalog("help example", strings.NewReader(text))
	if err != nil {
		t.Fatalf("the example of help seed is not a valid seed file: %v\n%s", err, text)
	}
	if got := c.Names(); len(got) != 2 || got[0] != "api" || got[1] != "db" {
		t.Errorf("the example names services %q, want api and db", got)
	}
	if db := c["db"]; db.Quorum.Count != 2 || db.Health.MinHealthy.String() != "30s" || db.Health.Deadline.String() != "5m0s" {
		t.Errorf("db in the example parses as %+v", db)
	}
}

// --min-protocol sets the lowest protocol version that may take turns, and
// refuses one this dcroll does not speak.
func TestIntegration_SeedMinProtocol(t *testing.T) {
	zkc := zktest.Standalone(t)
	root := "/minproto"
	store := openStore(t, zkc, root)
	file := writeFile(t, "seed.toml", "[services.db]\nquorum = 1\n")
	wantRun(t, dcroll(t, seedArgs(t, zkc, root, "--min-protocol", "1", file)...), 0, "min_protocol 1: agents that speak an older protocol take no upgrade turns")
	if v, err := store.MinProtocol(); err != nil || v != 1 {
		t.Errorf("min_protocol %d (%v) after seeding it, want 1", v, err)
	}
	tooNew := fmt.Sprint(roll.ProtocolVersion + 1)
	wantRun(t, dcroll(t, seedArgs(t, zkc, root, "--min-protocol", tooNew, file)...), 1, "min_protocol "+tooNew)
	if v, err := store.MinProtocol(); err != nil || v != 1 {
		t.Errorf("min_protocol %d (%v) after a refused change, want 1 still", v, err)
	}
}
