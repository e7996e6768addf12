package modes_test

import (
	"reflect"
	"testing"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// `rollback db` takes api, which depends on db, back first and says so;
// the rollback heads the deploy queue and the history records it. A
// service without an earlier release is refused, and nothing is written.
func TestIntegration_Rollback(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/rollback"
	store := seedRoot(t, zkc, root, seedChain)
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }
	for _, svc := range []string{"db", "api", "cache"} {
		setMembers(t, store, svc, "h1", "h2", "h3")
		setCurrent(t, store, svc, "1.0", "h1", "h2", "h3")
	}
	stage(t, store, "cache", "1.1") // its first release: no earlier one kept
	for _, svc := range []string{"db", "api"} {
		stage(t, store, svc, "1.0")
		stage(t, store, svc, "2.0") // 1.0 ran everywhere: kept
	}
	wantRun(t, run("order", "--auto-rollback", "db", "api"), 0, "queued 2 steps")

	before := dump(t, rolltest.RawOf(t, store), root)
	wantRun(t, run("rollback", "cache"), 1, "dcroll rollback: roll: no earlier release kept for cache; stage the release to go back to")
	wantRun(t, run("rollback", "db", "--to", "0.9"), 1, "db 0.9 is not kept; the release before the staged one is 1.0")
	if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
		t.Errorf("a refused rollback changed the tree:\n%s", d)
	}
	wantRun(t, run("rollback"), 2, "want exactly one SERVICE")

	r := run("rollback", "db", "--to", "1.0")
	wantRun(t, r, 0, "rolling back api: 2.0 -> 1.0\nrolling back db: 2.0 -> 1.0\n",
		"api depends on db: api first, then db (the reverse of the rollout; --only takes back db alone)",
		"1. api  (rolling)", "2. db")
	t.Logf("dcroll rollback db:\n%s", r.stdout)
	if got, want := stepsOf(t, store), [][]string{{"api"}, {"db"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("queue %q, want %q", got, want)
	}
	events, err := store.History("db", 1)
	if err != nil || len(events) != 1 || events[0].Action != roll.ActRollback || events[0].Detail != "api 2.0 -> 1.0 then db 2.0 -> 1.0" {
		t.Errorf("newest event about db: %+v (%v), want the rollback", events, err)
	}
}
