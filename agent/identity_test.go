package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// held is who holds one ephemeral node, and since when: a node deleted and
// written again by its owner is another node.
type held struct {
	path    string
	owner   int64
	created int64
}

// holding reads who holds each of paths now; each must exist.
func holding(t *testing.T, s *roll.Store, paths ...string) []held {
	t.Helper()
	var out []held
	for _, p := range paths {
		_, stat, err := rolltest.RawOf(t, s).Get(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, held{p, stat.EphemeralOwner, stat.Czxid})
	}
	return out
}

// stillHeld fails the test at once unless each node is still the one
// before read: not deleted, not written again by another session.
func stillHeld(t *testing.T, s *roll.Store, before []held) {
	t.Helper()
	for _, b := range before {
		_, stat, err := rolltest.RawOf(t, s).Get(b.path)
		if err != nil {
			t.Fatalf("%s, held by session %#x, is gone: %v", b.path, b.owner, err)
		}
		if stat.EphemeralOwner != b.owner || stat.Czxid != b.created {
			t.Fatalf("%s was taken over: held by session %#x (created at zxid %d), now by %#x (at %d)",
				b.path, b.owner, b.created, stat.EphemeralOwner, stat.Czxid)
		}
	}
}

// memberMachine is the machine id /members/<svc>/<host> names.
func memberMachine(t *testing.T, s *roll.Store, svc, host string) string {
	t.Helper()
	data, _, err := rolltest.RawOf(t, s).Get(s.Tree.Member(svc, host))
	if err != nil {
		t.Fatalf("membership of %s in %s: %v", host, svc, err)
	}
	var m roll.Member
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m.MachineID
}

// presenceMachine is the machine id /hosts/<host> names, and its session.
func presenceMachine(t *testing.T, s *roll.Store, host string) (string, int64, error) {
	data, stat, err := rolltest.RawOf(t, s).Get(s.Tree.Host(host))
	if err != nil {
		return "", 0, err
	}
	var h roll.Host
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h.MachineID, stat.EphemeralOwner, nil
}

// refused says whether status shows host's name refused to the agent of
// h's machine, held by holder's machine (up or down), and h's log names
// the host and both machines.
func refused(s *roll.Store, host string, h, holder *host, holderUp bool) error {
	st, err := s.Status()
	if err != nil {
		return err
	}
	var got []roll.Refusal
	for _, hs := range st.Hosts {
		if hs.Name == host {
			got = hs.Refused
		}
	}
	found := false
	for _, r := range got {
		if r.Machine == h.id && r.Holder == holder.id && r.HolderUp == holderUp {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("status shows no refusal of %s to machine %s held by %s (up: %v): %+v", host, h.id, holder.id, holderUp, got)
	}
	sum, err := s.Summary()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(sum.Refused, func(r roll.Refusal) bool { return r.Host == host && r.Machine == h.id }) {
		return fmt.Errorf("the summary shows no refusal of %s to machine %s: %+v", host, h.id, sum.Refused)
	}
	log := h.log()
	for _, want := range []string{"refus", host, "machine " + h.id, "machine " + holder.id} {
		if !strings.Contains(log, want) {
			return fmt.Errorf("the refused agent's log does not say %q", want)
		}
	}
	return nil
}

// Two machines come up with one host name (a cloned disk image): the second
// is refused, says why naming the host and both machines, and touches none
// of the first's nodes, which keeps its turn mid-upgrade.
func TestIntegration_DuplicateHostIsRefused(t *testing.T) {
	// min_healthy of an hour: the first host holds its turn throughout.
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 0, 1, "1h", "2h"), []string{"web"}, 1)
	f.startAll()
	first := f.hosts[0]
	f.stage("web", "v2", false)
	f.order([]string{"web"})
	testutil.Eventually(t, time.Minute, func() error {
		turns, err := f.admin.Turns("web")
		if err != nil {
			return err
		}
		if _, ok := turns[first.name]; !ok {
			return fmt.Errorf("%s holds no turn: %v", first.name, turns)
		}
		if v, err := first.serving(); err != nil || v != "v2" {
			return fmt.Errorf("%s not switched yet: %q %v", first.name, v, err)
		}
		return nil
	})
	nodes := holding(t, f.admin, f.admin.Tree.Host(first.name), f.admin.Tree.Turn("web", first.name))

	clone := newFleetHost(t, first.name, f.zkc.ConnString(), "/dc", []string{"web"}, "v1")
	clone.start()
	testutil.Eventually(t, time.Minute, func() error {
		stillHeld(t, f.admin, nodes)
		return refused(f.admin, first.name, clone, first, true)
	})
	stillHeld(t, f.admin, nodes)
	if m := memberMachine(t, f.admin, "web", first.name); m != first.id {
		t.Errorf("the membership names machine %q, want the first's %s", m, first.id)
	}
	if m, _, err := presenceMachine(t, f.admin, first.name); err != nil || m != first.id {
		t.Errorf("/hosts/%s names machine %q (%v), want the first's %s", first.name, m, err, first.id)
	}
	// The clone took no part in the rollout: not queued, no turn.
	if q, err := f.admin.ReadyQueue("web"); err != nil || len(q) != 0 {
		t.Errorf("ready queue %v %v: want it empty", q, err)
	}
	if turns, err := f.admin.Turns("web"); err != nil || len(turns) != 1 {
		t.Errorf("turns %v %v: want the first's alone", turns, err)
	}
	// Refused the name, it is out of ZooKeeper, not out of service.
	testutil.Eventually(t, 30*time.Second, func() error {
		if v, err := clone.serving(); err != nil || v != "v1" {
			return fmt.Errorf("the clone's own service: %q %v", v, err)
		}
		return nil
	})
	// The first still finishes its turn by the rules: nothing of it moved.
	if v, err := first.serving(); err != nil || v != "v2" {
		t.Errorf("the first's service: %q %v", v, err)
	}
}

// A machine replaces a dead one under its name: refused while the old
// machine's memberships name it, it takes the name with --replace; the old
// machine, back, is refused in turn, and --replace never takes the name
// from a machine whose agent is up.
func TestIntegration_ReplaceTakesTheNameOfADeadMachine(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/dc")
	seed(t, s)
	old := newHost(t, "h1", zkc.ConnString(), "/dc", "v1")
	old.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		_, _, err := currentOf(t, s, "h1")
		return err
	})
	old.signal(syscall.SIGTERM)
	if err := old.wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := rolltest.RawOf(t, s).Sync(s.Tree.Host("h1")); err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatal(err)
	}
	if err := absent(t, s, s.Tree.Host("h1")); err != nil {
		t.Fatalf("the old machine's agent stopped: %v", err)
	}

	// Without --replace: refused, and it writes nothing under the name.
	repl := newHost(t, "h1", zkc.ConnString(), "/dc", "v1")
	repl.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := absent(t, s, s.Tree.Host("h1")); err != nil {
			t.Fatalf("registered without --replace: %v", err)
		}
		return refused(s, "h1", repl, old, false)
	})
	if !strings.Contains(repl.log(), "--replace") {
		t.Error("the refusal does not say how to replace the machine")
	}
	if m := memberMachine(t, s, "web", "h1"); m != old.id {
		t.Fatalf("the membership names %q, want the old machine %s", m, old.id)
	}
	repl.signal(syscall.SIGTERM)
	if err := repl.wait(); err != nil {
		t.Fatal(err)
	}

	// With --replace the name is the replacement's.
	repl.start("--replace")
	testutil.Eventually(t, 30*time.Second, func() error {
		m, _, err := presenceMachine(t, s, "h1")
		if err != nil || m != repl.id {
			return fmt.Errorf("/hosts/h1 names %q (%v), want the replacement %s", m, err, repl.id)
		}
		if m := memberMachine(t, s, "web", "h1"); m != repl.id {
			return fmt.Errorf("the membership names %q, want %s", m, repl.id)
		}
		if _, _, err := currentOf(t, s, "h1"); err != nil {
			return err
		}
		st, err := s.Status()
		if err != nil {
			return err
		}
		for _, h := range st.Hosts {
			if len(h.Refused) > 0 {
				return fmt.Errorf("status still shows refusals: %+v", h.Refused)
			}
		}
		return nil
	})
	nodes := holding(t, s, s.Tree.Host("h1"), s.Tree.Current("web", "h1"))

	// The old machine back, even with --replace, is refused: the name's
	// holder is up.
	old.start("--replace")
	testutil.Eventually(t, 30*time.Second, func() error {
		stillHeld(t, s, nodes)
		return refused(s, "h1", old, repl, true)
	})
	stillHeld(t, s, nodes)
	if m := memberMachine(t, s, "web", "h1"); m != repl.id {
		t.Errorf("the membership names %q, want the replacement %s", m, repl.id)
	}
}

// An agent restarted before its old session expired (kill -9, then a quick
// restart) clears the old session's nodes as soon as it connects: its
// turn, its ready node, its /current, the advancer's election, not after
// the session timeout. The old session is played by the test's own, which
// writes what the agent of this machine wrote and stays alive throughout:
// what goes, the new agent deleted.
func TestIntegration_RestartClearsTheEarlierSessionsNodesAtConnect(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/dc")
	rolltest.Seed(t, admin, "[services.web]\nquorum = 0\n[services.db]\nquorum = 0\n")
	h := newFleetHost(t, "h1", zkc.ConnString(), "/dc", []string{"db", "web"}, "v1")

	earlier := connect(t, zkc, "/dc")
	session := earlier.Session()
	if _, err := earlier.Register(roll.Claim{Host: "h1", Machine: h.id, Services: []string{"db", "web"}, Joined: time.Now()},
		roll.Host{Agent: "earlier", Services: []string{"db", "web"}}); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"db", "web"} {
		if err := earlier.SetCurrent(svc, "h1", roll.Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
		m := roll.Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}
		if err := admin.Stage(svc, m, false); err != nil {
			t.Fatal(err)
		}
	}
	// web: mid-switch, holding its turn; db: queued.
	if err := admin.AppendSteps([][]string{{"web"}}); err != nil {
		t.Fatal(err)
	}
	ready, err := earlier.JoinReady("web", "h1", "v2")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := earlier.AwaitTurn(ctx, "web", "h1", ready, roll.Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	queued, err := earlier.JoinReady("db", "h1", "v2")
	if err != nil {
		t.Fatal(err)
	}
	advCtx, stopAdvancing := context.WithCancel(context.Background())
	advancing := make(chan error, 1)
	go func() { advancing <- earlier.RunAdvancer(advCtx, "h1") }()
	t.Cleanup(func() { stopAdvancing(); <-advancing })
	advancer := admin.Tree.Roll("_advancer")
	testutil.Eventually(t, 10*time.Second, func() error {
		_, stat, err := rolltest.RawOf(t, admin).Get(advancer)
		if err != nil || stat.EphemeralOwner != session.ID {
			return fmt.Errorf("the earlier session is not the advancer yet: %v", err)
		}
		return nil
	})
	stale := []string{
		admin.Tree.Host("h1"), admin.Tree.Current("web", "h1"), admin.Tree.Current("db", "h1"),
		admin.Tree.Turn("web", "h1"), queued, advancer,
	}
	for _, b := range holding(t, admin, stale...) {
		if b.owner != session.ID {
			t.Fatalf("%s is held by %#x, not the earlier session %#x", b.path, b.owner, session.ID)
		}
	}

	h.start()
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, p := range stale {
			_, stat, err := rolltest.RawOf(t, admin).Get(p)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				return err
			}
			if stat.EphemeralOwner == session.ID {
				return fmt.Errorf("%s is still held by the earlier session", p)
			}
		}
		m, owner, err := presenceMachine(t, admin, "h1")
		if err != nil || m != h.id || owner == session.ID {
			return fmt.Errorf("/hosts/h1: machine %q, session %#x, %v: want the restarted agent's", m, owner, err)
		}
		return nil
	})
	// The earlier session lives on: its nodes went by the agent's hand,
	// not by an expiry.
	if now := earlier.Session(); !now.Up || now.ID != session.ID {
		t.Fatalf("the earlier session %#x ended (now %+v): the test proves nothing", session.ID, now)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(h.log(), "cleared the nodes of this machine's earlier session") {
			return errors.New("the agent does not log that it cleared the earlier session's nodes")
		}
		return nil
	})
}
