package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// demoFleet is a data center of the demo's catalog written straight into
// the tree, as n agents would have written it, for tests of the demo's
// reads without agents.
type demoFleet struct {
	t     *testing.T
	zkc   *zktest.Cluster
	root  string
	w     *roll.Store // the writer, whose session holds the hosts' ephemeral nodes
	hosts []string    // host1..hostn; the last one is offline
}

func newDemoFleet(t *testing.T, zkc *zktest.Cluster, n int) *demoFleet {
	f := &demoFleet{t: t, zkc: zkc, root: fmt.Sprintf("/demo%d", n)}
	f.w = rolltest.Open(t, zkc, f.root)
	rolltest.Seed(t, f.w, catalog)
	for i := range n {
		f.hosts = append(f.hosts, fmt.Sprintf("host%d", i+1))
	}
	now := time.Now().UTC()
	for i, h := range f.hosts {
		for _, svc := range services {
			f.must(f.w.EnsureMember(svc, h, roll.Member{Joined: now}))
		}
		if i == n-1 {
			continue // a member of every service, its agent down
		}
		f.must(f.w.RegisterHost(h, roll.Host{Agent: "1.0", Started: now, Services: services}))
		for _, svc := range services {
			f.must(f.w.SetCurrent(svc, h, roll.Current{Version: fromVersion, Since: now}))
		}
	}
	return f
}

func (f *demoFleet) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// online are the hosts in /current.
func (f *demoFleet) online() []string { return f.hosts[:len(f.hosts)-1] }

// rollDB stages version 2 of every service and orders them, as the demo
// does, and writes db's rollout under way: host1 and host2 run db 2, host3
// is in its turn, and every other online host is ready for every service.
func (f *demoFleet) rollDB() {
	now := time.Now().UTC()
	for _, svc := range services {
		m := roll.Manifest{Version: toVersion, Size: 1, SHA256: strings.Repeat("a", 64), URLs: []string{"http://origin.example/" + svc}, Staged: now}
		f.must(f.w.Stage(svc, m, false))
	}
	f.must(f.w.AppendSteps([][]string{{"db"}, {"api"}, {"web"}}))
	for _, h := range f.hosts[:2] {
		f.must(f.w.SetCurrent("db", h, roll.Current{Version: toVersion, Since: now}))
	}
	data, err := json.Marshal(roll.Turn{From: fromVersion, To: toVersion, Started: now})
	f.must(err)
	_, err = rolltest.RawOf(f.t, f.w).Create(f.w.Tree.Turn("db", "host3"), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	f.must(err)
	for _, svc := range services {
		for _, h := range f.online() {
			if svc == "db" && (h == "host1" || h == "host2" || h == "host3") {
				continue
			}
			_, err := f.w.JoinReady(svc, h, toVersion)
			f.must(err)
		}
	}
}

// views runs the advancer, which writes the fleet views, until they count
// db's versions as want, and stops it.
func (f *demoFleet) views(want map[string]int) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.RunAdvancer(ctx, "advancer") }()
	probe := rolltest.Open(f.t, f.zkc, f.root)
	testutil.Eventually(f.t, 30*time.Second, func() error {
		for _, svc := range services {
			v, err := probe.FleetView(svc)
			if err != nil {
				return err
			}
			if svc == "db" && !maps.Equal(v.Versions, want) || v.Online != len(f.online()) || len(v.Gone) != 1 {
				return fmt.Errorf("the fleet view of %s is %+v", svc, v)
			}
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		f.t.Fatal(err)
	}
}

// refreshCost reads the fleet as the demo's screen does, through a fresh
// summary watch and then again through the same one, which holds its
// watches, and returns each read's requests and the last reading.
func refreshCost(t *testing.T, s *roll.Store) ([2]int64, *snapshot, *roll.SummaryWatch) {
	t.Helper()
	w := s.WatchSummary()
	var cost [2]int64
	var st *snapshot
	for i := range cost {
		before := s.Ops()
		var err error
		if st, err = readFleet(s, w); err != nil {
			t.Fatal(err)
		}
		cost[i] = s.Ops() - before
	}
	return cost, st, w
}

// The demo's refresh costs the same number of requests at 6 hosts as at
// 24, before the rollout and during it: it reads the summary, the fleet
// views and the lists of /current, never every host. The full status,
// which the demo read before, grows with the fleet, so the count would
// show a refresh that did. The readings must be right as well: which
// version each host serves, and the line the demo prints.
func TestIntegration_DemoRefreshCostDoesNotGrowWithTheFleet(t *testing.T) {
	zkc := zktest.Standalone(t)
	sizes := []int{6, 24}
	booted, rolling, full := map[int][2]int64{}, map[int][2]int64{}, map[int]int64{}
	for _, n := range sizes {
		f := newDemoFleet(t, zkc, n)
		f.views(map[string]int{fromVersion: n - 1})
		probe := rolltest.Open(t, zkc, f.root)
		var st *snapshot
		booted[n], st, _ = refreshCost(t, probe)
		d := &run{}
		want := fmt.Sprintf("db: %[1]d on 1, 1 offline | api: %[1]d on 1, 1 offline | web: %[1]d on 1, 1 offline | queue: empty", n-1)
		if got := d.line(st); got != want {
			t.Errorf("%d hosts, before the rollout: line\n%s\nwant\n%s", n, got, want)
		}

		f.rollDB()
		f.views(map[string]int{fromVersion: n - 3, toVersion: 2})
		var w *roll.SummaryWatch
		rolling[n], st, w = refreshCost(t, probe)
		want = fmt.Sprintf("db ->2: %d on 1 2 on 2, 1 offline, upgrading host3, %d ready | api ->2: %d on 1, 1 offline, %[3]d ready | "+
			"web ->2: %[3]d on 1, 1 offline, %[3]d ready | queue: db -> api -> web", n-3, n-4, n-1)
		if got := d.line(st); got != want {
			t.Errorf("%d hosts, db rolling: line\n%s\nwant\n%s", n, got, want)
		}
		for i, h := range f.hosts {
			want := map[string]string{"db": fromVersion, "api": fromVersion, "web": fromVersion}
			switch {
			case i < 2:
				want["db"] = toVersion
			case i == n-1:
				want = nil // offline
			}
			if !maps.Equal(st.on[h], want) {
				t.Errorf("%d hosts: %s serves %v, want %v", n, h, st.on[h], want)
			}
		}
		// The live view: a line per service, then per host (their agents
		// are not the demo's, so it shows them KILLED).
		d.root = f.root
		for _, h := range f.hosts {
			d.hosts = append(d.hosts, &host{name: h})
		}
		rows := map[string]string{}
		for _, l := range strings.Split(d.screen(st), "\n") {
			if fs := strings.Fields(l); len(fs) > 0 {
				rows[fs[0]] = strings.Join(fs, " ")
			}
		}
		last := f.hosts[n-1]
		for _, want := range []string{
			// WAITING FOR is the summary's verdict: not the demo's.
			fmt.Sprintf("db 2 %d 2 1 %d of %d 2 host3 %d", n-3, st.service("db").QuorumHosts, n, n-4),
			"host1 KILLED 2 1 1", "host3 KILLED switching 1 1", "host4 KILLED 1 1 1", last + " KILLED - - -",
		} {
			if got := rows[strings.Fields(want)[0]]; got != want && !strings.HasPrefix(got, want+" ") {
				t.Errorf("%d hosts: the screen shows %q, want %q", n, got, want)
			}
		}

		if ss := st.service("db"); ss.Next == "" || ss.Members != n || ss.QuorumHosts != ss.Policy.Quorum.Need(n) {
			t.Errorf("%d hosts: db's summary %+v", n, ss)
		}

		// The next read waits for a change of what this one read.
		c := &changes{w: w}
		c.start(context.Background(), time.Time{})
		f.must(f.w.SetDeployPaused(true))
		testutil.Eventually(t, 20*time.Second, func() error {
			if !c.fired() {
				return errors.New("pausing the deploy did not end the wait for a change")
			}
			return nil
		})
		c.stop()

		before := probe.Ops()
		if _, err := probe.Status(); err != nil {
			t.Fatal(err)
		}
		full[n] = probe.Ops() - before
	}
	t.Logf("requests per refresh (first read, read again): before the rollout %v, db rolling %v; the full status %v", booted, rolling, full)
	small, big := sizes[0], sizes[1]
	if booted[big] != booted[small] || rolling[big] != rolling[small] {
		t.Errorf("a refresh at %d hosts made %v requests before the rollout and %v during it, at %d hosts %v and %v: it grows with the fleet",
			big, booted[big], rolling[big], small, booted[small], rolling[small])
	}
	if grow := int64(len(services) * (big - small)); full[big] < full[small]+grow {
		t.Errorf("the full status made %d requests at %d hosts, %d at %d: the count does not see per-host reads", full[big], big, full[small], small)
	}
}

// The fleet view names the hosts of every version but the common one up
// to roll.FleetNamed of them: the demo shows every host's version from it.
func TestMaxHostsFitsTheFleetView(t *testing.T) {
	if MaxHosts > roll.FleetNamed {
		t.Fatalf("MaxHosts %d is more than the fleet view names of a version (%d)", MaxHosts, roll.FleetNamed)
	}
}

// A restarted agent replaces its earlier session's /current nodes faster
// than the advancer looks, so the fleet view may go on giving it the
// versions it ran before: the demo reads the restarted host's own nodes,
// and counts them, instead.
func TestIntegration_DemoReadsTheRestartedHostItself(t *testing.T) {
	zkc := zktest.Standalone(t)
	f := newDemoFleet(t, zkc, 6)
	f.views(map[string]int{fromVersion: 5})
	probe := rolltest.Open(t, zkc, f.root)
	restart := time.Now().UTC()
	for _, svc := range services {
		f.must(f.w.SetCurrent(svc, "host2", roll.Current{Version: toVersion, Since: restart.Add(time.Millisecond)}))
	}
	d := &run{store: probe, sw: probe.WatchSummary(), start: time.Now(), restarted: true, restartedAt: restart, victim: &host{name: "host2"}}
	for _, h := range f.hosts {
		d.hosts = append(d.hosts, &host{name: h})
	}
	view, err := readFleet(probe, probe.WatchSummary())
	if err != nil {
		t.Fatal(err)
	}
	if got := view.on["host2"]["db"]; got != fromVersion {
		t.Fatalf("the fleet view gives host2 db %q: it was to lag, on %s", got, fromVersion)
	}
	st, err := d.read()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"db": toVersion, "api": toVersion, "web": toVersion}
	if !maps.Equal(st.on["host2"], want) || !maps.Equal(st.restarted, want) {
		t.Errorf("host2 serves %v (restarted: %v), want %v", st.on["host2"], st.restarted, want)
	}
	if got, want := d.line(st), "db: 4 on 1 1 on 2, 1 offline | api: 4 on 1 1 on 2, 1 offline | web: 4 on 1 1 on 2, 1 offline | queue: empty"; got != want {
		t.Errorf("line\n%s\nwant\n%s", got, want)
	}
	if d.allOn(st, fromVersion) || d.allOn(st, toVersion) {
		t.Error("allOn holds for a fleet of two versions and an offline host")
	}
}

// The rollout is over by the deploy queue, the turns, the lists of
// /current and the restarted host's own nodes, whatever the fleet view
// still counts.
func TestRolledOut(t *testing.T) {
	hosts := []string{"host1", "host2", "host3"}
	snap := func(change func(*snapshot)) *snapshot {
		st := &snapshot{sum: &roll.FleetSummary{}, on: map[string]map[string]string{}, restarted: map[string]string{}}
		for _, svc := range services {
			st.sum.Services = append(st.sum.Services, roll.ServiceSummary{Name: svc, Members: len(hosts)})
			st.restarted[svc] = toVersion
		}
		for _, h := range hosts {
			st.on[h] = map[string]string{"db": toVersion, "api": toVersion, "web": toVersion}
		}
		st.on["host1"]["db"] = fromVersion // a host the fleet view lags on
		st.on["host2"] = st.restarted
		change(st)
		st.recount()
		return st
	}
	d := &run{restarted: true}
	for _, h := range hosts {
		d.hosts = append(d.hosts, &host{name: h})
	}
	for _, c := range []struct {
		name   string
		change func(*snapshot)
		want   bool
	}{
		{"over", func(*snapshot) {}, true},
		{"a step queued", func(st *snapshot) { st.sum.Deploy.Steps = []roll.StepStatus{{Name: "s", Services: []string{"web"}}} }, false},
		{"a host in its turn", func(st *snapshot) { st.sum.Services[2].Upgrading = []string{"host3"} }, false},
		{"a host offline", func(st *snapshot) { delete(st.on["host3"], "api") }, false},
		{"the restarted host behind", func(st *snapshot) { st.restarted["api"] = fromVersion }, false},
		{"the restarted host not back", func(st *snapshot) { delete(st.restarted, "web") }, false},
	} {
		if got := d.rolledOut(snap(c.change)); got != c.want {
			t.Errorf("%s: rolledOut %v, want %v", c.name, got, c.want)
		}
	}
	d.restarted = false
	if d.rolledOut(snap(func(*snapshot) {})) {
		t.Error("rolledOut before the killed host was restarted")
	}
}
