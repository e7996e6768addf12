package agent_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/machineid"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
)

// dcrollBin is the dcroll binary built once for the tests, race detector on.
var dcrollBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dcroll-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dcrollBin = filepath.Join(dir, "dcroll")
	build := exec.Command("go", "build", "-race", "-o", dcrollBin, "github.com/dcroll/dcroll")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build dcroll:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const sessionTimeout = 2 * time.Second

// host is one simulated machine: a state directory, releases of the "web"
// service, and a config for `dcroll agent`.
type host struct {
	t        testing.TB
	name     string
	dir      string
	port     int            // the port of "web", for single-service hosts
	releases state.Releases // the releases of "web"
	ports    map[string]int
	rels     map[string]state.Releases
	metrics  string // host:port of the agent's /metrics
	config   string
	cmd      *exec.Cmd
	exited   chan error
	// machineID is the host's machine-id(5), in its machine_id_file, and
	// id what dcroll derives from it and publishes.
	machineID, id string
}

// newHost makes a host running the one service "web", with versions
// installed.
func newHost(t testing.TB, name, zkServers, root string, versions ...string) *host {
	t.Helper()
	return newFleetHost(t, name, zkServers, root, []string{"web"}, versions...)
}

// newFleetHost makes a host running services, each with versions
// installed, each a supervised `dcroll _serve` on a port of its own. The
// host serves its artifacts to peers on a port of its own too.
func newFleetHost(t testing.TB, name, zkServers, root string, services []string, versions ...string) *host {
	t.Helper()
	dir := t.TempDir()
	h := &host{t: t, name: name, dir: dir, ports: map[string]int{}, rels: map[string]state.Releases{}}
	var svcCfg strings.Builder
	for _, svc := range services {
		port := testutil.FreePort(t)
		rel := state.Releases{Dir: filepath.Join(dir, "releases", svc)}
		for _, v := range versions {
			if err := os.MkdirAll(rel.Path(v), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		h.ports[svc], h.rels[svc] = port, rel
		fmt.Fprintf(&svcCfg, `
[services.%s]
run = "exec %s _serve --addr 127.0.0.1:%d"
stop_timeout = "5s"
[services.%s.health]
http = "http://127.0.0.1:%d/healthz"
interval = "100ms"
timeout = "1s"
`, svc, dcrollBin, port, svc, port)
	}
	h.port, h.releases = h.ports["web"], h.rels["web"]
	h.config = filepath.Join(dir, "dcroll.toml")
	// Every host is a machine of its own; a restart keeps its machine id.
	h.machineID = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	machineFile := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(machineFile, []byte(h.machineID+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	id, err := machineid.Derive(h.machineID)
	if err != nil {
		t.Fatal(err)
	}
	h.id = id
	peer := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	torrent := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	h.metrics = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := fmt.Sprintf(`
[zookeeper]
servers = [%s]
root = %q
session_timeout = "%s"
[host]
name = %q
state_dir = %q
machine_id_file = %q
[log]
level = "debug"
[transfer]
listen = %q
advertise = %q
torrent_listen = %q
torrent_advertise = %q
[metrics]
listen = %q
%s`, tomlList(zkServers), root, sessionTimeout, name, dir, machineFile, peer, peer, torrent, torrent, h.metrics, svcCfg.String())
	if err := os.WriteFile(h.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// editConfig replaces the first old in the host's config with new.
func (h *host) editConfig(old, new string) {
	h.t.Helper()
	b, err := os.ReadFile(h.config)
	if err != nil {
		h.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		h.t.Fatalf("%s's config has no %q", h.name, old)
	}
	if err := os.WriteFile(h.config, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// hotFile gives the host's "web" v1 a hot file of size bytes, hot.bin,
// locked in memory while a release downloads.
func (h *host) hotFile(size int) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.rels["web"].Path("v1"), "hot.bin"), make([]byte, size), 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.editConfig("stop_timeout = \"5s\"", "stop_timeout = \"5s\"\nhot_files = [\"hot.bin\"]")
}

// start runs `dcroll agent` for the host as a real process, with flags.
func (h *host) start(flags ...string) {
	h.t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	h.cmd = exec.Command(dcrollBin, append([]string{"--config", h.config, "agent", "--view-interval", "50ms"}, flags...)...)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.Env = os.Environ()
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.exited = make(chan error, 1)
	cmd := h.cmd
	go func() { h.exited <- cmd.Wait(); logf.Close() }()
	h.t.Cleanup(func() {
		if h.cmd == cmd {
			_ = cmd.Process.Kill()
			<-h.exited
			h.cmd = nil
			if h.t.Failed() {
				b, _ := os.ReadFile(filepath.Join(h.dir, "agent.log"))
				h.t.Logf("agent %s log:\n%s", h.name, lastLines(string(b), 40))
			}
		}
	})
}

// log is what the agent has logged so far, over all its runs.
func (h *host) log() string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "agent.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatal(err)
	}
	return string(b)
}

func (h *host) signal(sig syscall.Signal) {
	h.t.Helper()
	if err := h.cmd.Process.Signal(sig); err != nil {
		h.t.Fatal(err)
	}
}

// wait waits for the agent process to exit and returns its error.
func (h *host) wait() error {
	err := <-h.exited
	h.cmd = nil
	return err
}

// serving asks the service "web" itself which version it runs.
func (h *host) serving() (string, error) { return h.servingOf("web") }

// servingOf asks the service svc itself which version it runs.
func (h *host) servingOf(svc string) (string, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", h.ports[svc]))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// tomlList renders "a:1,b:2" as a TOML array of strings.
func tomlList(servers string) string {
	var q []string
	for _, s := range strings.Split(servers, ",") {
		q = append(q, fmt.Sprintf("%q", s))
	}
	return strings.Join(q, ", ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func connect(t testing.TB, zkc *zktest.Cluster, root string) *roll.Store {
	t.Helper()
	return rolltest.Open(t, zkc, root)
}

func seed(t testing.TB, s *roll.Store) {
	t.Helper()
	rolltest.Seed(t, s, "[services.web]\nquorum = 1\n")
}

// currentOf returns what /current/web/<host> says, with its owner session.
func currentOf(t testing.TB, s *roll.Store, host string) (roll.Current, int64, error) {
	cur, err := s.CurrentOf("web")
	if err != nil {
		return roll.Current{}, 0, err
	}
	c, ok := cur[host]
	if !ok {
		return c, 0, fmt.Errorf("%s is not in /current/web", host)
	}
	_, stat, err := rolltest.RawOf(t, s).Get(s.Tree.Current("web", host))
	if err != nil {
		return c, 0, err
	}
	return c, stat.EphemeralOwner, nil
}

func absent(t testing.TB, s *roll.Store, path string) error {
	ok, _, err := rolltest.RawOf(t, s).Exists(path)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%s still exists", path)
	}
	return nil
}

func TestIntegration_AgentRegistersAndVanishesAfterKill9(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	h := newHost(t, "h1", zkc.ConnString(), "/dc", "1.9", "1.10")
	h.start()

	testutil.Eventually(t, 30*time.Second, func() error {
		c, _, err := currentOf(t, s, "h1")
		if err != nil {
			return err
		}
		if c.Version != "1.10" {
			return fmt.Errorf("h1 serves %s, want the newest release 1.10", c.Version)
		}
		return nil
	})
	if v, err := h.serving(); err != nil || v != "1.10" {
		t.Fatalf("the service itself says %q, %v", v, err)
	}
	for _, p := range []string{s.Tree.Host("h1"), s.Tree.Member("web", "h1")} {
		if ok, _, err := rolltest.RawOf(t, s).Exists(p); err != nil || !ok {
			t.Fatalf("%s missing: %v", p, err)
		}
	}

	killed := time.Now()
	h.signal(syscall.SIGKILL)
	h.wait()
	// ZooKeeper expires the session after the session timeout (plus up to
	// one tick); the deadline leaves room for a slow machine.
	testutil.Eventually(t, 3*sessionTimeout, func() error {
		if err := absent(t, s, s.Tree.Current("web", "h1")); err != nil {
			return err
		}
		return absent(t, s, s.Tree.Host("h1"))
	})
	t.Logf("/current/web/h1 gone %v after kill -9 (session timeout %v)", time.Since(killed).Round(time.Millisecond), sessionTimeout)
	// The membership stays: h1 now counts as offline.
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st.Services[0].Offline) != "[h1]" {
		t.Fatalf("h1 should be offline: %+v", st.Services[0])
	}
	// The supervised service died with its agent (no orphan holds the port).
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, err := h.serving(); err == nil {
			return errors.New("the service outlived its agent")
		}
		return nil
	})
}

func TestIntegration_AgentRegistersAgainAfterSessionExpiry(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	h := newHost(t, "h1", zkc.ConnString(), "/dc", "v1")
	h.start()
	var owner int64
	testutil.Eventually(t, 30*time.Second, func() (err error) {
		_, owner, err = currentOf(t, s, "h1")
		return err
	})

	// Freeze the agent past its session timeout: ZooKeeper expires the
	// session and drops its ephemeral nodes.
	h.signal(syscall.SIGSTOP)
	testutil.Eventually(t, 3*sessionTimeout, func() error {
		return absent(t, s, s.Tree.Current("web", "h1"))
	})
	// The service itself kept serving all along.
	if v, err := h.serving(); err != nil || v != "v1" {
		t.Fatalf("service while the agent is frozen: %q %v", v, err)
	}
	h.signal(syscall.SIGCONT)
	testutil.Eventually(t, 30*time.Second, func() error {
		c, newOwner, err := currentOf(t, s, "h1")
		if err != nil {
			return err
		}
		if newOwner == owner {
			return errors.New("still the old session")
		}
		if c.Version != "v1" {
			return fmt.Errorf("version %s", c.Version)
		}
		_, stat, err := rolltest.RawOf(t, s).Get(s.Tree.Host("h1"))
		if err != nil {
			return fmt.Errorf("/hosts/h1: %w", err)
		}
		if stat.EphemeralOwner != newOwner {
			return errors.New("/hosts/h1 not re-created by the new session")
		}
		return nil
	})
}

func TestIntegration_AgentBootsFromCacheWithZooKeeperDown(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	h := newHost(t, "h1", zkc.ConnString(), "/dc", "v1", "v2", "v3")
	// The cache says the fleet mostly runs v2 (not the newest, v3).
	cache := &state.File{Services: map[string]*state.Service{
		"web": {Running: "v1", Fleet: map[string]int{"v1": 2, "v2": 7, "v3": 1}, Seen: time.Now().UTC()},
	}}
	if err := state.Save(h.dir, cache); err != nil {
		t.Fatal(err)
	}
	s.Close()
	zkc.Stop(0)

	h.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		v, err := h.serving()
		if err != nil {
			return err
		}
		if v != "v2" {
			return fmt.Errorf("serving %s, want the most popular cached v2", v)
		}
		return nil
	})
	if target, err := h.releases.Current(); err != nil || target != "v2" {
		t.Fatalf("release symlink: %q %v", target, err)
	}

	// ZooKeeper comes back: the agent joins by itself.
	zkc.Start(0)
	s = connect(t, zkc, "/dc")
	testutil.Eventually(t, 30*time.Second, func() error {
		c, _, err := currentOf(t, s, "h1")
		if err != nil {
			return err
		}
		if c.Version != "v2" {
			return fmt.Errorf("registered %s", c.Version)
		}
		return nil
	})
	// And the cache now holds the fleet as ZooKeeper sees it: just h1 on v2.
	testutil.Eventually(t, 10*time.Second, func() error {
		f, err := state.Load(h.dir)
		if err != nil {
			return err
		}
		if fleet := f.Services["web"].Fleet; len(fleet) != 1 || fleet["v2"] != 1 {
			return fmt.Errorf("cached fleet %v", fleet)
		}
		return nil
	})
}

func TestIntegration_NewHostJoinsTheFleetsVersion(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	old1 := newHost(t, "old1", zkc.ConnString(), "/dc", "v1")
	old2 := newHost(t, "old2", zkc.ConnString(), "/dc", "v1")
	old1.start()
	old2.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		cur, err := s.CurrentOf("web")
		if err != nil || len(cur) != 2 {
			return fmt.Errorf("current: %v %v", cur, err)
		}
		return nil
	})
	// A new host with an empty cache has v1 and a newer v2: it may start v2
	// at once, but moves to the fleet's v1 when it hears from ZooKeeper.
	fresh := newHost(t, "fresh", zkc.ConnString(), "/dc", "v1", "v2")
	fresh.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		c, _, err := currentOf(t, s, "fresh")
		if err != nil {
			return err
		}
		if v, err := fresh.serving(); err != nil || v != "v1" || c.Version != "v1" {
			return fmt.Errorf("fresh serves %q (%v), registered %s", v, err, c.Version)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		f, err := state.Load(fresh.dir)
		if err != nil {
			return err
		}
		if fleet := f.Services["web"].Fleet; fleet["v1"] != 3 || len(fleet) != 1 {
			return fmt.Errorf("cached fleet %v, want v1 on 3 hosts", fleet)
		}
		return nil
	})
}

func TestIntegration_SIGTERMDeregistersAndExitsCleanly(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	h := newHost(t, "h1", zkc.ConnString(), "/dc", "v1")
	h.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		_, _, err := currentOf(t, s, "h1")
		return err
	})
	h.signal(syscall.SIGTERM)
	if err := h.wait(); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v", err)
	}
	// The session was closed on the way out: the nodes are gone now, not
	// after the session timeout.
	for _, p := range []string{s.Tree.Current("web", "h1"), s.Tree.Host("h1")} {
		if _, err := rolltest.RawOf(t, s).Sync(p); err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Fatal(err)
		}
		if err := absent(t, s, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.serving(); err == nil {
		t.Fatal("the supervised service still runs after the agent stopped")
	}
}

func TestIntegration_AgentRidesOutLeaderLoss(t *testing.T) {
	zkc := zktest.Ensemble(t, 3)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	hosts := []*host{
		newHost(t, "h1", zkc.ConnString(), "/dc", "v1"),
		newHost(t, "h2", zkc.ConnString(), "/dc", "v1"),
	}
	for _, h := range hosts {
		h.start()
	}
	allCurrent := func() error {
		cur, err := s.CurrentOf("web")
		if err != nil {
			return err
		}
		if len(cur) != len(hosts) {
			return fmt.Errorf("current: %v", cur)
		}
		return nil
	}
	testutil.Eventually(t, 30*time.Second, allCurrent)

	leader := zkc.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	zkc.Stop(leader)
	zkc.WaitReady(t)
	// The services never stopped, and once the ensemble has a new leader
	// every host is registered again (same session, or a new one).
	for _, h := range hosts {
		if v, err := h.serving(); err != nil || v != "v1" {
			t.Fatalf("%s during the election: %q %v", h.name, v, err)
		}
	}
	s2 := connect(t, zkc, "/dc")
	testutil.Eventually(t, 30*time.Second, func() error {
		cur, err := s2.CurrentOf("web")
		if err != nil {
			return err
		}
		if len(cur) != len(hosts) {
			return fmt.Errorf("current after the election: %v", cur)
		}
		return nil
	})
	zkc.Start(leader)
	zkc.WaitReady(t)
}
