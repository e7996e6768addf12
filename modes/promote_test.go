package modes_test

import (
	"testing"

	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// `order --canary` starts a canary of each service it queues; `promote`
// ends it, and refuses a service without one. A bad size is a usage error.
func TestIntegration_CanaryAndPromote(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/promote"
	store := seedRoot(t, zkc, root, seedChain)
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }
	setMembers(t, store, "cache", "h1", "h2", "h3", "h4", "h5")
	setCurrent(t, store, "cache", "1.0", "h1", "h2", "h3", "h4", "h5")
	stage(t, store, "cache", "2.0")

	wantRun(t, run("order", "--canary", "0", "cache"), 2, `--canary: roll: bad canary: "0"`)
	wantRun(t, run("promote", "cache"), 1, "cache is not in a canary deploy")
	r := run("order", "--canary", "40%", "cache")
	wantRun(t, r, 0, "queued 1 step", "canary: 2 hosts of cache, then a pause until dcroll promote cache")
	t.Logf("dcroll order --canary 40%% cache:\n%s", r.stdout)
	c, err := store.Control("cache")
	if err != nil || c.Canary == nil || c.Canary.Hosts != 2 {
		t.Fatalf("after order --canary 40%% of 5 members, cache's control is %+v (%v), want a canary of 2", c, err)
	}
	// The canary's turns, as the hosts' takes count them.
	if err := store.UpdateControl("cache", func(c *roll.Control) {
		c.Canary.Taken, c.Paused, c.Reason = 2, true, roll.CanaryWait
	}); err != nil {
		t.Fatal(err)
	}
	r = run("promote", "cache")
	wantRun(t, r, 0, "promoted cache: the canary took 2 of 2 turns")
	t.Logf("dcroll promote cache:\n%s", r.stdout)
	if c, err := store.Control("cache"); err != nil || c.Paused || c.Canary != nil {
		t.Errorf("after promote cache's control is %+v (%v)", c, err)
	}
	events, err := store.History("cache", 2)
	if err != nil || len(events) != 2 || events[0].Action != roll.ActPromote || events[1].Action != roll.ActOrder {
		t.Errorf("history of cache %+v (%v), want the promote and the order", events, err)
	}
}
