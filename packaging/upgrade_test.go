package packaging_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/agentconf"
	"github.com/dcroll/dcroll/internal/freeport"
	"github.com/dcroll/dcroll/internal/proc"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

// upgradeHost is one host of TestIntegration_AgentsUpgradedMidRollout: its
// directory and config, and each agent process it ran, in order.
type upgradeHost struct {
	name, dir string
	agents    []*proc.Proc
	logs      []string
}

func (h *upgradeHost) config() string { return filepath.Join(h.dir, "dcroll.toml") }
func (h *upgradeHost) agent() *proc.Proc {
	return h.agents[len(h.agents)-1]
}

// start runs the host's agent from binary, as the unit's ExecStart does
// after a package install or upgrade, logging to a file of its own.
func (h *upgradeHost) start(t *testing.T, binary string, env []string) {
	t.Helper()
	log := filepath.Join(h.dir, fmt.Sprintf("agent-%d.log", len(h.agents)+1))
	p, err := proc.Start([]string{binary, "--config", h.config(), "agent", "--view-interval", "200ms"}, h.dir, log, env)
	if err != nil {
		t.Fatal(err)
	}
	h.agents, h.logs = append(h.agents, p), append(h.logs, log)
}

// stop stops the host's agent as systemctl stop (or the package's restart)
// does, SIGTERM, and checks that it exits 0.
func (h *upgradeHost) stop(t *testing.T) {
	t.Helper()
	p := h.agent()
	p.Terminate(60 * time.Second)
	if err := p.Err(); err != nil {
		t.Errorf("%s: the agent exited with %v on SIGTERM", h.name, err)
	}
}

// switches counts, in the log of each agent process of the host, the turns
// it took to switch web.
func (h *upgradeHost) switches(t *testing.T) []int {
	t.Helper()
	var n []int
	for _, log := range h.logs {
		n = append(n, strings.Count(string(file(t, log)), "taking the turn: switching"))
	}
	return n
}

// TestIntegration_AgentsUpgradedMidRollout upgrades the agents of a data
// center one host at a time while a rollout runs, as a fleet upgrading the
// dcroll package host by host does: each agent is stopped with SIGTERM and
// started again from a newer build. The hosts are restarted at three
// moments: while the host holds its turn and switches, while it waits in
// the ready queue behind another host's turn, and then whenever the last
// one is reached. The rollout must go on to its end: every host on the new
// release, no turn or ready node left behind, no host switching twice, and
// never two turns at once (max_parallel 1).
func TestIntegration_AgentsUpgradedMidRollout(t *testing.T) {
	zkc := zktest.Standalone(t)
	oldBin, newBin := dcroll(t, "v0.1.0"), dcroll(t, "v0.2.0")
	const root = "/upgrade"
	work := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCROLL_") {
			env = append(env, kv)
		}
	}

	// The operator's config and commands, from the newer build.
	opConfig := filepath.Join(work, "operator.toml")
	writeFile(t, opConfig, fmt.Sprintf("[zookeeper]\nservers = [%s]\nroot = %q\n", agentconf.QuoteList(zkc.Servers()), root))
	operator := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(newBin, append([]string{"--config", opConfig}, args...)...)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dcroll %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Every turn keeps the host out for 2 s: long enough to restart
	// another agent meanwhile.
	writeFile(t, filepath.Join(work, "seed.toml"), "[services.web]\nquorum = 1\n[services.web.health]\nmin_healthy = \"2s\"\ndeadline = \"1m\"\n")
	operator("seed", "seed.toml")

	// Three hosts running release 1 of web (dcroll _serve, from a build
	// that is not upgraded), each agent from the older build.
	hosts := make([]*upgradeHost, 3)
	for i := range hosts {
		h := &upgradeHost{name: fmt.Sprintf("h%d", i+1), dir: filepath.Join(work, fmt.Sprintf("h%d", i+1))}
		ports, err := freeport.Ports(3)
		if err != nil {
			t.Fatal(err)
		}
		addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
		conf := agentconf.Host{
			Comment: "the agent config of " + h.name, Name: h.name, StateDir: h.dir,
			ZooKeeper: zkc.Servers(), Root: root, SessionTimeout: 3 * time.Second,
			Transfer: addr(ports[0]), Torrent: addr(ports[1]), TransferAdvertise: addr(ports[0]), TorrentAdvertise: addr(ports[1]),
			LogLevel: "info", Exe: oldBin, HealthInterval: 200 * time.Millisecond,
			Services: []agentconf.Service{{Name: "web", Addr: addr(ports[2])}},
		}
		if err := os.MkdirAll(filepath.Join(h.dir, "releases/web/1"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, h.config(), conf.TOML())
		h.start(t, oldBin, env)
		hosts[i] = h
	}
	byName := map[string]*upgradeHost{}
	for _, h := range hosts {
		byName[h.name] = h
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			h.agent().Terminate(60 * time.Second)
		}
		if t.Failed() {
			for _, h := range hosts {
				for _, log := range h.logs {
					b, _ := os.ReadFile(log)
					t.Logf("%s:\n%s", log, b)
				}
			}
		}
	})

	store := rolltest.Open(t, zkc, root)
	agents := func(version string) func() error {
		return func() error {
			hs, err := store.Hosts()
			if err != nil {
				return err
			}
			cur, err := store.CurrentOf("web")
			if err != nil {
				return err
			}
			for _, h := range hosts {
				if !strings.HasPrefix(hs[h.name].Agent, version+" ") && hs[h.name].Agent != version {
					return fmt.Errorf("%s: agent %q, want %s", h.name, hs[h.name].Agent, version)
				}
				if _, ok := cur[h.name]; !ok {
					return fmt.Errorf("%s: not in /current/web", h.name)
				}
			}
			return nil
		}
	}
	testutil.Eventually(t, time.Minute, agents("v0.1.0"))

	// Never two turns at once: watch the turns from here to the end.
	raw := rolltest.RawOf(t, store)
	turnsPath := root + "/roll/web/turns"
	var (
		mu       sync.Mutex
		maxTurns int
		watchErr error
	)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			kids, _, ch, err := raw.ChildrenW(turnsPath)
			if errors.Is(err, zk.ErrNoNode) {
				_, _, ch, err = raw.ExistsW(turnsPath)
			}
			mu.Lock()
			maxTurns = max(maxTurns, len(kids))
			if err != nil {
				watchErr = err
			}
			mu.Unlock()
			if err != nil {
				return
			}
			select {
			case <-ch:
			case <-done:
				return
			}
		}
	}()

	// Stage release 2 (stage returns once every host has it), then order
	// the rollout.
	release := filepath.Join(work, "web-2")
	if err := os.MkdirAll(release, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(release, "VERSION"), "2\n")
	out := operator("stage", "--listen", "127.0.0.1:0", "--torrent-listen", "127.0.0.1:0", "--timeout", "2m", "web", "2", release+"/")
	if !strings.Contains(out, "every online host (3) has the release") {
		t.Fatalf("dcroll stage:\n%s", out)
	}
	operator("order", "web")

	// inTurn is the host that holds web's turn once its switch is under
	// way: it has left /current/web, and stops or starts the service.
	inTurn := func(not ...string) (h *upgradeHost, err error) {
		turns, err := store.Turns("web")
		if err != nil {
			return nil, err
		}
		cur, err := store.CurrentOf("web")
		if err != nil {
			return nil, err
		}
		for name := range turns {
			h := byName[name]
			if _, serving := cur[name]; slices.Contains(not, name) || h == nil || serving {
				continue
			}
			if n := h.switches(t); n[len(n)-1] > 0 {
				return h, nil
			}
		}
		return nil, fmt.Errorf("no host of %v switching under a turn", turns)
	}
	rolling := func(what string) {
		t.Helper()
		if steps, err := store.Steps(); err != nil || len(steps) == 0 {
			t.Fatalf("%s: the rollout is over already (steps %v, %v): the test restarts nothing mid-rollout", what, steps, err)
		}
	}
	upgrade := func(h *upgradeHost, why string) {
		t.Helper()
		rolling(why)
		t.Logf("upgrading the agent of %s %s", h.name, why)
		h.stop(t)
		h.start(t, newBin, env)
		testutil.Eventually(t, time.Minute, func() error {
			hs, err := store.Hosts()
			if err != nil {
				return err
			}
			if a := hs[h.name].Agent; !strings.HasPrefix(a, "v0.2.0") {
				return fmt.Errorf("%s: agent %q, want v0.2.0", h.name, a)
			}
			return nil
		})
	}

	// 1. The host in its turn, mid-switch: the switch runs to its end
	// before the old agent exits, its turn going with its session. (A
	// SIGTERM before the host left /current ends the switch before it
	// stops anything; nothing is checked of that case here.)
	var first *upgradeHost
	testutil.Eventually(t, time.Minute, func() (err error) { first, err = inTurn(); return err })
	upgrade(first, "while it holds its turn")
	if n := first.switches(t); n[0] != 1 {
		t.Errorf("%s's old agent switched %d times, want once", first.name, n[0])
	}
	if !strings.Contains(string(file(t, first.logs[0])), "healthy on the new version") {
		t.Errorf("%s's old agent did not finish its switch before it exited", first.name)
	}

	// 2. A host that waits in the queue while another holds the turn: it
	// leaves the queue with its session and joins again when it is back.
	var second *upgradeHost
	testutil.Eventually(t, time.Minute, func() (err error) { second, err = inTurn(first.name); return err })
	var queued *upgradeHost
	for _, h := range hosts {
		if h != first && h != second {
			queued = h
		}
	}
	upgrade(queued, "while it waits in the queue")

	// 3. The last one, wherever the rollout is by now.
	if steps, err := store.Steps(); err == nil && len(steps) > 0 {
		upgrade(second, "last")
	} else {
		t.Logf("upgrading the agent of %s after the rollout", second.name)
		second.stop(t)
		second.start(t, newBin, env)
	}

	// The rollout ends with every host on release 2 under an agent of the
	// newer build, and nothing left in the queues.
	testutil.Eventually(t, 2*time.Minute, func() error {
		cur, err := store.CurrentOf("web")
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if cur[h.name].Version != "2" {
				return fmt.Errorf("/current/web: %v, want every host on 2", cur)
			}
		}
		if steps, err := store.Steps(); err != nil || len(steps) != 0 {
			return fmt.Errorf("deploy steps %v (%v), want none", steps, err)
		}
		return nil
	})
	testutil.Eventually(t, time.Minute, agents("v0.2.0"))
	close(done)
	<-watched
	if turns, err := store.Turns("web"); err != nil || len(turns) != 0 {
		t.Errorf("turns left after the rollout: %v, %v", turns, err)
	}
	if q, err := store.ReadyQueue("web"); err != nil || len(q) != 0 {
		t.Errorf("ready nodes left after the rollout: %v, %v", q, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if watchErr != nil {
		t.Errorf("watching the turns: %v", watchErr)
	}
	if maxTurns != 1 {
		t.Errorf("at most %d turns seen at once, want 1 (max_parallel 1)", maxTurns)
	}
	// Every turn moved its host from release 1 to 2: no host took a turn
	// for the release it ran already. A host may take two: the agent
	// starts the release most of the fleet ran at its last look (README,
	// "The agent"), so an upgraded host restarted while most hosts still
	// run release 1 comes back on 1, and takes a turn again.
	switches := 0
	for _, h := range hosts {
		for i, log := range h.logs {
			for _, line := range strings.Split(string(file(t, log)), "\n") {
				if !strings.Contains(line, "taking the turn: switching") {
					continue
				}
				switches++
				if !strings.Contains(line, " from=1 ") || !strings.Contains(line, " to=2 ") && !strings.HasSuffix(line, " to=2") {
					t.Errorf("%s, agent process %d: a turn not from release 1 to 2: %s", h.name, i+1, line)
				}
			}
		}
		t.Logf("%s: turns by agent process %v", h.name, h.switches(t))
	}
	// Every turn taken was used for a switch, and every switch had its
	// turn: each turn created and deleted /roll/web/turns/<host>, once.
	_, st, err := raw.Get(turnsPath)
	if err != nil {
		t.Fatal(err)
	}
	if int(st.Cversion) != 2*switches {
		t.Errorf("%s changed its children %d times; want %d, a create and a delete for each of the %d switches", turnsPath, st.Cversion, 2*switches, switches)
	}
	if switches < len(hosts) {
		t.Errorf("%d switches for %d hosts", switches, len(hosts))
	}
}
