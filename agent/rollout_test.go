package agent_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/memstat"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// fleet is a small data center of real agents sharing one ZooKeeper, with
// an HTTP origin for the releases the test stages.
type fleet struct {
	t        *testing.T
	zkc      *zktest.Cluster
	admin    *roll.Store
	hosts    []*host
	services []string
	artDir   string
	origin   *httptest.Server
	seeder   *fetch.Swarm // the origin's BitTorrent seeder
	// payload is the size of a random file that stage adds to a release,
	// to make its transfer take a while.
	payload int
	// amend, if set, changes each manifest stage writes: signs it, say.
	amend func(*roll.Manifest)
	// httpOnly makes stage write manifests without BitTorrent metainfo,
	// as `dcroll stage --detach` does.
	httpOnly bool
	// webSeed makes stage write manifests as `dcroll stage --detach`
	// does: metainfo, no seeder, the origin as web seed.
	webSeed bool
}

func newFleet(t *testing.T, catalog string, services []string, n int) *fleet {
	t.Helper()
	zkc := zktest.Standalone(t)
	return newFleetOn(t, zkc, rolltest.Open(t, zkc, "/dc"), catalog, services, n)
}

// newFleetOn is newFleet on a running ZooKeeper, seeded and staged by admin.
func newFleetOn(t *testing.T, zkc *zktest.Cluster, admin *roll.Store, catalog string, services []string, n int) *fleet {
	t.Helper()
	f := &fleet{t: t, zkc: zkc, admin: admin, services: services, artDir: t.TempDir()}
	rolltest.Seed(t, f.admin, catalog)
	f.origin = httptest.NewServer(fetch.NewServer(f.artDir))
	t.Cleanup(f.origin.Close)
	seeder, err := fetch.NewSwarm(fetch.SwarmConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	f.seeder = seeder
	t.Cleanup(func() { _ = seeder.Close() })
	for i := range n {
		f.hosts = append(f.hosts, newFleetHost(t, fmt.Sprintf("h%d", i), zkc.ConnString(), "/dc", services, "v1"))
	}
	return f
}

// startAll starts every agent and waits until every service of every host
// is online on v1.
func (f *fleet) startAll() {
	f.t.Helper()
	for _, h := range f.hosts {
		h.start()
	}
	for _, svc := range f.services {
		f.waitVersion(svc, "v1", f.hosts)
	}
}

// waitVersion waits until each of hosts is online for svc on version.
func (f *fleet) waitVersion(svc, version string, hosts []*host) {
	f.t.Helper()
	testutil.Eventually(f.t, 2*time.Minute, func() error {
		cur, err := f.admin.CurrentOf(svc)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if c, ok := cur[h.name]; !ok || c.Version != version {
				return fmt.Errorf("%s of %s: %+v (online: %v), want %s", svc, h.name, c, ok, version)
			}
		}
		return nil
	})
}

// stage builds release version of svc (failing its health check if
// unhealthy), puts it on the origin and writes its manifest.
func (f *fleet) stage(svc, version string, unhealthy bool) {
	f.t.Helper()
	src := f.t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(version+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if unhealthy {
		if err := os.WriteFile(filepath.Join(src, "unhealthy"), nil, 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	if f.payload > 0 {
		data := make([]byte, f.payload)
		_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
		if err := os.WriteFile(filepath.Join(src, "payload"), data, 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	path := fetch.ArtifactPath(f.artDir, svc, version)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := fetch.PackFile(src, path); err != nil {
		f.t.Fatal(err)
	}
	size, sum, err := fetch.Describe(path)
	if err != nil {
		f.t.Fatal(err)
	}
	m := roll.Manifest{
		Version: version, Size: size, SHA256: sum, Staged: time.Now().UTC(),
		URLs: []string{f.origin.URL + "/artifacts/" + svc + "/" + version},
	}
	if !f.httpOnly {
		mi, infohash, err := fetch.BuildMetainfo(path, svc+"-"+version, 16<<10)
		if err != nil {
			f.t.Fatal(err)
		}
		m.Infohash, m.Metainfo = infohash, mi
		if f.webSeed {
			m.WebSeeds = m.URLs
		} else {
			if err := f.seeder.Seed(mi, path); err != nil {
				f.t.Fatal(err)
			}
			m.Seeders = []string{f.seeder.Addr()}
		}
	}
	if f.amend != nil {
		f.amend(&m)
	}
	if err := f.admin.Stage(svc, m, true); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) order(steps ...[]string) {
	f.t.Helper()
	if err := f.admin.AppendSteps(steps); err != nil {
		f.t.Fatal(err)
	}
}

// waitHalted waits until svc halts, and returns why.
func (f *fleet) waitHalted(svc string) *roll.Failure {
	f.t.Helper()
	var halted *roll.Failure
	testutil.Eventually(f.t, 2*time.Minute, func() error {
		ctl, err := f.admin.Control(svc)
		if err != nil {
			return err
		}
		if ctl.Halted == nil {
			return errors.New("not halted yet")
		}
		halted = ctl.Halted
		return nil
	})
	return halted
}

// waitQueueEmpty waits until every deploy step is done.
func (f *fleet) waitQueueEmpty() {
	f.t.Helper()
	testutil.Eventually(f.t, 3*time.Minute, func() error {
		steps, err := f.admin.Steps()
		if err != nil {
			return err
		}
		if len(steps) > 0 {
			return fmt.Errorf("steps left: %+v", steps)
		}
		return nil
	})
}

// policy is what the monitor holds each service to.
type policy struct {
	need        int      // hosts that must stay online
	maxParallel int      // hosts in turn at once
	dependsOn   []string // services whose hosts must all be on target first
	target      string   // the version being rolled out
}

// monitor samples ZooKeeper every few milliseconds throughout a rollout
// and records every breach of the invariants that dcroll is responsible
// for: quorum, max_parallel and dependency order.
type monitor struct {
	mu         sync.Mutex
	violations []string
	samples    int
	maxTurns   map[string]int
	stop       chan struct{}
	done       chan struct{}
}

func startMonitor(t *testing.T, zkc *zktest.Cluster, policies map[string]*policy) *monitor {
	t.Helper()
	s := rolltest.Open(t, zkc, "/dc")
	m := &monitor{maxTurns: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	violate := func(format string, args ...any) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.violations) < 20 {
			m.violations = append(m.violations, fmt.Sprintf(format, args...))
		}
	}
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			default:
			}
			for svc, p := range policies {
				m.mu.Lock()
				pol := *p
				m.mu.Unlock()
				online, err := s.OnlineHosts(svc)
				if err != nil {
					violate("monitor: %v", err)
					return
				}
				turns, err := s.Turns(svc)
				if err != nil {
					violate("monitor: %v", err)
					return
				}
				if len(online) < pol.need {
					violate("%s: %d online %v, quorum %d", svc, len(online), online, pol.need)
				}
				if len(turns) > pol.maxParallel {
					violate("%s: %d in turn %v, max_parallel %d", svc, len(turns), turns, pol.maxParallel)
				}
				m.mu.Lock()
				m.maxTurns[svc] = max(m.maxTurns[svc], len(turns))
				m.mu.Unlock()
				if len(turns) == 0 {
					continue
				}
				for _, dep := range pol.dependsOn {
					cur, err := s.CurrentOf(dep)
					if err != nil {
						violate("monitor: %v", err)
						return
					}
					depTurns, _ := s.Turns(dep)
					for h, c := range cur {
						if c.Version != policies[dep].target || len(depTurns) > 0 {
							violate("%s: %v in turn while %s of %s runs %s (turns %v)", svc, turns, dep, h, c.Version, depTurns)
						}
					}
				}
			}
			m.mu.Lock()
			m.samples++
			m.mu.Unlock()
			time.Sleep(3 * time.Millisecond) // the sampling period, not a wait for a condition
		}
	}()
	t.Cleanup(func() { m.finish() })
	return m
}

// setTarget changes the version a service is held to (a new staging).
func (m *monitor) setTarget(p *policy, version string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.target = version
}

func (m *monitor) finish() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// check stops the monitor and fails the test on any violation.
func (m *monitor) check(t *testing.T) {
	t.Helper()
	m.finish()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.violations) > 0 {
		t.Fatalf("%d invariant violations in %d samples:\n%s", len(m.violations), m.samples, strings.Join(m.violations, "\n"))
	}
	t.Logf("monitor: %d samples, no violation; most hosts in turn at once: %v", m.samples, m.maxTurns)
}

const chainCatalog = `
[services.a]
quorum = 6
max_parallel = 2
[services.a.health]
min_healthy = "300ms"
deadline = "30s"

[services.b]
depends_on = ["a"]
quorum = "50%"
max_parallel = 3
[services.b.health]
min_healthy = "300ms"
deadline = "30s"

[services.c]
depends_on = ["b"]
quorum = 7
max_parallel = 1
[services.c.health]
min_healthy = "300ms"
deadline = "30s"
`

func TestIntegration_RolloutInDependencyOrder(t *testing.T) {
	services := []string{"a", "b", "c"}
	f := newFleet(t, chainCatalog, services, 8)
	f.startAll()
	policies := map[string]*policy{
		"a": {need: 6, maxParallel: 2, target: "v2"},
		"b": {need: 4, maxParallel: 3, dependsOn: []string{"a"}, target: "v2"},
		"c": {need: 7, maxParallel: 1, dependsOn: []string{"b"}, target: "v2"},
	}
	mon := startMonitor(t, f.zkc, policies)
	for _, svc := range services {
		f.stage(svc, "v2", false)
	}
	c, err := f.admin.Services()
	if err != nil {
		t.Fatal(err)
	}
	steps, err := roll.Catalog(c).AutoSteps(services)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(steps) != "[[a] [b] [c]]" {
		t.Fatalf("auto steps %v", steps)
	}
	f.order(steps...)
	f.waitQueueEmpty()
	for _, svc := range services {
		f.waitVersion(svc, "v2", f.hosts)
	}
	mon.check(t)
	// The services themselves answer with the new version.
	for _, h := range f.hosts {
		for _, svc := range services {
			if v, err := h.servingOf(svc); err != nil || v != "v2" {
				t.Fatalf("%s of %s answers %q %v", svc, h.name, v, err)
			}
		}
	}
}

const oneServiceCatalog = `
[services.web]
quorum = %d
max_parallel = %d
[services.web.health]
min_healthy = "%s"
deadline = "%s"
`

func TestIntegration_RolloutWithHostsDownAndTheirReturn(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 4, 2, "300ms", "30s"), []string{"web"}, 8)
	f.startAll()
	down := f.hosts[:2]
	for _, h := range down {
		h.signal(syscall.SIGKILL)
		h.wait()
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		cur, err := f.admin.CurrentOf("web")
		if err != nil || len(cur) != 6 {
			return fmt.Errorf("want 6 online: %v %v", cur, err)
		}
		return nil
	})
	mon := startMonitor(t, f.zkc, map[string]*policy{"web": {need: 4, maxParallel: 2, target: "v2"}})
	f.stage("web", "v2", false)
	f.order([]string{"web"})
	f.waitQueueEmpty()
	f.waitVersion("web", "v2", f.hosts[2:])
	mon.check(t)

	// The origin is gone: the returning hosts fetch from their peers.
	f.origin.Close()
	if err := f.seeder.Close(); err != nil {
		t.Fatal(err)
	}
	for _, h := range down {
		h.start()
	}
	f.waitVersion("web", "v2", f.hosts)
	for _, h := range down {
		if v, err := h.serving(); err != nil || v != "v2" {
			t.Fatalf("%s answers %q %v", h.name, v, err)
		}
		// With the origin and its seeder gone, the release came over
		// BitTorrent from the other hosts.
		log, err := os.ReadFile(filepath.Join(h.dir, "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "fetching over BitTorrent") || strings.Contains(string(log), "trying HTTP") {
			t.Fatalf("%s did not fetch over BitTorrent from its peers:\n%s", h.name, lastLines(string(log), 30))
		}
	}
}

func TestIntegration_FailedReleaseHaltsAndResumeContinues(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 3, 1, "300ms", "3s"), []string{"web"}, 5)
	f.startAll()
	pol := &policy{need: 3, maxParallel: 1, target: "v2"}
	mon := startMonitor(t, f.zkc, map[string]*policy{"web": pol})
	f.stage("web", "v2", true)
	f.order([]string{"web"})

	halted := f.waitHalted("web")
	if halted.Version != "v2" || !strings.Contains(halted.Reason, "not healthy") {
		t.Fatalf("halt: %+v", halted)
	}
	// The failed host went back to v1, and nobody else tried v2.
	f.waitVersion("web", "v1", f.hosts)
	_, v, err := f.admin.TurnStateOf("web", "next")
	if err != nil {
		t.Fatal(err)
	}
	if v.Go || !strings.HasPrefix(v.Wait, "halted: "+halted.Host) {
		t.Fatalf("verdict while halted by %+v: %+v", halted, v)
	}

	// A fixed release, and resume.
	f.stage("web", "v3", false)
	mon.setTarget(pol, "v3")
	if err := f.admin.UpdateControl("web", func(c *roll.Control) { c.Halted = nil }); err != nil {
		t.Fatal(err)
	}
	f.waitQueueEmpty()
	f.waitVersion("web", "v3", f.hosts)
	mon.check(t)
}

// A release that answers 503 on every check fails its switch after
// max_failed_checks checks, not at the end of its (long) deadline.
func TestIntegration_MaxFailedChecksFailsTheSwitchEarly(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "1h")+"max_failed_checks = 30\n", []string{"web"}, 2)
	f.startAll()
	f.stage("web", "v2", true)
	f.order([]string{"web"})

	halted := f.waitHalted("web")
	if halted.Version != "v2" || !strings.Contains(halted.Reason, "30 health checks failed in a row") || !strings.Contains(halted.Reason, "503") {
		t.Fatalf("halt: %+v, want the 30th failed check (503) as the reason", halted)
	}
	// The host went back to v1.
	f.waitVersion("web", "v1", f.hosts)
}

// A host that cannot unpack the staged release (a truncated tar.gz, staged
// behind stage's back) says why in /hosts, and status shows it.
func TestIntegration_BrokenArchiveIsReportedPerHost(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 1)
	f.startAll()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "payload"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	path := fetch.ArtifactPath(f.artDir, "web", "v2")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fetch.PackFile(src, path); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, whole[:len(whole)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	size, sum, err := fetch.Describe(path)
	if err != nil {
		t.Fatal(err)
	}
	m := roll.Manifest{Version: "v2", Size: size, SHA256: sum, Staged: time.Now().UTC(),
		URLs: []string{f.origin.URL + "/artifacts/web/v2"}}
	if err := f.admin.Stage("web", m, true); err != nil {
		t.Fatal(err)
	}

	h := f.hosts[0].name
	testutil.Eventually(t, time.Minute, func() error {
		st, err := f.admin.Status()
		if err != nil {
			return err
		}
		for _, hs := range st.Hosts {
			if why := hs.Stuck["web"]; hs.Name == h && strings.Contains(why, "v2") && strings.Contains(why, "unpack") {
				return nil
			}
		}
		return fmt.Errorf("status does not show %s stuck on v2: %+v", h, st.Hosts)
	})
	// And the host still serves v1.
	f.waitVersion("web", "v1", f.hosts)
}

// A new data center of fresh hosts (empty state directories, no release
// anywhere): staging the first release starts it on every host, each
// without a turn, and ordering it afterwards restarts nothing.
func TestIntegration_NewDataCenterOfFreshHostsTakesTheFirstRelease(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 0)
	for i := range 3 {
		f.hosts = append(f.hosts, newFleetHost(t, fmt.Sprintf("fresh%d", i), f.zkc.ConnString(), "/dc", f.services))
	}
	for _, h := range f.hosts {
		if err := os.RemoveAll(filepath.Join(h.dir, "releases")); err != nil {
			t.Fatal(err)
		}
		h.start()
	}
	f.stage("web", "v1", false)
	f.waitVersion("web", "v1", f.hosts)
	cur, err := f.admin.CurrentOf("web")
	if err != nil {
		t.Fatal(err)
	}

	f.order([]string{"web"})
	f.waitQueueEmpty()
	after, err := f.admin.CurrentOf("web")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range f.hosts {
		if v, err := h.serving(); err != nil || v != "v1" {
			t.Fatalf("%s serves %q (%v), want v1", h.name, v, err)
		}
		// A later "since" is a health check failed and passed again (a
		// loaded machine); a restart would show in the log, below.
		if after[h.name].Version != cur[h.name].Version {
			t.Fatalf("%s changed version after the order: %s, then %s", h.name, cur[h.name].Version, after[h.name].Version)
		}
		log, err := os.ReadFile(filepath.Join(h.dir, "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(log), "taking the turn"); n != 0 {
			t.Fatalf("%s took %d turns to start its first release", h.name, n)
		}
		if n := strings.Count(string(log), "started: version=v1"); n != 1 {
			t.Fatalf("%s started v1 %d times, want 1:\n%s", h.name, n, lastLines(string(log), 30))
		}
	}
}

func TestIntegration_Kill9MidSwitch(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 2, 1, "2s", "30s"), []string{"web"}, 4)
	f.startAll()
	mon := startMonitor(t, f.zkc, map[string]*policy{"web": {need: 2, maxParallel: 1, target: "v2"}})
	f.stage("web", "v2", false)
	f.order([]string{"web"})

	// Catch a host mid-switch: holding its turn, restarted on v2, not yet
	// healthy for min_healthy.
	var victim *host
	testutil.Eventually(t, time.Minute, func() error {
		turns, err := f.admin.Turns("web")
		if err != nil {
			return err
		}
		for name := range turns {
			i := slices.IndexFunc(f.hosts, func(h *host) bool { return h.name == name })
			if v, err := f.hosts[i].serving(); err == nil && v == "v2" {
				victim = f.hosts[i]
				return nil
			}
		}
		return fmt.Errorf("no host mid-switch yet (turns %v)", turns)
	})
	victim.signal(syscall.SIGKILL)
	victim.wait()
	// Its turn is released when its session expires.
	testutil.Eventually(t, 3*sessionTimeout, func() error {
		turns, err := f.admin.Turns("web")
		if err != nil {
			return err
		}
		if _, ok := turns[victim.name]; ok {
			return errors.New("the dead host still holds its turn")
		}
		return nil
	})
	victim.start()
	f.waitQueueEmpty()
	f.waitVersion("web", "v2", f.hosts)
	mon.check(t)
	// One complete version: the symlink, the process and /current agree.
	target, err := victim.releases.Current()
	if err != nil || target != "v2" {
		t.Fatalf("release symlink of %s: %q %v", victim.name, target, err)
	}
	if v, err := victim.serving(); err != nil || v != "v2" {
		t.Fatalf("%s answers %q %v", victim.name, v, err)
	}
}

func TestIntegration_HostJoiningMidRolloutTakesPart(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 2, 1, "1s", "30s"), []string{"web"}, 4)
	f.startAll()
	mon := startMonitor(t, f.zkc, map[string]*policy{"web": {need: 2, maxParallel: 1, target: "v2"}})
	f.stage("web", "v2", false)
	f.order([]string{"web"})
	// Once the first host is done, a new host joins the service.
	testutil.Eventually(t, time.Minute, func() error {
		cur, err := f.admin.CurrentOf("web")
		if err != nil {
			return err
		}
		for _, c := range cur {
			if c.Version == "v2" {
				return nil
			}
		}
		return errors.New("no host on v2 yet")
	})
	late := newFleetHost(t, "late", f.zkc.ConnString(), "/dc", []string{"web"}, "v1")
	late.start()
	f.hosts = append(f.hosts, late)
	f.waitQueueEmpty()
	f.waitVersion("web", "v2", f.hosts)
	mon.check(t)
	members, err := f.admin.Members("web")
	if err != nil || len(members) != 5 {
		t.Fatalf("members %v %v", members, err)
	}
}

var finishRetry = regexp.MustCompile(`cannot finish the turn; retrying: .*retry_in=([0-9.]+[mµn]?s)`)

// A host frozen in the middle of a failing switch loses its session, and
// its turn with it. When it thaws, the new version fails and it switches
// back, but ZooKeeper is away; the failure must still halt the deploy,
// recorded by the next session, and the host must not try the release
// again meanwhile.
// Found by the chaos harness (seed 1796204383436754420, schedule 14).
func TestIntegration_FailedSwitchWhoseTurnEndedWithItsSessionHalts(t *testing.T) {
	// Quorum 2 of 3: while the frozen host is out of /current, nobody else
	// may take a turn, so only the frozen host's failure can halt web.
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 2, 1, "2s", "4s"), []string{"web"}, 3)
	f.startAll()
	f.stage("web", "v2", true)
	f.order([]string{"web"})

	var victim *host
	testutil.Eventually(t, time.Minute, func() error {
		turns, err := f.admin.Turns("web")
		if err != nil {
			return err
		}
		cur, err := f.admin.CurrentOf("web")
		if err != nil {
			return err
		}
		// Mid-switch: holding the turn, out of /current (the switch
		// has begun; v2 never becomes healthy).
		for name := range turns {
			if _, ok := cur[name]; !ok {
				victim = f.hosts[slices.IndexFunc(f.hosts, func(h *host) bool { return h.name == name })]
				return nil
			}
		}
		return fmt.Errorf("no host mid-switch yet (turns %v)", turns)
	})
	victim.signal(syscall.SIGSTOP)
	testutil.Eventually(t, 3*sessionTimeout, func() error {
		turns, err := f.admin.Turns("web")
		if err != nil {
			return err
		}
		if _, ok := turns[victim.name]; ok {
			return errors.New("the frozen host still holds its turn")
		}
		return nil
	})
	// ZooKeeper goes away before the frozen host thaws: its switch fails
	// and it cannot record the failure; when ZooKeeper is back, a new
	// session begins, which ends the old session's loops.
	f.zkc.Stop(0)
	victim.signal(syscall.SIGCONT)
	testutil.Eventually(t, time.Minute, func() error {
		log, err := os.ReadFile(filepath.Join(victim.dir, "agent.log"))
		if err != nil {
			return err
		}
		// Until its retries are seconds apart, so that the new session
		// comes between two of them.
		for _, m := range finishRetry.FindAllStringSubmatch(string(log), -1) {
			if d, err := time.ParseDuration(m[1]); err == nil && d >= 2*time.Second {
				return nil
			}
		}
		return errors.New("the thawed host has not retried recording its failure for long yet")
	})
	f.zkc.Start(0)

	halted := f.waitHalted("web")
	if halted.Version != "v2" || halted.Host != victim.name {
		t.Fatalf("halt: %+v, want v2's failure on %s", halted, victim.name)
	}
	f.waitVersion("web", "v1", f.hosts)
	log, err := os.ReadFile(filepath.Join(victim.dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "taking the turn: switching"); n != 1 {
		t.Fatalf("%s switched %d times, want once:\n%s", victim.name, n, lastLines(string(log), 40))
	}
}

// The last queued host dies and stays down: the step must still finish once
// its session expires, though no turn ends after that.
func TestIntegration_StepFinishesWhenAQueuedHostDies(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 2, 1, "1s", "30s"), []string{"web"}, 4)
	f.startAll()
	f.stage("web", "v2", false)
	f.order([]string{"web"})
	var victim *host
	testutil.Eventually(t, time.Minute, func() error {
		queue, err := f.admin.ReadyQueue("web")
		if err != nil {
			return err
		}
		turns, err := f.admin.Turns("web")
		if err != nil {
			return err
		}
		// The last host queued while another holds the last turn: that
		// turn ends before the victim's session expires.
		if len(turns) == 0 || len(queue) != 1 {
			return fmt.Errorf("want a turn held and one host queued: turns %v, queue %v", turns, queue)
		}
		last := queue[len(queue)-1].Host
		victim = f.hosts[slices.IndexFunc(f.hosts, func(h *host) bool { return h.name == last })]
		return nil
	})
	victim.signal(syscall.SIGKILL)
	victim.wait()
	f.waitQueueEmpty()
	var alive []*host
	for _, h := range f.hosts {
		if h != victim {
			alive = append(alive, h)
		}
	}
	f.waitVersion("web", "v2", alive)
}

// A release file changed on disk after it was verified is refused at switch
// time, fetched again, and only then switched to.
func TestIntegration_TamperedReleaseIsRefusedAndFetchedAgain(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 2)
	f.startAll()
	f.stage("web", "v2", false)
	victim := f.hosts[0]
	artifact := fetch.ArtifactPath(filepath.Join(victim.dir, "artifacts"), "web", "v2")
	testutil.Eventually(t, time.Minute, func() error {
		queue, err := f.admin.ReadyQueue("web")
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(queue, func(e roll.ReadyEntry) bool { return e.Host == victim.name }) {
			return fmt.Errorf("%s not ready yet: %v", victim.name, queue)
		}
		return nil
	})
	b, err := os.ReadFile(artifact)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(artifact, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f.order([]string{"web"})
	f.waitQueueEmpty()
	f.waitVersion("web", "v2", f.hosts)
	m, err := f.admin.Manifest("web")
	if err != nil {
		t.Fatal(err)
	}
	if err := fetch.Verify(artifact, fetch.Artifact{Service: "web", Version: "v2", Size: m.Size, SHA256: m.SHA256}); err != nil {
		t.Fatalf("the artifact %s switched to does not verify: %v", victim.name, err)
	}
	log, err := os.ReadFile(filepath.Join(victim.dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "no longer matches its manifest") {
		t.Fatalf("%s never noticed the tampered file:\n%s", victim.name, lastLines(string(log), 30))
	}
}

// vmLockedKB reads VmLck of a process.
func vmLockedKB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmLck:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb
		}
	}
	t.Fatalf("no VmLck in /proc/%d/status", pid)
	return 0
}

// A release downloads over BitTorrent with a rate cap: its progress shows in
// /hosts (and so in status), the service's hot files are locked in memory
// meanwhile, and an agent killed mid-download resumes without fetching
// again what it had verified.
func TestIntegration_DownloadProgressHotFilesAndResume(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 1)
	h := f.hosts[0]
	h.hotFile(1 << 20)
	f.startAll()
	// The origin's seeder sends at 2 MB/s: the transfer takes a while, and
	// what it counts as sent is what the host received (no bytes pile up
	// unread in socket buffers).
	capped, err := fetch.NewSwarm(fetch.SwarmConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", UploadRate: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = capped.Close() })
	f.seeder = capped
	f.payload = 16 << 20
	f.stage("web", "v2", false)
	m, err := f.admin.Manifest("web")
	if err != nil {
		t.Fatal(err)
	}

	// Mid-download: progress in /hosts, hot files locked.
	testutil.Eventually(t, time.Minute, func() error {
		hosts, err := f.admin.Hosts()
		if err != nil {
			return err
		}
		p, ok := hosts[h.name].Fetching["web"]
		if !ok || p.Bytes < m.Size/4 {
			return fmt.Errorf("progress %+v (ok %v)", p, ok)
		}
		if p.Version != "v2" || p.Size != m.Size || p.Peers < 1 || p.Via != roll.ViaBitTorrent || p.Why != "" {
			return fmt.Errorf("progress %+v", p)
		}
		return nil
	})
	if kb := vmLockedKB(t, h.cmd.Process.Pid); kb < 1<<10 {
		t.Fatalf("VmLck %d kB during the transfer, want the 1 MiB hot file locked", kb)
	}
	_, sentBefore, _ := f.seeder.Stats(m.Infohash)
	h.signal(syscall.SIGKILL)
	h.wait()

	h.start()
	testutil.Eventually(t, 2*time.Minute, func() error {
		queue, err := f.admin.ReadyQueue("web")
		if err != nil {
			return err
		}
		if len(queue) != 1 {
			return fmt.Errorf("not ready yet: %v", queue)
		}
		return nil
	})
	_, sent, _ := f.seeder.Stats(m.Infohash)
	t.Logf("seeder sent %d bytes before the kill and %d in all, for a release of %d", sentBefore, sent, m.Size)
	if sent > m.Size+m.Size/8 {
		t.Fatalf("the seeder sent %d bytes for a %d-byte release: the restarted agent fetched again what it had", sent, m.Size)
	}
	// Transfer done: nothing stays locked, and the progress is gone.
	testutil.Eventually(t, 30*time.Second, func() error {
		if kb := vmLockedKB(t, h.cmd.Process.Pid); kb != 0 {
			return fmt.Errorf("VmLck %d kB after the transfer", kb)
		}
		hosts, err := f.admin.Hosts()
		if err != nil {
			return err
		}
		if p, ok := hosts[h.name].Fetching["web"]; ok {
			return fmt.Errorf("progress still shown: %+v", p)
		}
		return nil
	})
	// Fetch done, the release seeded: none of it is in the agent's resident
	// set. The artifact and its download were written and read with system
	// calls, so their pages are page cache, not the agent's memory.
	pid := h.cmd.Process.Pid
	mapped, err := memstat.MappedResident(pid, filepath.Join(h.dir, "artifacts"), filepath.Join(h.dir, "torrent", m.Infohash))
	if err != nil {
		t.Fatal(err)
	}
	rss, err := memstat.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent RSS once the fetch is done: %d KiB (race detector on), of which %d KiB mapped from the release", rss>>10, mapped>>10)
	if mapped != 0 {
		t.Errorf("the agent holds %d bytes of the %d-byte release in its resident set once the fetch is done, want 0", mapped, m.Size)
	}
}

// A release staged without BitTorrent comes over HTTP, and while it does
// the host says so in /hosts, and why: status and stage show it.
func TestIntegration_DownloadNotOverBitTorrentSaysWhy(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 1)
	h := f.hosts[0]
	f.startAll()
	// The origin holds every request until the test has seen the host
	// report the download.
	gate := make(chan struct{})
	var open sync.Once
	files := fetch.NewServer(f.artDir)
	f.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		open.Do(func() { close(gate) })
		f.origin.Close()
	})
	f.httpOnly = true
	f.stage("web", "v2", false)

	testutil.Eventually(t, time.Minute, func() error {
		hosts, err := f.admin.Hosts()
		if err != nil {
			return err
		}
		p, ok := hosts[h.name].Fetching["web"]
		if !ok || p.Version != "v2" || p.Via != roll.ViaHTTP || !strings.Contains(p.Why, "staged without BitTorrent") {
			return fmt.Errorf("progress %+v (ok %v), want v2 over HTTP saying it was staged without BitTorrent", p, ok)
		}
		return nil
	})
	open.Do(func() { close(gate) })
	testutil.Eventually(t, time.Minute, func() error {
		queue, err := f.admin.ReadyQueue("web")
		if err != nil {
			return err
		}
		hosts, err := f.admin.Hosts()
		if err != nil {
			return err
		}
		if p, ok := hosts[h.name].Fetching["web"]; len(queue) != 1 || ok {
			return fmt.Errorf("ready queue %v, download shown %+v", queue, p)
		}
		return nil
	})
}
