package modes_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

const seedWindows = `
[services.db]
quorum = 2
windows = ["Mon-Fri 09:00-17:00 Europe/Berlin"]
[services.api]
depends_on = ["db"]
quorum = 1
auto_rollback = true
`

// `order --now` says which windows it goes outside of, and
// `order --auto-rollback` what it does; both are carried by the steps.
func TestIntegration_OrderNowAndAutoRollback(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/orderopts"
	store := seedRoot(t, zkc, root, seedWindows)
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }
	for _, svc := range []string{"db", "api"} {
		setMembers(t, store, svc, "h1", "h2", "h3")
		setCurrent(t, store, svc, "1.0", "h1", "h2", "h3")
		stage(t, store, svc, "2.0")
	}
	r := run("order", "--now", "--auto-rollback", "db")
	wantRun(t, r, 0, "queued 1 step",
		"auto-rollback: a release of this order that halts goes back by itself to the release before it",
		`now: turns start outside the maintenance windows too, for this deploy only: db (Mon-Fri 09:00-17:00 Europe/Berlin)`)
	t.Logf("dcroll order --now --auto-rollback db:\n%s", r.stdout)
	r = run("order", "--now", "api")
	wantRun(t, r, 0, "now: no service of this order has maintenance windows")
	t.Logf("dcroll order --now api:\n%s", r.stdout)
	steps, err := store.Steps()
	if err != nil || len(steps) != 2 {
		t.Fatalf("queue %+v (%v), want db then api", steps, err)
	}
	if st := steps[0].Step; !st.Now || !st.AutoRollback {
		t.Errorf("db's step %+v, want now and auto_rollback", st)
	}
	if st := steps[1].Step; !st.Now || st.AutoRollback {
		t.Errorf("api's step %+v, want now alone (its policy asks for auto-rollback, not the step)", st)
	}
	events, err := store.History("db", 1)
	if err != nil || len(events) != 1 || events[0].Action != roll.ActOrder || events[0].Detail != "steps: db, auto-rollback, now (outside the maintenance windows)" {
		t.Errorf("history of db %+v (%v)", events, err)
	}
}

// `order --canary` says when a service's canary_hold ends the pause.
func TestIntegration_OrderCanaryWithCanaryHold(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/canaryhold"
	store := seedRoot(t, zkc, root, "[services.web]\nquorum = 1\ncanary_hold = \"15m\"\n")
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }
	setMembers(t, store, "web", "h1", "h2", "h3")
	setCurrent(t, store, "web", "1.0", "h1", "h2", "h3")
	stage(t, store, "web", "2.0")
	r := run("order", "--canary", "1", "web")
	wantRun(t, r, 0, "canary: 1 host of web, then a pause until dcroll promote web, or until they have been healthy for 15m0s (canary_hold)")
	t.Logf("dcroll order --canary 1 web:\n%s", r.stdout)
	// A bad canary_hold is refused by seed, and nothing changes.
	bad := writeFile(t, "bad.toml", "[services.web]\nquorum = 1\ncanary_hold = \"soon\"\n")
	r = dcroll(t, seedArgs(t, zkc, root, bad)...)
	if r.code == 0 || !strings.Contains(r.stderr+r.stdout, `canary_hold "soon": want a number and a unit`) {
		t.Errorf("seed with canary_hold = \"soon\": exit %d:\n%s", r.code, r)
	}
	services, err := store.Services()
	if err != nil || time.Duration(services["web"].CanaryHold) != 15*time.Minute {
		t.Errorf("after a refused seed web's canary_hold is %v (%v), want 15m", services["web"].CanaryHold, err)
	}
}
