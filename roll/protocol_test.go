package roll

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

// simHost plays one host's part of the protocol against a real ZooKeeper,
// with an instant switch: the turn-taking alone.
type simHost struct {
	name  string
	store *Store
}

// turn runs one full turn of h for svc from version "v1" to to, and
// returns the requests it cost.
func (h *simHost) turn(ctx context.Context, svc, to string) (int64, error) {
	before := h.store.Ops()
	ready, err := h.store.JoinReady(svc, h.name, to)
	if err != nil {
		return 0, err
	}
	if err := h.store.AwaitTurn(ctx, svc, h.name, ready, Turn{From: "v1", To: to, Started: time.Now()}); err != nil {
		return 0, err
	}
	if err := h.store.ClearCurrent(svc, h.name); err != nil {
		return 0, err
	}
	if err := h.store.SetCurrent(svc, h.name, Current{Version: to, Since: time.Now()}); err != nil {
		return 0, err
	}
	if err := h.store.FinishTurn(svc, h.name, nil); err != nil {
		return 0, err
	}
	return h.store.Ops() - before, nil
}

// rollout seeds a fleet of n hosts of db (quorum, max_parallel), stages v2,
// orders it and lets every host take its turn at once. A monitor samples
// /current and the turns throughout; it returns the requests per turn.
func rollout(t *testing.T, zkc *zktest.Cluster, root string, n int, quorum string, maxParallel int) []int64 {
	t.Helper()
	admin := connect(t, zkc, root)
	seed(t, admin, parse(t, fmt.Sprintf("[services.db]\nquorum = %s\nmax_parallel = %d\n", quorum, maxParallel)))
	need := Quorum{}
	if strings.HasSuffix(quorum, "%\"") {
		fmt.Sscanf(strings.Trim(quorum, "\"%"), "%d", &need.Percent)
	} else {
		fmt.Sscanf(quorum, "%d", &need.Count)
	}
	hosts := make([]*simHost, n)
	for i := range hosts {
		h := &simHost{name: fmt.Sprintf("h%02d", i), store: connect(t, zkc, root)}
		if err := h.store.EnsureMember("db", h.name, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.SetCurrent("db", h.name, Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
		hosts[i] = h
	}
	m := Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("a", 64), URLs: []string{"http://origin/x"}}
	if err := admin.Stage("db", m, false); err != nil {
		t.Fatal(err)
	}
	if err := admin.AppendSteps([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	monitor := connect(t, zkc, root)
	var stop atomic.Bool
	var violations []string
	var samples int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			online, _, err1 := monitor.conn.Children(monitor.Tree.CurrentDir("db"))
			turns, _, err2 := monitor.conn.Children(monitor.Tree.turnsDir("db"))
			if err1 != nil || err2 != nil {
				violations = append(violations, fmt.Sprintf("monitor: %v %v", err1, err2))
				return
			}
			samples++
			if len(online) < need.Need(n) {
				violations = append(violations, fmt.Sprintf("%d online < quorum %d", len(online), need.Need(n)))
			}
			if len(turns) > maxParallel {
				violations = append(violations, fmt.Sprintf("%d in turn > max_parallel %d", len(turns), maxParallel))
			}
			time.Sleep(2 * time.Millisecond) // the sampling period, not a wait for a condition
		}
	}()

	costs := make([]int64, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); costs[i], errs[i] = h.turn(ctx, "db", "v2") }()
	}
	wg.Wait()
	stop.Store(true)
	<-done
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", hosts[i].name, err)
		}
	}
	if len(violations) > 0 {
		t.Fatalf("%d violations in %d samples, first: %s", len(violations), samples, violations[0])
	}
	steps, err := admin.Steps()
	if err != nil || len(steps) != 0 {
		t.Fatalf("the step should be done and removed: %v %v", steps, err)
	}
	cur, err := admin.CurrentOf("db")
	if err != nil {
		t.Fatal(err)
	}
	for h, c := range cur {
		if c.Version != "v2" {
			t.Fatalf("%s on %s after the rollout", h, c.Version)
		}
	}
	t.Logf("%d hosts, quorum %s, max_parallel %d: %d monitor samples, requests per turn %v", n, quorum, maxParallel, samples, costs)
	return costs
}

// ZooKeeper cannot remove a watch: one a host sets on a node that changes
// with every turn stays until it fires, long after the host has moved on,
// and each such watch costs a notification per host per rollout. After a
// rollout of hosts that mostly waited (max_parallel 1), no node the turn
// reads is watched by more than one session.
func TestIntegration_TurnsLeaveNoWatchesBehind(t *testing.T) {
	zkc := zktest.Standalone(t)
	rollout(t, zkc, "/w", 8, "2", 1)
	out, err := zkc.FourLetterWord(0, "wchp")
	if err != nil {
		t.Fatal(err)
	}
	watchers := map[string]int{}
	var at string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "/"):
			at = l
		case strings.HasPrefix(strings.TrimSpace(l), "0x"):
			watchers[at]++
		}
	}
	for _, p := range []string{"/w", "/w/roll/db", "/w/deploy", "/w/current/db", "/w/roll/db/turns", "/w/services"} {
		if watchers[p] > 1 {
			t.Errorf("%s is watched by %d sessions after the rollout", p, watchers[p])
		}
	}
	t.Logf("watches after the rollout: %v", watchers)
}

func TestIntegration_TurnsKeepQuorumAndMaxParallel(t *testing.T) {
	zkc := zktest.Standalone(t)
	rollout(t, zkc, "/p1", 8, "6", 2)
	rollout(t, zkc, "/p2", 6, "\"50%\"", 3)
	rollout(t, zkc, "/p3", 5, "4", 1)
}

// TestIntegration_TurnCostIsConstant counts the ZooKeeper requests of one
// host's turn, from joining the ready queue to finishing, in fleets of two
// sizes: the cost must not grow with the fleet.
func TestIntegration_TurnCostIsConstant(t *testing.T) {
	zkc := zktest.Standalone(t)
	avg := func(costs []int64) float64 {
		var sum int64
		for _, c := range costs {
			sum += c
		}
		return float64(sum) / float64(len(costs))
	}
	small := avg(rollout(t, zkc, "/c1", 4, "2", 1))
	large := avg(rollout(t, zkc, "/c2", 16, "2", 1))
	t.Logf("requests per turn: %.1f with 4 hosts, %.1f with 16", small, large)
	if large > 2*small {
		t.Fatalf("a turn costs %.1f requests with 16 hosts and %.1f with 4: it grows with the fleet", large, small)
	}
}

func TestIntegration_OrderRefusesAnUnqueuedDependency(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/o1")
	c := parse(t, "[services.db]\nquorum = 1\n[services.api]\nquorum = 1\ndepends_on = [\"db\"]\n")
	seed(t, s, c)
	if err := s.SetCurrent("db", "h1", Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("b", 64)}
	for _, svc := range []string{"db", "api"} {
		if err := s.Stage(svc, m, false); err != nil {
			t.Fatal(err)
		}
	}
	err := s.CheckUnqueuedDependencies(c, [][]string{{"api"}})
	if err == nil || !strings.Contains(err.Error(), `"api" depends on "db", which is staged, not rolled out and not queued`) {
		t.Fatalf("ordering api alone: %v", err)
	}
	if err := s.CheckUnqueuedDependencies(c, [][]string{{"db"}, {"api"}}); err != nil {
		t.Fatalf("db then api: %v", err)
	}
	// Once db runs v2 everywhere, api alone is fine.
	if err := s.SetCurrent("db", "h1", Current{Version: "v2", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckUnqueuedDependencies(c, [][]string{{"api"}}); err != nil {
		t.Fatalf("api after db rolled out: %v", err)
	}
}

func TestIntegration_StragglerCatchesUpWithoutAStep(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/s1")
	seed(t, s, parse(t, "[services.db]\nquorum = 1\n"))
	if err := s.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("d", 64)}, false); err != nil {
		t.Fatal(err)
	}
	set := func(host, version string) {
		t.Helper()
		if err := s.EnsureMember("db", host, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrent("db", host, Current{Version: version, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	// Staged, not ordered, most hosts still on v1: no turn without a step.
	set("h1", "v2")
	set("h2", "v1")
	set("h3", "v1")
	st, _, err := s.TurnStateOf("db", "h3")
	if err != nil {
		t.Fatal(err)
	}
	if v := Decide(st); v.Go || v.Wait != "not in the head deploy step" {
		t.Fatalf("before the rollout: %+v", v)
	}
	// The step is done and gone, most hosts run v2: h3 may catch up.
	set("h2", "v2")
	straggler := &simHost{name: "h3", store: connect(t, zkc, "/s1")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := straggler.turn(ctx, "db", "v2"); err != nil {
		t.Fatalf("the straggler's turn: %v", err)
	}
}

// A straggler is judged on the fleet view, which the advancer brings up to
// date a second after /current changes. One held on a view that lags must
// go once the view catches up, even if nothing else changes (found by a
// chaos schedule: a host back from a partition waited for good).
func TestIntegration_StragglerHeldOnALaggingViewGoesWhenItCatchesUp(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/lag")
	seed(t, s, parse(t, "[services.db]\nquorum = 1\n"))
	if err := s.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("d", 64)}, false); err != nil {
		t.Fatal(err)
	}
	for h, v := range map[string]string{"h1": "v2", "h2": "v2", "h3": "v1"} {
		if err := s.EnsureMember("db", h, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrent("db", h, Current{Version: v, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	// The view from before h1 and h2 moved.
	if err := s.writeFleetView("db", FleetView{Versions: map[string]int{"v1": 3}, Online: 3}); err != nil {
		t.Fatal(err)
	}
	straggler := &simHost{name: "h3", store: connect(t, zkc, "/lag")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := straggler.turn(ctx, "db", "v2"); done <- err }()
	testutil.Eventually(t, 10*time.Second, func() error {
		st, v, err := s.TurnStateOf("db", "h3")
		if err != nil {
			return err
		}
		if v.Wait != "not in the head deploy step" || len(st.InTurn) != 0 {
			return fmt.Errorf("h3: %+v", v)
		}
		q, err := s.ReadyQueue("db")
		if err != nil || len(q) != 1 {
			return fmt.Errorf("ready queue %v, %v", q, err)
		}
		return nil
	})
	// The advancer's next look, and nothing else.
	if err := s.writeFleetView("db", FleetView{Versions: map[string]int{"v1": 1, "v2": 2}, Online: 3}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the straggler's turn once the view caught up: %v", err)
	}
}

// rollingFleet is db (quorum 1) on hosts, all online on v1, with v2 staged
// and ordered, in a fresh ZooKeeper.
func rollingFleet(t *testing.T, hosts ...string) *Store {
	t.Helper()
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/h1")
	seed(t, s, parse(t, "[services.db]\nquorum = 1\n"))
	if err := s.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendSteps([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := s.EnsureMember("db", h, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrent("db", h, Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// A halt recorded between the reads behind a decision and the take of the
// turn makes the take fail: the check and the take are one transaction.
func TestIntegration_TakeTurnSeesAHaltRecordedMeanwhile(t *testing.T) {
	s := rollingFleet(t, "a", "b", "c")
	ready, err := s.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.turnState("db", "a")
	if err != nil {
		t.Fatal(err)
	}
	if v := Decide(st); !v.Go {
		t.Fatalf("want a go before the halt: %+v", v)
	}
	if err := s.UpdateControl("db", func(c *Control) { c.Halted = &Failure{Host: "b", Version: "v2", Reason: "test"} }); err != nil {
		t.Fatal(err)
	}
	if err := s.takeTurn("db", "a", ready, Turn{From: "v1", To: "v2"}, st); !errors.Is(err, errControlChanged) {
		t.Fatalf("take after a halt: %v", err)
	}
	if turns, err := s.Turns("db"); err != nil || len(turns) != 0 {
		t.Fatalf("turns %v %v", turns, err)
	}
}

// A connection loss can leave a host's ready node behind while its session
// lives on; the host then joins again. Found by the chaos harness (a
// ZooKeeper quorum loss mid-rollout): the host waited behind its own stale
// node for good.
func TestIntegration_JoinReadyReplacesTheHostsEarlierNode(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/h1")
	seed(t, s, parse(t, "[services.db]\nquorum = 1\n"))
	if err := s.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JoinReady("db", "b", "v2"); err != nil {
		t.Fatal(err)
	}
	stale, err := s.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.ReadyQueue("db")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range q {
		names = append(names, e.Host)
	}
	if strings.Join(names, ",") != "b,a" || path.Base(again) != q[1].Name || path.Base(stale) == q[1].Name {
		t.Errorf("queue %v after joining twice as a: want b then a's second node only (%s, not %s)", q, path.Base(again), path.Base(stale))
	}
}

// A turn on a bad release can still be under way when the operator has
// replaced the release and resumed (two hosts tried it in parallel). Its
// failure must not halt the replacement. Found by the chaos harness.
func TestIntegration_FailureOfAReplacedReleaseDoesNotHalt(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/h1")
	seed(t, s, parse(t, "[services.db]\nquorum = 1\nmax_parallel = 2\n"))
	m := Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}
	if err := s.Stage("db", m, false); err != nil {
		t.Fatal(err)
	}
	fail := func(host, version string) *Failure {
		return &Failure{Host: host, Version: version, Reason: "not healthy", At: time.Now()}
	}
	// The first failure of v2 halts, as always.
	if err := s.FinishTurn("db", "a", fail("a", "v2")); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Control("db"); err != nil || c.Halted == nil {
		t.Fatalf("control after a failure of the staged release: %+v, %v; want halted", c, err)
	}
	// The operator stages v3 over it and resumes.
	m.Version = "v3"
	if err := s.Stage("db", m, true); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateControl("db", func(c *Control) { c.Halted = nil }); err != nil {
		t.Fatal(err)
	}
	// b's turn on v2 ends in failure only now.
	if err := s.FinishTurn("db", "b", fail("b", "v2")); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Control("db"); err != nil || c.Halted != nil {
		t.Errorf("control after a late failure of the replaced v2: %+v, %v; want not halted", c, err)
	}
	// A failure of v3 still halts.
	if err := s.FinishTurn("db", "c", fail("c", "v3")); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Control("db"); err != nil || c.Halted == nil || c.Halted.Host != "c" {
		t.Errorf("control after a failure of v3: %+v, %v; want halted by c", c, err)
	}
}

// A single-instance service upgrades when seeded with quorum 0: its one
// host takes its turn, though the service is fully down meanwhile. With
// quorum 1 the same host waits, and the verdict says why waiting cannot
// help.
func TestIntegration_SingleHostQuorumZeroUpgrades(t *testing.T) {
	zkc := zktest.Standalone(t)
	for _, tc := range []struct {
		quorum string
		wait   string // "" : the turn goes
	}{
		{"0", ""},
		{"1", "waiting for quorum: 1 online of 1 members, quorum 1; it cannot be met while a member upgrades"},
	} {
		t.Run("quorum "+tc.quorum, func(t *testing.T) {
			root := "/single" + tc.quorum
			admin := connect(t, zkc, root)
			seed(t, admin, parse(t, "[services.db]\nquorum = "+tc.quorum+"\n"))
			services, err := admin.Services()
			if err != nil {
				t.Fatal(err)
			}
			if q := services["db"].Quorum; q.Zero() != (tc.quorum == "0") || q.String() != tc.quorum {
				t.Fatalf("db's quorum reads back as %v (zero %v)", q, q.Zero())
			}
			h := &simHost{name: "solo", store: connect(t, zkc, root)}
			if err := h.store.EnsureMember("db", h.name, Member{Joined: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := h.store.SetCurrent("db", h.name, Current{Version: "v1", Since: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := admin.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("d", 64)}, false); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Order([][]string{{"db"}}); err != nil {
				t.Fatal(err)
			}
			st, _, err := admin.TurnStateOf("db", h.name)
			if err != nil {
				t.Fatal(err)
			}
			if v := Decide(st); v.Go != (tc.wait == "") || !strings.HasPrefix(v.Wait, tc.wait) {
				t.Fatalf("verdict for the single host: %+v, want wait %q", v, tc.wait)
			}
			if tc.wait != "" {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := h.turn(ctx, "db", "v2"); err != nil {
				t.Fatalf("the single host's turn: %v", err)
			}
			cur, err := admin.CurrentOf("db")
			if err != nil {
				t.Fatal(err)
			}
			if cur[h.name].Version != "v2" {
				t.Errorf("solo serves %+v after its turn, want v2", cur[h.name])
			}
			if steps, err := admin.Steps(); err != nil || len(steps) != 0 {
				t.Errorf("deploy queue %v (%v) after the only host upgraded, want it empty", steps, err)
			}
		})
	}
}

// A fleet mid-upgrade of dcroll itself: two agents speak protocol 2, one
// still speaks 1, and the root requires 1, then 2. The old agent publishes
// what it speaks, leaves the ready queue it joined before the minimum was
// raised, cannot join again, and says why; the new ones take their turns.
// A new agent queued in the old form (a named node) before the raise
// queues again as a ticket.
func TestIntegration_MixedFleetOnlyAllowedProtocolsTakeTurns(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/mixed")
	admin.protocol = 2
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n"))
	// A data center seeded before protocol 2.
	if err := admin.SetMinProtocol(1); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]*simHost{}
	for name, protocol := range map[string]int{"old": 1, "new1": 2, "new2": 2} {
		h := &simHost{name: name, store: connect(t, zkc, "/mixed")}
		h.store.protocol = protocol
		if err := h.store.RegisterHost(name, Host{Agent: "test", Services: []string{"db"}}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.EnsureMember("db", name, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.SetCurrent("db", name, Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
		hosts[name] = h
	}
	registered, err := admin.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range hosts {
		if registered[name].Protocol != h.store.protocol {
			t.Errorf("/hosts/%s says protocol %d, its agent speaks %d", name, registered[name].Protocol, h.store.protocol)
		}
	}
	if err := admin.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("f", 64)}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Order([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	// The old agent queued before the minimum was raised: at the front it
	// must leave, not hold up the others.
	old := hosts["old"]
	ready, err := old.store.JoinReady("db", "old", "v2")
	if err != nil {
		t.Fatal(err)
	}
	early, err := hosts["new1"].store.JoinReady("db", "new1", "v2")
	if err != nil || isTicket(early) {
		t.Fatalf("new1 queued as %q (%v) under min_protocol 1, want a named node", early, err)
	}
	if err := admin.SetMinProtocol(2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = old.store.AwaitTurn(ctx, "db", "old", ready, Turn{From: "v1", To: "v2", Started: time.Now()})
	if !errors.Is(err, ErrProtocolTooOld) || !strings.Contains(err.Error(), "speaks protocol 1 and /mixed requires 2") {
		t.Fatalf("the old agent at the front: %v; want it refused, saying why", err)
	}
	if err := old.store.LeaveReady(ready); err != nil {
		t.Fatal(err)
	}
	if _, err := old.store.JoinReady("db", "old", "v2"); !errors.Is(err, ErrProtocolTooOld) {
		t.Fatalf("the old agent joins the ready queue again: %v; want it refused", err)
	}
	err = hosts["new1"].store.AwaitTurn(ctx, "db", "new1", early, Turn{From: "v1", To: "v2", Started: time.Now()})
	if !errors.Is(err, ErrLeftQueue) {
		t.Fatalf("new1 at the front of the old form of the queue: %v, want ErrLeftQueue (to queue again as a ticket)", err)
	}
	if err := hosts["new1"].store.LeaveReady(early); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"new1", "new2"} {
		if _, err := hosts[name].turn(ctx, "db", "v2"); err != nil {
			t.Fatalf("%s's turn: %v", name, err)
		}
	}
	cur, err := admin.CurrentOf("db")
	if err != nil {
		t.Fatal(err)
	}
	if cur["new1"].Version != "v2" || cur["new2"].Version != "v2" || cur["old"].Version != "v1" {
		t.Errorf("current %+v: want the new agents on v2 and the old one still on v1", cur)
	}
	if turns, err := admin.Turns("db"); err != nil || len(turns) != 0 {
		t.Errorf("turns %v (%v), want none", turns, err)
	}
	st, _, err := admin.TurnStateOf("db", "old")
	if err != nil {
		t.Fatal(err)
	}
	st.Protocol = 1
	if v := Decide(st); v.Go || !strings.Contains(v.Wait, "speaks protocol 1, the data center requires 2") {
		t.Errorf("verdict for the old agent: %+v", v)
	}
	if err := admin.SetMinProtocol(3); err == nil {
		t.Errorf("a minimum above what this dcroll speaks was accepted")
	}
}
