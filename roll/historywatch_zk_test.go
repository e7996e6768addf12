package roll

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
)

// A HistoryWatch reads the head and only the events written since its last
// Read, at most those it keeps, and nothing at all while the history does
// not change; what it shows is what History reads.
func TestIntegration_HistoryWatchReadsOnlyNewEvents(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/histw")
	seed(t, admin, parse(t, "[services.db]\nquorum = 0\n"))
	reader := connect(t, zkc, "/histw")
	w := reader.WatchHistory(5)

	// cost is what Read costs in requests, and what it returns.
	read := func() ([]HistoryEvent, <-chan struct{}, int64) {
		t.Helper()
		before := reader.Ops()
		events, changed, err := w.Read()
		if err != nil {
			t.Fatal(err)
		}
		if changed == nil {
			t.Fatal("Read returned no channel to wait on")
		}
		return events, changed, reader.Ops() - before
	}
	record := func(n int) {
		t.Helper()
		for range n {
			if err := admin.Record(HistoryEvent{Action: ActPause, Services: []string{"db"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	fired := func(ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("the history changed and the watch did not fire")
		}
	}
	same := func(got []HistoryEvent, want int) {
		t.Helper()
		all, err := admin.History("", want)
		if err != nil {
			t.Fatal(err)
		}
		seqs := func(es []HistoryEvent) (out []int64) {
			for _, e := range es {
				out = append(out, e.Seq)
			}
			return out
		}
		if !slices.Equal(seqs(got), seqs(all)) || len(got) != want {
			t.Errorf("the watch shows events %v, History the newest %d: %v", seqs(got), want, seqs(all))
		}
	}

	// The seed wrote an event or not; start from what is there.
	events, changed, _ := read()
	start := len(events)
	record(2)
	fired(changed)
	events, changed, cost := read()
	if cost != 1+2 {
		t.Errorf("two new events cost %d requests, want 3: the head and each new event", cost)
	}
	same(events, min(start+2, 5))

	if _, _, cost := read(); cost != 0 {
		t.Errorf("a Read with nothing new made %d requests, want none", cost)
	}

	// More new events than it keeps: it reads only those it keeps.
	record(12)
	fired(changed)
	events, changed, cost = read()
	if cost != 1+5 {
		t.Errorf("twelve new events with five kept cost %d requests, want 6", cost)
	}
	same(events, 5)

	record(1)
	fired(changed)
	events, _, cost = read()
	if cost != 2 {
		t.Errorf("one new event cost %d requests, want 2", cost)
	}
	same(events, 5)
	if got := fmt.Sprint(events[0].Action, " ", events[0].Services); got != "pause [db]" {
		t.Errorf("newest event %s, want pause [db]", got)
	}
}

// Before anything is recorded there is no history head: Read shows none,
// and wakes when the first event comes.
func TestIntegration_HistoryWatchBeforeAnyEvent(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/histw0")
	seed(t, admin, parse(t, "[services.db]\nquorum = 0\n"))
	if err := admin.conn.Delete(admin.Tree.History()+"/e-0000", -1); err != nil {
		t.Logf("no seed event to remove: %v", err)
	}
	_ = admin.conn.Delete(admin.Tree.History(), -1)
	w := admin.WatchHistory(20)
	events, changed, err := w.Read()
	if err != nil || len(events) != 0 || changed == nil {
		t.Fatalf("Read without a history: %v, %v, channel %v", events, err, changed)
	}
	if err := admin.Record(HistoryEvent{Action: ActResume}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("the first event did not wake the watch")
	}
	events, _, err = w.Read()
	if err != nil || len(events) != 1 || events[0].Action != ActResume {
		t.Fatalf("after the first event: %v, %v", events, err)
	}
}
