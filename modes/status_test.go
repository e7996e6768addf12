package modes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/modes"
	"github.com/dcroll/dcroll/roll"
)

// statusArgs are the arguments of one status run against zkc under root.
func statusArgs(t testing.TB, zkc *zktest.Cluster, root string, rest ...string) []string {
	t.Helper()
	cfg := configFile(t, "[zookeeper]\nsession_timeout = \"10s\"\n")
	return append([]string{"status", "--config", cfg, "--zk", zkc.ConnString(), "--root", root}, rest...)
}

// seedFleet seeds root with seedV1 and builds a small fleet by hand:
//
//	db:  members h1, h2; h1 serves v1, h2 is offline
//	api: members h1, h2; both serve v2
//
// and h1's agent is up, h2's is not. The ephemeral nodes live as long as the
// returned store's session.
func seedFleet(t testing.TB, zkc *zktest.Cluster, root string) *roll.Store {
	t.Helper()
	store := openStore(t, zkc, root)
	if r := dcroll(t, seedArgs(t, zkc, root, writeFile(t, "seed.toml", seedV1))...); r.code != 0 {
		t.Fatalf("seed:\n%s", r)
	}
	joined := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, m := range []struct{ svc, host string }{{"db", "h1"}, {"db", "h2"}, {"api", "h1"}, {"api", "h2"}} {
		if err := store.EnsureMember(m.svc, m.host, roll.Member{Joined: joined}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ svc, host, version string }{{"db", "h1", "v1"}, {"api", "h1", "v2"}, {"api", "h2", "v2"}} {
		if err := store.SetCurrent(c.svc, c.host, roll.Current{Version: c.version, Since: joined}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.RegisterHost("h1", roll.Host{Agent: "1.2.3", Started: joined, Rack: "r1", Services: []string{"api", "db"}}); err != nil {
		t.Fatal(err)
	}
	return store
}

// tableRow finds the line of the status table whose first column is name
// and returns its columns split on blanks.
func tableRow(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

func TestIntegration_Status(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/status"
	seedFleet(t, zkc, root)

	t.Run("summary", func(t *testing.T) {
		r := dcroll(t, statusArgs(t, zkc, root)...)
		if r.code != 0 {
			t.Fatalf("status:\n%s", r)
		}
		if !strings.HasPrefix(r.stdout, "data center "+root+" at ") {
			t.Errorf("status does not start with the data center's root")
		}
		rows := []struct {
			name string
			want []string
		}{
			{"SERVICE", []string{"SERVICE", "ONLINE", "QUORUM", "PARALLEL", "DEPENDS", "ON", "VERSIONS", "OFFLINE"}},
			// name, online/members, quorum (policy), parallel, depends on, versions, offline
			{"db", []string{"db", "1/2", "2", "(2)", "1", "-", "v1:1", "1"}},
			{"api", []string{"api", "2/2", "1", "(50%)", "2", "db", "v2:2", "-"}},
			// Only the hosts that need attention: h2 is offline for db.
			{"HOST", []string{"HOST", "SERVICE", "AGENT", "NEEDS", "ATTENTION"}},
			{"h2", []string{"h2", "db", "down", "offline"}},
			{"h1", nil},
		}
		for _, row := range rows {
			if got := tableRow(r.stdout, row.name); !reflect.DeepEqual(got, row.want) {
				t.Errorf("row %s is %q, want %q", row.name, got, row.want)
			}
		}
		if strings.Index(r.stdout, "\napi ") > strings.Index(r.stdout, "\ndb ") {
			t.Errorf("services are not in name order")
		}
		if t.Failed() {
			t.Logf("status:\n%s", r)
		}
	})

	t.Run("hosts", func(t *testing.T) {
		r := dcroll(t, statusArgs(t, zkc, root, "--hosts")...)
		if r.code != 0 {
			t.Fatalf("status --hosts:\n%s", r)
		}
		rows := []struct {
			name string
			want []string
		}{
			{"db", []string{"db", "1/2", "2", "(2)", "1", "-", "v1:1", "h2"}},
			{"api", []string{"api", "2/2", "1", "(50%)", "2", "db", "v2:2", "-"}},
			{"HOST", []string{"HOST", "AGENT", "SERVICES"}},
			{"h1", []string{"h1", "up", "1.2.3", "api=v2", "db=v1"}},
			{"h2", []string{"h2", "down", "api=v2", "db=offline"}},
		}
		for _, row := range rows {
			if got := tableRow(r.stdout, row.name); !reflect.DeepEqual(got, row.want) {
				t.Errorf("row %s is %q, want %q", row.name, got, row.want)
			}
		}
		if t.Failed() {
			t.Logf("status --hosts:\n%s", r)
		}
	})

	t.Run("named hosts", func(t *testing.T) {
		r := dcroll(t, statusArgs(t, zkc, root, "h2")...)
		if r.code != 0 {
			t.Fatalf("status h2:\n%s", r)
		}
		if got, want := tableRow(r.stdout, "h2"), []string{"h2", "down", "api=v2", "db=offline"}; !reflect.DeepEqual(got, want) {
			t.Errorf("row h2 is %q, want %q\n%s", got, want, r)
		}
		if tableRow(r.stdout, "h1") != nil || tableRow(r.stdout, "db") != nil {
			t.Errorf("status h2 shows more than h2:\n%s", r)
		}
		r = dcroll(t, statusArgs(t, zkc, root, "h1", "--json")...)
		var doc struct {
			Root  string
			Hosts []roll.HostStatus
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Root != root || len(doc.Hosts) != 1 || doc.Hosts[0].Name != "h1" || !doc.Hosts[0].AgentUp {
			t.Errorf("status h1 --json: %+v (%v)\n%s", doc, err, r)
		}
		r = dcroll(t, statusArgs(t, zkc, root, "h9")...)
		if r.code != 1 || !strings.Contains(r.stderr, `unknown host "h9": no agent holds `+root+`/hosts/h9, and it is a member of no service`) {
			t.Errorf("status h9: want an unknown host:\n%s", r)
		}
		for _, args := range [][]string{{"--hosts", "h1"}, {"--summary"}, {"--summary", "--json", "--hosts"}, {"bad/name"}} {
			if r := dcroll(t, statusArgs(t, zkc, root, args...)...); r.code != 2 {
				t.Errorf("status %q: exit %d, want a usage error:\n%s", args, r.code, r)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		r := dcroll(t, statusArgs(t, zkc, root, "--json")...)
		if r.code != 0 {
			t.Fatalf("status --json:\n%s", r)
		}
		var st roll.FleetStatus
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("status --json is not a FleetStatus: %v\n%s", err, r)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			t.Errorf("status --json printed more than one document")
		}
		if st.Root != root {
			t.Errorf("root %q, want %q", st.Root, root)
		}
		if time.Since(st.Time) > time.Minute || st.Time.After(time.Now().Add(time.Minute)) {
			t.Errorf("time %v is not now", st.Time)
		}
		type svc struct {
			Name                     string
			Members, Online, Offline []string
			Versions                 map[string]int
			QuorumHosts              int
		}
		var got []svc
		for _, s := range st.Services {
			got = append(got, svc{s.Name, s.Members, s.Online, s.Offline, s.Versions, s.QuorumHosts})
		}
		want := []svc{
			{"api", []string{"h1", "h2"}, []string{"h1", "h2"}, []string{}, map[string]int{"v2": 2}, 1},
			{"db", []string{"h1", "h2"}, []string{"h1"}, []string{"h2"}, map[string]int{"v1": 1}, 2},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("services\n%+v\nwant\n%+v", got, want)
		}
		if len(st.Services) == 2 {
			if p := st.Services[0].Policy; p.Quorum.Percent != 50 || p.MaxParallel != 2 || !reflect.DeepEqual(p.DependsOn, []string{"db"}) {
				t.Errorf("api's policy %+v", p)
			}
		}
		if len(st.Hosts) != 2 {
			t.Fatalf("hosts %+v, want h1 and h2", st.Hosts)
		}
		h1, h2 := st.Hosts[0], st.Hosts[1]
		if h1.Name != "h1" || !h1.AgentUp || h1.Agent != "1.2.3" || h1.Rack != "r1" || len(h1.Services) != 2 {
			t.Errorf("h1 %+v", h1)
		}
		if h2.Name != "h2" || h2.AgentUp || h2.Agent != "" || len(h2.Services) != 2 {
			t.Errorf("h2 %+v", h2)
		}
		if len(h2.Services) == 2 {
			api, db := h2.Services[0], h2.Services[1]
			if api.Name != "api" || !api.Online || api.Version != "v2" || api.Since.IsZero() {
				t.Errorf("h2's api %+v", api)
			}
			if db.Name != "db" || db.Online || db.Version != "" || !db.Since.IsZero() {
				t.Errorf("h2's db %+v", db)
			}
		}
		// Empty lists are [] rather than null, for the JSON's consumers.
		if !strings.Contains(r.stdout, `"offline": []`) {
			t.Errorf("api's offline hosts are not an empty list:\n%s", r.stdout)
		}
	})

	t.Run("environment and flag layers", func(t *testing.T) {
		cfg := configFile(t, "[zookeeper]\nroot = \"/from-file\"\n")
		environ := []string{"DCROLL_HOST_NAME=test", "DCROLL_ZOOKEEPER_SERVERS=" + zkc.ConnString(), "DCROLL_ZOOKEEPER_ROOT=" + root}
		// The environment beats the file.
		r := dcrollEnv(t, environ, "status", "--config", cfg, "--json")
		var st roll.FleetStatus
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Root != root {
			t.Errorf("status with servers and root from the environment: want the status of %s:\n%s", root, r)
		}
		// A flag beats the environment.
		r = dcrollEnv(t, environ, "status", "--config", cfg, "--root", "/elsewhere")
		if r.code != 1 || !strings.Contains(r.stderr, "/elsewhere/services does not exist") {
			t.Errorf("status --root /elsewhere with %s in the environment: want /elsewhere not seeded:\n%s", root, r)
		}
	})

	t.Run("unseeded root", func(t *testing.T) {
		for _, extra := range [][]string{nil, {"--json"}} {
			r := dcroll(t, statusArgs(t, zkc, "/nowhere", extra...)...)
			if r.code != 1 {
				t.Errorf("status %q of an unseeded root: exit code %d, want 1", extra, r.code)
			}
			for _, w := range []string{"dcroll status: ", "/nowhere/services does not exist", "run `dcroll seed",
				"seeded roots: ", "--root " + root} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("status %q of an unseeded root does not say %q", extra, w)
				}
			}
			if r.stdout != "" {
				t.Errorf("status %q of an unseeded root printed a status", extra)
			}
			if t.Failed() {
				t.Logf("status %q:\n%s", extra, r)
			}
		}
	})

	t.Run("watch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		args := statusArgs(t, zkc, root, "--watch", "--json", "--hosts", "--interval", "50ms")
		go func() { done <- modes.Main(ctx, args, &stdout, &stderr, testEnviron) }()
		// A change redraws: h2 comes online for db.
		store := openStore(t, zkc, root)
		testutil.Eventually(t, 15*time.Second, func() error {
			if !strings.Contains(stdout.String(), `"root"`) {
				return errors.New("no document yet")
			}
			return nil
		})
		if err := store.SetCurrent("db", "h2", roll.Current{Version: "v1", Since: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		// docs decodes the complete documents printed so far.
		docs := func(out string) ([]roll.FleetStatus, error) {
			var all []roll.FleetStatus
			dec := json.NewDecoder(strings.NewReader(out))
			for {
				var st roll.FleetStatus
				err := dec.Decode(&st)
				if errors.Is(err, io.EOF) {
					return all, nil
				}
				if err != nil {
					return all, err
				}
				all = append(all, st)
			}
		}
		testutil.Eventually(t, 15*time.Second, func() error {
			select {
			case code := <-done:
				done <- code
				return nil // reported below
			default:
			}
			all, _ := docs(stdout.String())
			if len(all) < 2 {
				return fmt.Errorf("%d JSON documents so far; stderr: %q", len(all), stderr.String())
			}
			return nil
		})
		cancel()
		var code int
		select {
		case code = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("status --watch did not return within 10s of the cancel")
		}
		if code != 0 {
			t.Errorf("status --watch returned %d after the cancel, want 0; stderr:\n%s", code, stderr.String())
		}
		all, err := docs(stdout.String())
		if err != nil {
			t.Errorf("status --watch printed a partial or bad document: %v", err)
		}
		if len(all) < 2 {
			t.Fatalf("status --watch printed %d documents, want at least 2:\n%s", len(all), stdout.String())
		}
		for i, st := range all {
			if st.Root != root || len(st.Services) != 2 || len(st.Hosts) != 2 {
				t.Errorf("document %d: %+v", i, st)
			}
			if i > 0 && !st.Time.After(all[i-1].Time) {
				t.Errorf("document %d is not newer than the one before: %v, %v", i, st.Time, all[i-1].Time)
			}
		}
		if strings.Contains(stdout.String(), "\x1b[") {
			t.Errorf("status --watch cleared the screen of a writer that is not a terminal")
		}
	})

	t.Run("watch table", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		args := statusArgs(t, zkc, root, "--watch", "--interval", "50ms")
		go func() { done <- modes.Main(ctx, args, &stdout, &stderr, testEnviron) }()
		store := openStore(t, zkc, root)
		tables := func() int { return strings.Count(stdout.String(), "data center "+root) }
		testutil.Eventually(t, 15*time.Second, func() error {
			if tables() < 1 {
				return errors.New("no table yet")
			}
			return nil
		})
		// Nothing changes: nothing is drawn again, however short the
		// interval. (The old status redrew every interval.)
		idle := time.Now()
		for time.Since(idle) < time.Second {
			if n := tables(); n != 1 {
				t.Fatalf("%d tables drawn while nothing changed", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// A change redraws: the deploy is paused.
		if err := store.SetDeployPaused(true); err != nil {
			t.Fatal(err)
		}
		defer store.SetDeployPaused(false)
		testutil.Eventually(t, 15*time.Second, func() error {
			if n := strings.Count(stdout.String(), "data center "+root); n < 2 {
				return fmt.Errorf("%d tables so far; stderr: %q", n, stderr.String())
			}
			return nil
		})
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("status --watch returned %d after the cancel, want 0; stderr:\n%s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("status --watch did not return within 10s of the cancel")
		}
		if strings.Contains(stdout.String(), "\x1b[") {
			t.Errorf("status --watch cleared the screen of a writer that is not a terminal")
		}
	})
}

// TestIntegration_StatusQuorumZero checks that a service seeded with
// quorum = 0, which may be fully down during its turn, says so in the
// status table instead of showing a quorum of no hosts like any other.
func TestIntegration_StatusQuorumZero(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/status-quorum-zero"
	store := openStore(t, zkc, root)
	seed := "[services.scheduler]\nquorum = 0\n\n[services.web]\nquorum = 1\n"
	if r := dcroll(t, seedArgs(t, zkc, root, writeFile(t, "seed.toml", seed))...); r.code != 0 {
		t.Fatalf("seed:\n%s", r)
	}
	since := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, svc := range []string{"scheduler", "web"} {
		if err := store.EnsureMember(svc, "h1", roll.Member{Joined: since}); err != nil {
			t.Fatal(err)
		}
		if err := store.SetCurrent(svc, "h1", roll.Current{Version: "v1", Since: since}); err != nil {
			t.Fatal(err)
		}
	}

	r := dcroll(t, statusArgs(t, zkc, root)...)
	if r.code != 0 {
		t.Fatalf("status:\n%s", r)
	}
	var line string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "scheduler ") {
			line = l
		}
	}
	if !strings.Contains(line, "  0 (may be fully down)  ") {
		t.Errorf("scheduler's row %q does not show its quorum as \"0 (may be fully down)\":\n%s", line, r.stdout)
	}
	// name, online/members, quorum, parallel, depends on, versions, offline
	want := []string{"scheduler", "1/1", "0", "(may", "be", "fully", "down)", "1", "-", "v1:1", "-"}
	if got := tableRow(r.stdout, "scheduler"); !reflect.DeepEqual(got, want) {
		t.Errorf("scheduler's row is %q, want %q", got, want)
	}
	// A quorum that comes to no host is not the explicit 0.
	if got, want := tableRow(r.stdout, "web"), []string{"web", "1/1", "1", "(1)", "1", "-", "v1:1", "-"}; !reflect.DeepEqual(got, want) {
		t.Errorf("web's row is %q, want %q", got, want)
	}
	if strings.Count(r.stdout, "may be fully down") != 1 {
		t.Errorf("only scheduler may be fully down:\n%s", r.stdout)
	}

	r = dcroll(t, statusArgs(t, zkc, root, "--json")...)
	var st roll.FleetStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Services) != 2 {
		t.Fatalf("status --json: %v\n%s", err, r)
	}
	if s := st.Services[0]; s.Name != "scheduler" || !s.Policy.Quorum.Zero() || s.QuorumHosts != 0 {
		t.Errorf("scheduler in status --json: quorum %v (explicit 0: %v), %d hosts; want the explicit 0", s.Policy.Quorum, s.Policy.Quorum.Zero(), s.QuorumHosts)
	}
}

// TestStatusUnreachable checks that status against a port where nothing
// listens gives up within the session timeout with an error about
// ZooKeeper, instead of hanging.
func TestStatusUnreachable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := configFile(t, "[zookeeper]\nsession_timeout = \"1s\"\n")
	start := time.Now()
	// --zk before the mode must survive the mode's own parse.
	r := dcroll(t, "--zk", addr, "status", "--config", cfg, "--root", "/dc")
	elapsed := time.Since(start)
	if r.code != 1 {
		t.Errorf("exit code %d, want 1", r.code)
	}
	if elapsed > 3*time.Second {
		t.Errorf("status took %v to give up, with a session timeout of 1s", elapsed)
	}
	for _, w := range []string{"dcroll status: ", "no ZooKeeper session after 1s", addr} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not say %q", w)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout is not empty")
	}
	if n := strings.Count(r.stderr, "\n"); n != 1 {
		t.Errorf("stderr has %d lines, want the one error (ZooKeeper's client logs stay quiet at level info)", n)
	}
	if t.Failed() {
		t.Logf("status against %s (%v):\n%s", addr, elapsed, r)
	}
}

func TestIntegration_StatusWatchRidesOutAnOutage(t *testing.T) {
	zkc := zktest.Standalone(t)
	root := "/watchout"
	seedFile := filepath.Join(t.TempDir(), "seed.toml")
	if err := os.WriteFile(seedFile, []byte("[services.db]\nquorum = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	if code := modes.Main(context.Background(), []string{"--zk", zkc.ConnString(), "--root", root, "seed", seedFile}, &out, &errOut, []string{"DCROLL_HOST_NAME=test"}); code != 0 {
		t.Fatalf("seed: %d %s", code, errOut.String())
	}
	w := &syncBuffer{}
	ew := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- modes.Main(ctx, []string{"--zk", zkc.ConnString(), "--root", root, "status", "--watch", "--json", "--hosts", "--interval", "50ms"}, w, ew, []string{"DCROLL_HOST_NAME=test"})
	}()
	count := func() int { return strings.Count(w.String(), `"root":`) }
	testutil.Eventually(t, 20*time.Second, func() error {
		if count() < 1 {
			return errors.New("no status yet")
		}
		return nil
	})
	zkc.Stop(0)
	testutil.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(ew.String(), "retrying") {
			return errors.New("no retry message while ZooKeeper is down")
		}
		return nil
	})
	before := count()
	zkc.Start(0)
	testutil.Eventually(t, 60*time.Second, func() error {
		if count() <= before {
			return errors.New("no status since ZooKeeper came back")
		}
		return nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d: %s", code, ew.String())
	}
}

// A data center whose advancer keeps the fleet views: status names only
// the hosts that need attention (an offline member, a host on an odd
// version), --hosts every host, and stage counts its progress from the
// view and finishes when every online member holds the release.
func TestIntegration_StatusSummaryOfAFleet(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/fleet"
	store := seedRoot(t, zkc, root, "[services.web]\nquorum = \"50%\"\n")
	now := time.Now().UTC()
	var hosts []string
	for i := range 30 {
		hosts = append(hosts, fmt.Sprintf("w%03d", i))
	}
	setMembers(t, store, "web", append([]string{"w-gone", "w-odd"}, hosts...)...)
	setCurrent(t, store, "web", "v1", hosts...)
	setCurrent(t, store, "web", "v0", "w-odd")
	for _, h := range append([]string{"w-odd"}, hosts...) {
		if err := store.RegisterHost(h, roll.Host{Agent: "1.0", Started: now, Services: []string{"web"}}); err != nil {
			t.Fatal(err)
		}
	}
	// The advancer, as an agent runs it, keeps the fleet view.
	advancer := openStore(t, zkc, root)
	ctx, cancel := context.WithCancel(context.Background())
	advanced := make(chan struct{})
	go func() { defer close(advanced); advancer.RunAdvancer(ctx, "w000") }()
	t.Cleanup(func() { cancel(); <-advanced })
	testutil.Eventually(t, 20*time.Second, func() error {
		v, err := store.FleetView("web")
		if err != nil || v.Online != 31 || len(v.Gone) != 1 || !reflect.DeepEqual(v.Hosts, map[string][]string{"v0": {"w-odd"}}) {
			return fmt.Errorf("fleet view %+v (%v)", v, err)
		}
		return nil
	})

	r := dcroll(t, statusArgs(t, zkc, root)...)
	if r.code != 0 {
		t.Fatalf("status:\n%s", r)
	}
	for _, row := range []struct {
		name string
		want string
	}{
		{"web", "web 31/32 16 (50%) 1 - v1:30 v0:1 1"},
		{"w-gone", "w-gone web down offline since "},
		{"w-odd", "w-odd web up 1.0 on v0, not the fleet's v1"},
	} {
		if got := strings.Join(tableRow(r.stdout, row.name), " "); !strings.HasPrefix(got, row.want) {
			t.Errorf("row %s is %q, want %q", row.name, got, row.want)
		}
	}
	if n := strings.Count(r.stdout, "\nw0"); n != 0 {
		t.Errorf("status lists %d hosts that need no attention", n)
	}
	if strings.Contains(r.stdout, "counted from every host") {
		t.Errorf("status counted every host, with a fleet view")
	}
	if t.Failed() {
		t.Logf("status:\n%s", r)
	}

	r = dcroll(t, statusArgs(t, zkc, root, "--json", "--summary")...)
	var sum roll.FleetSummary
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sum); err != nil || len(sum.Services) != 1 || sum.Services[0].Online != 31 || len(sum.Services[0].Attention) != 2 {
		t.Errorf("status --json --summary: %+v (%v)\n%s", sum, err, r)
	}

	r = dcroll(t, statusArgs(t, zkc, root, "--hosts")...)
	for _, h := range append([]string{"w-gone", "w-odd"}, hosts...) {
		if tableRow(r.stdout, h) == nil {
			t.Errorf("status --hosts lacks %s:\n%s", h, r.stdout)
		}
	}

	// stage: the online members are those the view does not count gone.
	dir, _ := releaseDir(t, "v2")
	out, wait := runStage(t, context.Background(), modeArgs(t, zkc, root, "stage", "--listen", "127.0.0.1:0", "--timeout", "1m", "web", "v2", dir))
	testutil.Eventually(t, 15*time.Second, func() error {
		if !strings.Contains(out.String(), "web v2: 0/31 hosts ready") {
			return fmt.Errorf("stdout: %q", out.String())
		}
		return nil
	})
	for _, h := range append([]string{"w-odd"}, hosts...) {
		if _, err := store.JoinReady("web", h, "v2"); err != nil {
			t.Fatal(err)
		}
	}
	wantRun(t, wait(), 0, "web v2: 31/31 hosts ready", "every online host (31) has the release; done serving")
}
