package modes_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// The operator's commands write the history, a refused one does not, and
// `history` shows it newest first, for one service or all, as text and
// JSON.
func TestIntegration_History(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/history"
	store := seedRoot(t, zkc, root, seedChain)
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }

	stage(t, store, "db", "2.0")
	stage(t, store, "api", "2.0")
	wantRun(t, run("order", "db", "api"), 0, "queued 2 steps")
	wantRun(t, run("order", "api", "db"), 1, "bad deploy order") // refused: not recorded
	wantRun(t, run("pause", "api"), 0, "paused api")
	wantRun(t, run("resume"), 0, "resumed api")
	wantRun(t, run("abort"), 0, "cleared the deploy queue")

	r := run("history")
	wantRun(t, r, 0, "WHO", "ACTION")
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		actions = append(actions, strings.Fields(line)[4])
	}
	want := []string{"abort", "resume", "pause", "order", "step-started", "seed"}
	if strings.Join(actions, " ") != strings.Join(want, " ") {
		t.Errorf("history actions %q, want %q:\n%s", actions, want, r.stdout)
	}
	if !strings.Contains(r.stdout, "steps: db then api") || !strings.Contains(r.stdout, "@") {
		t.Errorf("history lacks the order's steps or its author:\n%s", r.stdout)
	}
	t.Logf("dcroll history:\n%s", r.stdout)

	r = run("history", "api", "--json", "--limit", "2")
	wantRun(t, r, 0)
	var events []roll.HistoryEvent
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil {
		t.Fatalf("history --json: %v\n%s", err, r.stdout)
	}
	if len(events) != 2 || events[0].Action != roll.ActAbort || events[1].Action != roll.ActResume {
		t.Errorf("history api --limit 2 = %+v, want the abort and the resume", events)
	}
	wantRun(t, run("history", "nope"), 1, `service "nope" is not in the catalog`)
	wantRun(t, run("history", "a", "b"), 2, "want at most one SERVICE")
}
