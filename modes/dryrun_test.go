package modes_test

import (
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// `order --dry-run` prints the steps, each service's turns and rounds, and
// an estimate from the measured rounds of past steps (the history) or, for
// a service without any, from min_healthy; it writes nothing.
func TestIntegration_OrderDryRun(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/dryrun"
	store := seedRoot(t, zkc, root, seedChain)
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }
	for _, svc := range []string{"db", "api"} {
		setMembers(t, store, svc, "h1", "h2", "h3")
		setCurrent(t, store, svc, "1.0", "h1", "h2", "h3")
		stage(t, store, svc, "2.0")
	}
	// A finished step of db: three turns, one at a time, in a minute.
	if err := store.Record(roll.HistoryEvent{Action: roll.ActStepFinished, Services: []string{"db"},
		Took: roll.Duration(time.Minute), Turns: 3, MaxParallel: 1}); err != nil {
		t.Fatal(err)
	}
	before := dump(t, rolltest.RawOf(t, store), root)
	r := run("order", "--dry-run", "--auto")
	wantRun(t, r, 0, "dry run: nothing is queued\nstep 1: db\n",
		"db: 3 of 3 members take a turn, 1 at a time (max_parallel 1, quorum 2): 3 rounds of ~20s (measured: the median of its last finished steps): ~1m0s",
		"step 2: api\n",
		"api: 3 of 3 members take a turn, 1 at a time (max_parallel 1, quorum 1): 3 rounds of ~10s (min_healthy, as no finished step of it is kept in the history): ~30s",
		"estimated: ~1m30s in all")
	t.Logf("dcroll order --dry-run --auto:\n%s", r.stdout)
	if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
		t.Errorf("a dry run wrote:\n%s", d)
	}
	wantRun(t, run("order", "--dry-run", "api", "db"), 1, "bad deploy order")
}
