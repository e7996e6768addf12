package roll

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/dcroll/dcroll/internal/zktest"
)

// The history is a ring: two writers at once each get their own slots, it
// never holds more than HistoryKeep events, the newest come first, and an
// event costs the same requests with a full ring as with an empty one.
func TestIntegration_HistoryKeepsTheLastEventsAtAConstantCost(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/hist")
	seed(t, admin, parse(t, "[services.db]\nquorum = 0\n[services.api]\nquorum = 0\n"))
	if err := admin.Record(HistoryEvent{Action: ActPause, Services: []string{"db"}}); err != nil {
		t.Fatal(err) // creates the head
	}
	before := admin.Ops()
	if err := admin.Record(HistoryEvent{Action: ActPause, Services: []string{"db"}}); err != nil {
		t.Fatal(err)
	}
	emptyCost := admin.Ops() - before
	if emptyCost != 2 {
		t.Errorf("an event cost %d requests, want 2: a read of the head and one transaction", emptyCost)
	}

	writers := []*Store{admin, connect(t, zkc, "/hist")}
	const each = HistoryKeep/2 + 5
	var wg sync.WaitGroup
	errs := make([]error, len(writers))
	for i, w := range writers {
		svc := []string{"db", "api"}[i]
		wg.Go(func() {
			for range each {
				if err := w.Record(HistoryEvent{Action: ActResume, Services: []string{svc}}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	before = admin.Ops()
	if err := admin.Record(HistoryEvent{Action: ActAbort, Detail: strings.Repeat("x", 10*MaxEventDetail)}); err != nil {
		t.Fatal(err)
	}
	if cost := admin.Ops() - before; cost != emptyCost {
		t.Errorf("an event cost %d requests with a full ring, %d with an empty one", cost, emptyCost)
	}

	total := int64(2 + 2*each + 1)
	slots, _, err := admin.conn.Children(admin.Tree.History())
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != HistoryKeep {
		t.Errorf("the history holds %d nodes, want %d", len(slots), HistoryKeep)
	}
	events, err := admin.History("", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != HistoryKeep {
		t.Fatalf("History returned %d events, want %d", len(events), HistoryKeep)
	}
	for i, e := range events {
		if want := total - int64(i); e.Seq != want {
			t.Fatalf("event %d is #%d, want #%d: not newest first, or a slot was lost", i, e.Seq, want)
		}
	}
	if e := events[0]; e.Action != ActAbort || len(e.Detail) > MaxEventDetail || e.By == "" || e.Outcome != "ok" {
		t.Errorf("newest event = %+v; want the abort, its detail cut to %d bytes, an author and outcome ok", e, MaxEventDetail)
	}
	dbOnly, err := admin.History("db", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(dbOnly) != 5 {
		t.Fatalf("History(db, 5) gave %d events", len(dbOnly))
	}
	for _, e := range dbOnly {
		if !e.Concerns("db") {
			t.Errorf("History(db) gave %+v", e)
		}
	}
}

// A deploy writes its own events: a step starts when it heads the queue,
// finishes (with how long it took) when it leaves it, and a failed switch
// records the halt with its reason.
func TestIntegration_HistoryRecordsStepsAndHalts(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := stagedDB(t, zkc, "/steps")
	if _, err := admin.Order(nil); err != nil {
		t.Fatal(err)
	}
	if err := admin.FinishTurn("db", "h1", &Failure{Host: "h1", Version: "v2", Reason: "health check failed"}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Unstage("db"); err != nil { // db's step is done
		t.Fatal(err)
	}
	if _, err := admin.AdvanceSteps(); err != nil {
		t.Fatal(err)
	}
	events, err := admin.History("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Action+" "+strings.Join(e.Services, ","))
	}
	want := []string{"step-started api", "step-finished db", "halt db", "step-started db"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("history = %q, want %q", got, want)
	}
	if finished := events[1]; finished.Took <= 0 || finished.Turns != 0 || finished.MaxParallel != 1 {
		t.Errorf("step-finished = %+v; want a duration and max_parallel 1", finished)
	}
	if halt := events[2]; halt.Version != "v2" || !strings.Contains(halt.Detail, "health check failed") || halt.Outcome != "halted" {
		t.Errorf("halt = %+v; want v2 and the reason", halt)
	}
	head, err := admin.HistoryHead()
	if err != nil {
		t.Fatal(err)
	}
	if steps, _ := admin.Steps(); len(steps) != 1 || head.Step != steps[0].Name || head.StepStarted.IsZero() {
		t.Errorf("history head = %+v, queue = %v: want the running step and its start", head, steps)
	}
	// Recording the start again is a no-op: the head names the step.
	if err := admin.noteStepStarted(); err != nil {
		t.Fatal(err)
	}
	if again, _ := admin.History("", 0); len(again) != len(events) {
		t.Errorf("a second start of the same step was recorded: %d events, want %d", len(again), len(events))
	}
}
