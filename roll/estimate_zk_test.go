package roll

import (
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
)

// The summary says how far the rolling step is: its hosts on the staged
// release, since when it rolls (the history's head), and the time left at
// that pace; the dry run's estimate counts the rounds and measures one
// from the history.
func TestIntegration_ProgressAndEstimate(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/progress"
	hosts := simFleet(t, zkc, root, 4)
	admin := rollbackFleet(t, zkc, root, "max_parallel = 2\n", hosts)
	if err := admin.Unstage("api"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Record(HistoryEvent{Action: ActStepFinished, Services: []string{"db"}, Took: Duration(time.Minute), Turns: 4, MaxParallel: 2}); err != nil {
		t.Fatal(err)
	}
	est, err := admin.EstimateSteps([][]string{{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	// Quorum 2 of 4 leaves room for 2 at once: 2 rounds of 30s.
	if e := est[0]; e.Turns != 4 || e.Parallel != 2 || e.Rounds != 2 || !e.Measured || time.Duration(e.Round) != 30*time.Second || time.Duration(e.Estimate) != time.Minute {
		t.Errorf("estimate %+v, want 4 turns, 2 at a time, 2 rounds of a measured 30s", e)
	}
	if _, err := admin.Order([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	if err := hosts[0].store.SetCurrent("db", "h0", Current{Version: "v2", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	sum, err := admin.Summary()
	if err != nil {
		t.Fatal(err)
	}
	p := sum.Deploy.Progress
	if p == nil || p.Done != 1 || p.Online != 4 || p.Started.IsZero() || time.Since(p.Started) > time.Minute {
		t.Fatalf("progress %+v, want 1 of 4 hosts done and the step's start", p)
	}
}
