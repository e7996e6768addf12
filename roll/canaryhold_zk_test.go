package roll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

func TestCanaryHoldIsValidated(t *testing.T) {
	c := parse(t, "[services.db]\nquorum = 1\ncanary_hold = \"90s\"\n")
	if got := time.Duration(c["db"].CanaryHold); got != 90*time.Second {
		t.Errorf("canary_hold 90s read as %s", got)
	}
	for bad, want := range map[string]string{
		`"-5s"`:         "canary_hold -5s: negative",
		`"ten seconds"`: `canary_hold "ten seconds": want a number and a unit`,
		`"200h"`:        "canary_hold 200h0m0s: longer than 168h0m0s",
		`30`:            `canary_hold 30: want a duration in quotes`,
	} {
		_, err := ParseCatalog("seed.toml", strings.NewReader("[services.db]\nquorum = 1\ncanary_hold = "+bad+"\n"))
		if !errors.Is(err, ErrBadCatalog) || !strings.Contains(err.Error(), want) {
			t.Errorf("canary_hold = %s: err = %v, want ErrBadCatalog saying %q", bad, err, want)
		}
	}
}

// canaryPaused orders a canary of one host of db and runs the hosts'
// turns; it returns once the canary's turn is done and db is paused for
// promote, with the hosts' outcomes to come.
func canaryPaused(t *testing.T, ctx context.Context, admin *Store, hosts []*simHost) <-chan error {
	t.Helper()
	if err := admin.Unstage("api"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.OrderWith([][]string{{"db"}}, OrderOptions{CanaryHosts: 1}); err != nil {
		t.Fatal(err)
	}
	results := startTurns(ctx, hosts, "v2")
	testutil.Eventually(t, 30*time.Second, func() error {
		c, err := admin.Control("db")
		if err != nil {
			return err
		}
		turns, err := admin.Turns("db")
		if err != nil {
			return err
		}
		if c.Reason != CanaryWait || len(turns) > 0 || countOn(t, admin, "v2") != 1 {
			return fmt.Errorf("control %+v, %d in turn: the canary has not finished", c, len(turns))
		}
		return nil
	})
	return results
}

// With canary_hold, the canary's pause ends by itself: the elected
// advancer promotes it once the canary has been healthy that long, and
// the rest of the hosts roll. The advancer elected first dies during the
// hold: the next one holds the canary again and promotes it, once.
func TestIntegration_CanaryHoldPromotesByItself(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/canaryhold"
	hosts := simFleet(t, zkc, root, 4)
	admin := rollbackFleet(t, zkc, root, "max_parallel = 2\ncanary_hold = \"2s\"\n", hosts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Two hosts take part in the election, each with a session of its own
	// (the one that dies takes no turn).
	candidates := map[string]*Store{"a1": connect(t, zkc, root), "a2": connect(t, zkc, root)}
	done := make(chan error, 2*len(candidates))
	for name, s := range candidates {
		go func() { done <- s.RunAdvancer(ctx, name) }()
		go func() { done <- s.RunCanaryHold(ctx) }()
	}
	results := canaryPaused(t, ctx, admin, hosts)

	leader := ""
	testutil.Eventually(t, 30*time.Second, func() error {
		data, _, err := admin.conn.Get(admin.Tree.advancerPath())
		leader = string(data)
		return err
	})
	candidates[leader].Close()

	for err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countOn(t, admin, "v2"); n != len(hosts) {
		t.Errorf("%d hosts on v2 after the canary_hold, want all %d", n, len(hosts))
	}
	if c, err := admin.Control("db"); err != nil || c.Paused || c.Canary != nil {
		t.Errorf("after canary_hold db's control is %+v (%v)", c, err)
	}
	events, err := admin.History("db", 0)
	if err != nil {
		t.Fatal(err)
	}
	promotes := 0
	for _, e := range events {
		if e.Action == ActPromote {
			promotes++
			if !strings.HasPrefix(e.Detail, AutoPromoteDetail) || !strings.Contains(e.Detail, "1 of 1 hosts healthy for 2s") {
				t.Errorf("the promote's history detail is %q", e.Detail)
			}
		}
	}
	if promotes != 1 {
		t.Errorf("%d promotes in the history, want 1", promotes)
	}
	cancel()
	for range 2 * len(candidates) {
		<-done
	}
}

// The hold is judged on the canaries' health, and its end is a write over
// the control's version: a canary that leaves /current (its health checks
// fail) stops the hold, and a change of the control meanwhile (a pause, a
// halt, a rollback) wins over the promote. The clock is the test's.
func TestIntegration_CanaryHoldNeedsHealthyCanariesAndAnUnchangedControl(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/canaryhold2"
	hosts := simFleet(t, zkc, root, 3)
	admin := rollbackFleet(t, zkc, root, "canary_hold = \"30s\"\n", hosts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := canaryPaused(t, ctx, admin, hosts)
	canary := ""
	for h, v := range versionsOf(t, admin, "db") {
		if v == "v2" {
			canary = h
		}
	}
	paused := func() bool {
		t.Helper()
		c, err := admin.Control("db")
		if err != nil {
			t.Fatal(err)
		}
		return c.Paused && c.Reason == CanaryWait && c.Canary != nil
	}

	held := map[string]heldCanary{}
	t0 := time.Now()
	// The canary fails its health checks: out of /current, no hold.
	if err := admin.ClearCurrent("db", canary); err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{t0, t0.Add(time.Hour)} {
		if next, _, err := admin.holdCanaries(held, now); err != nil || next != 0 {
			t.Fatalf("holdCanaries with the canary unhealthy = %s, %v; want no hold", next, err)
		}
	}
	if !paused() {
		t.Fatal("promoted with the canary out of /current")
	}
	// Healthy again: the hold starts now, and ends 30 s on.
	if err := admin.SetCurrent("db", canary, Current{Version: "v2", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(2 * time.Hour)
	if next, _, err := admin.holdCanaries(held, t1); err != nil || next != 30*time.Second {
		t.Fatalf("holdCanaries as the canary is back = %s, %v; want 30s to go", next, err)
	}
	if next, _, err := admin.holdCanaries(held, t1.Add(29*time.Second)); err != nil || next != time.Second || !paused() {
		t.Fatalf("holdCanaries 29 s on = %s, %v (paused %t); want 1s to go", next, err, paused())
	}
	// Someone writes the control after the hold began: the promote over
	// the version the hold began with fails, and writes nothing.
	c, stat, err := func() (Control, int32, error) {
		var c Control
		stat, err := admin.getOptional(admin.Tree.Roll("db"), &c)
		return c, stat.Version, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.UpdateControl("db", func(c *Control) { c.Halted = &Failure{Host: canary, Version: "v2", Reason: "test"} }); err != nil {
		t.Fatal(err)
	}
	if ok, err := admin.promoteHeld("db", c, stat, 30*time.Second); ok || err != nil {
		t.Fatalf("promoteHeld over an old version = %t, %v; want refused", ok, err)
	}
	if !paused() {
		t.Fatal("a promote over an old version of the control was written")
	}
	// Halted: no hold, however long.
	if next, _, err := admin.holdCanaries(held, t1.Add(time.Hour)); err != nil || next != 0 || !paused() {
		t.Fatalf("holdCanaries with db halted = %s, %v (paused %t); want no hold", next, err, paused())
	}
	// The halt lifted (the pause stays): the hold starts again, and ends.
	if err := admin.UpdateControl("db", func(c *Control) { c.Halted = nil }); err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(2 * time.Hour)
	if next, _, err := admin.holdCanaries(held, t2); err != nil || next != 30*time.Second {
		t.Fatalf("holdCanaries after the halt = %s, %v; want 30s to go", next, err)
	}
	if _, _, err := admin.holdCanaries(held, t2.Add(30*time.Second)); err != nil || paused() {
		t.Fatalf("holdCanaries 30 s on: %v, paused %t; want promoted", err, paused())
	}
	for err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countOn(t, admin, "v2"); n != len(hosts) {
		t.Errorf("%d hosts on v2 after the promote, want all %d", n, len(hosts))
	}
}
