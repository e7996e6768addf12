package roll

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/state"
	"github.com/dcroll/dcroll/trust"
)

// rollbackFleet seeds db (with policy; default max_parallel 1) and api,
// which depends on it, on hosts that run v1 of both, and stages v1 and then
// v2 of both, so that v1 is kept as the previous release.
func rollbackFleet(t *testing.T, zkc *zktest.Cluster, root, policy string, hosts []*simHost) *Store {
	t.Helper()
	admin := connect(t, zkc, root)
	if policy == "" {
		policy = "max_parallel = 1\n"
	}
	seed(t, admin, parse(t, "[services.db]\nquorum = 2\n"+policy+
		"[services.api]\nquorum = 2\nmax_parallel = 2\ndepends_on = [\"db\"]\n"))
	for _, svc := range []string{"db", "api"} {
		for _, h := range hosts {
			if err := h.store.EnsureMember(svc, h.name, Member{Joined: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := h.store.SetCurrent(svc, h.name, Current{Version: "v1", Since: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		for _, v := range []string{"v1", "v2"} {
			if err := admin.Stage(svc, release(v, v[1:]), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	if prev, err := admin.PreviousRelease("db"); err != nil || prev.Version != "v1" {
		t.Fatalf("after staging v2 over a rolled-out v1, the previous release is %+v (%v), want v1", prev, err)
	}
	return admin
}

// simFleet is n hosts h0, h1... of root, each with its own session.
func simFleet(t *testing.T, zkc *zktest.Cluster, root string, n int) []*simHost {
	t.Helper()
	hosts := make([]*simHost, n)
	for i := range hosts {
		hosts[i] = &simHost{name: fmt.Sprintf("h%d", i), store: connect(t, zkc, root)}
	}
	return hosts
}

// everyHostTurns runs, on every host at once, a turn of each service to
// version, as the agents' per-service loops would.
func everyHostTurns(t *testing.T, hosts []*simHost, version string, services ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(hosts)*len(services))
	for _, h := range hosts {
		for _, svc := range services {
			wg.Go(func() {
				if _, err := h.turn(ctx, svc, version); err != nil {
					errs <- fmt.Errorf("%s %s: %w", h.name, svc, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// versionsOf lists the versions svc's hosts run, by host.
func versionsOf(t *testing.T, s *Store, svc string) map[string]string {
	t.Helper()
	cur, err := s.CurrentOf(svc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for h, c := range cur {
		out[h] = c.Version
	}
	return out
}

// A rollback of db takes api, which depends on it, back first: the reverse
// of the rollout. It goes through the turns: a monitor sees quorum and
// max_parallel kept throughout, and no db host in turn while an api host
// still runs v2 or is in turn.
func TestIntegration_RollbackGoesThroughTheTurnsDependentsFirst(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/rb"
	hosts := simFleet(t, zkc, root, 4)
	admin := rollbackFleet(t, zkc, root, "", hosts)
	if _, err := admin.Order(nil); err != nil {
		t.Fatal(err)
	}
	everyHostTurns(t, hosts, "v2", "db", "api")

	t.Run("refused, nothing written", func(t *testing.T) {
		before := dump(t, admin, root)
		for _, tt := range []struct {
			svc, to string
			want    error
			text    string
		}{
			{"db", "v0", ErrBadRollback, "db v0 is not kept; the release before the staged one is v1"},
			{"nope", "", ErrBadRollback, `service "nope" is not in the catalog`},
		} {
			_, err := admin.Rollback(tt.svc, tt.to, false)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Rollback(%s, %q) = %v, want %v saying %q", tt.svc, tt.to, err, tt.want, tt.text)
			}
		}
		if d := diffTrees(before, dump(t, admin, root)); d != "" {
			t.Errorf("a refused rollback wrote:\n%s", d)
		}
	})

	plan, err := admin.Rollback("db", "v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(plan.Steps); got != "[[api] [db]]" || !slices.Equal(plan.Dependents["db"], []string{"api"}) {
		t.Fatalf("rollback plan steps %s, dependents %v; want api then db", got, plan.Dependents)
	}
	if got, want := plan.Explain(), "api v2 -> v1 then db v2 -> v1"; got != want {
		t.Errorf("Explain() = %q, want %q", got, want)
	}
	if m, err := admin.Manifest("db"); err != nil || m.Version != "v1" || m.RollbackOf != "v2" {
		t.Fatalf("staged after the rollback: %+v (%v), want v1 rolling back v2", m, err)
	}

	monitor := connect(t, zkc, root)
	var stop atomic.Bool
	var violations []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			// db's turns first: api's rollback never undoes itself, so
			// an api host on v2 read after a db turn was on v2 then too.
			dbTurns, _, err1 := monitor.conn.Children(monitor.Tree.turnsDir("db"))
			apiTurns, _, err2 := monitor.conn.Children(monitor.Tree.turnsDir("api"))
			apiCur, err3 := monitor.CurrentOf("api")
			dbCur, err4 := monitor.CurrentOf("db")
			if err := errors.Join(err1, err2, err3, err4); err != nil {
				violations = append(violations, err.Error())
				return
			}
			if len(dbTurns) > 1 || len(apiTurns) > 2 {
				violations = append(violations, fmt.Sprintf("turns db %v api %v: max_parallel exceeded", dbTurns, apiTurns))
			}
			if len(dbCur) < 2 || len(apiCur) < 2 {
				violations = append(violations, fmt.Sprintf("%d db and %d api hosts online: below quorum 2", len(dbCur), len(apiCur)))
			}
			apiBack := len(apiTurns) == 0 && len(apiCur) == len(hosts)
			for _, c := range apiCur {
				apiBack = apiBack && c.Version == "v1"
			}
			if len(dbTurns) > 0 && !apiBack {
				violations = append(violations, fmt.Sprintf("db hosts %v in turn while api is not back: turns %v, current %v", dbTurns, apiTurns, apiCur))
			}
			time.Sleep(2 * time.Millisecond) // the sampling period, not a wait for a condition
		}
	}()
	everyHostTurns(t, hosts, "v1", "db", "api")
	stop.Store(true)
	<-done
	if len(violations) > 0 {
		t.Fatalf("%d violations, first: %s", len(violations), violations[0])
	}
	for _, svc := range []string{"db", "api"} {
		for h, v := range versionsOf(t, admin, svc) {
			if v != "v1" {
				t.Errorf("%s %s runs %s after the rollback", svc, h, v)
			}
		}
	}
	if q := queued(t, admin); len(q) != 0 {
		t.Errorf("deploy queue after the rollback: %v", q)
	}
	if prev, err := admin.PreviousRelease("db"); err != nil || prev.Version != "v1" {
		t.Errorf("the rollback changed the previous release: %+v (%v)", prev, err)
	}
	if _, err := admin.Rollback("db", "", false); !errors.Is(err, ErrBadRollback) {
		t.Errorf("a second rollback of db = %v, want it refused: v1 is staged already", err)
	}
}

// A release ordered with auto-rollback that halts is rolled back by the
// host that recorded the halt: the hosts that took it go back to v1
// through their turns, and the history says why.
func TestIntegration_HaltWithAutoRollbackEndsOnTheOldVersion(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/auto"
	hosts := simFleet(t, zkc, root, 3)
	admin := rollbackFleet(t, zkc, root, "", hosts)
	if err := admin.Unstage("api"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.OrderWith([][]string{{"db"}}, OrderOptions{AutoRollback: true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := hosts[0].turn(ctx, "db", "v2"); err != nil {
		t.Fatal(err)
	}
	// h1's switch fails: it goes back to v1 and the turn ends with the
	// failure.
	bad := hosts[1]
	ready, err := bad.store.JoinReady("db", bad.name, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.store.AwaitTurn(ctx, "db", bad.name, ready, Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := bad.store.FinishTurn("db", bad.name, &Failure{Host: bad.name, Version: "v2", Reason: "not healthy within 5m", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if m, err := admin.Manifest("db"); err != nil || m.Version != "v1" {
		t.Fatalf("after the halt the staged release is %+v (%v), want v1: no automatic rollback", m, err)
	}
	if c, err := admin.Control("db"); err != nil || c.Halted != nil {
		t.Fatalf("after the automatic rollback db's control is %+v (%v), want the halt lifted", c, err)
	}
	if _, err := hosts[0].turn(ctx, "db", "v1"); err != nil {
		t.Fatal(err)
	}
	for h, v := range versionsOf(t, admin, "db") {
		if v != "v1" {
			t.Errorf("db %s runs %s after the automatic rollback", h, v)
		}
	}
	if q := queued(t, admin); len(q) != 0 {
		t.Errorf("deploy queue after the rollback: %v", q)
	}
	events, err := admin.History("db", 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	if i, j := slices.Index(actions, ActRollback), slices.Index(actions, ActHalt); i < 0 || j < 0 || i > j {
		t.Errorf("history of db %v: want a halt, then the rollback", actions)
	} else if e := events[i]; !strings.Contains(e.Detail, "automatic") || !strings.Contains(e.Detail, "not healthy") || e.Outcome != "ok" {
		t.Errorf("rollback event %+v: want it automatic, with the halt's reason", e)
	}
}

// diffTrees lists the paths whose data differs between two dumps.
func diffTrees(before, after map[string]string) string {
	var out []string
	for p, d := range after {
		if b, ok := before[p]; !ok || b != d {
			out = append(out, "changed "+p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, "removed "+p)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// Under [trust] keys a host runs no release older than its own, unless it
// is signed as a rollback of the one it runs: stage signs the staged and
// the previous release so, with the new one's, and the rollback stages the
// previous release with that signature. Without it (releases staged
// unsigned, or before), the rollback keeps the old signatures, and a host
// on the newer release refuses it.
func TestIntegration_RollbackUnderTrustUsesTheRollbackSignature(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/rbtrust"
	hosts := simFleet(t, zkc, root, 2)
	admin := connect(t, zkc, root)
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n"))
	for _, h := range hosts {
		if err := h.store.EnsureMember("db", h.name, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := h.store.SetCurrent("db", h.name, Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := trust.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := []trust.PublicKey{key.Public}
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	sign := func(m Manifest, back ...Manifest) Manifest {
		m.Expires = expires
		m.Signatures = []trust.Signature{key.Sign(m.Release(root, "db"))}
		m.SignRollbacks(key, root, "db", back...)
		return m
	}
	v1 := sign(release("v1", "1"))
	if err := admin.Stage("db", v1, false); err != nil {
		t.Fatal(err)
	}
	v2 := sign(release("v2", "2"), staged(t, admin, "db"))
	if err := admin.Stage("db", v2, false); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Rollback("db", "", false); err != nil {
		t.Fatal(err)
	}
	back := staged(t, admin, "db")
	if back.Version != "v1" || back.Replaces != "v2" || back.RollbackOf != "v2" || len(back.Rollbacks) != 0 {
		t.Fatalf("the rollback staged %+v, want v1 replacing v2", back)
	}
	for _, running := range []string{"v2", "v1"} {
		if err := trust.Check(keys, back.Release(root, "db"), back.Signatures, running, time.Now(), state.CompareVersions); err != nil {
			t.Errorf("a host running %s refuses the rollback: %v", running, err)
		}
	}
	if err := trust.Check(keys, back.Release(root, "db"), back.Signatures, "v3", time.Now(), state.CompareVersions); !errors.Is(err, trust.ErrRefused) {
		t.Errorf("a host running v3 takes a rollback signed to replace v2: %v", err)
	}

	// Staged without rollback signatures: v1's own, which a host on v2
	// refuses as older.
	const root2 = "/rbtrust2"
	admin2 := connect(t, zkc, root2)
	seed(t, admin2, parse(t, "[services.db]\nquorum = 1\n"))
	h := connect(t, zkc, root2)
	if err := h.EnsureMember("db", "h0", Member{Joined: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.SetCurrent("db", "h0", Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Manifest{v1, sign(release("v2", "2"))} {
		m.Expires, m.Signatures = expires, []trust.Signature{key.Sign(Manifest{Version: m.Version, Size: m.Size, SHA256: m.SHA256, Expires: expires}.Release(root2, "db"))}
		if err := admin2.Stage("db", m, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin2.Rollback("db", "", false); err != nil {
		t.Fatal(err)
	}
	back = staged(t, admin2, "db")
	if back.Replaces != "" {
		t.Fatalf("a rollback without rollback signatures staged Replaces %q", back.Replaces)
	}
	if err := trust.Check(keys, back.Release(root2, "db"), back.Signatures, "v1", time.Now(), state.CompareVersions); err != nil {
		t.Errorf("a host still on v1 refuses it: %v", err)
	}
	if err := trust.Check(keys, back.Release(root2, "db"), back.Signatures, "v2", time.Now(), state.CompareVersions); !errors.Is(err, trust.ErrRefused) || !strings.Contains(err.Error(), "older than v2") {
		t.Errorf("a host on v2 takes v1 without a rollback signature: %v", err)
	}
}
