package roll

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
)

// Outside its maintenance window a service takes no turn, and says until
// when; the turn starts once the window opens (on the hosts' clock), and
// `order --now` lets a deploy go outside it.
func TestIntegration_TurnsWaitForTheMaintenanceWindow(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/windows"
	var now atomic.Pointer[time.Time]
	saturday := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	now.Store(&saturday)
	clock := func() time.Time { return *now.Load() }
	hosts := simFleet(t, zkc, root, 3) // quorum 2
	for _, h := range hosts {
		h.store.clock = clock
	}
	admin := rollbackFleet(t, zkc, root, "max_parallel = 1\nwindows = [\"Mon-Fri 09:00-17:00 Europe/Berlin\"]\n", hosts)
	admin.clock = clock
	if err := admin.Unstage("api"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Order([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	h := hosts[0]
	ready, err := h.store.JoinReady("db", h.name, "v2")
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := h.store.TurnStateOf("db", h.name)
	if err != nil {
		t.Fatal(err)
	}
	if want := `outside the maintenance window (next: Mon 2026-12-07 09:00 CET`; v.Go || !strings.HasPrefix(v.Wait, want) {
		t.Fatalf("on a Saturday the verdict is %+v, want %q", v, want)
	}
	sum, err := admin.Summary()
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range sum.Services {
		if ss.Name == "db" && !strings.HasPrefix(ss.RollWait, "outside the maintenance window") {
			t.Errorf("status of db waits on %q, want the window", ss.RollWait)
		}
	}
	taken := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		taken <- h.store.AwaitTurn(ctx, "db", h.name, ready, Turn{From: "v1", To: "v2", Started: time.Now()})
	}()
	select {
	case err := <-taken:
		t.Fatalf("a turn was taken outside the window: %v", err)
	default:
	}
	monday := time.Date(2026, 12, 7, 8, 0, 1, 0, time.UTC) // 09:00:01 in Berlin
	now.Store(&monday)
	if err := <-taken; err != nil {
		t.Fatalf("once the window opened: %v", err)
	}
	// The window closes mid-turn: the turn finishes all the same.
	evening := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	now.Store(&evening)
	if err := h.store.SetCurrent("db", h.name, Current{Version: "v2", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.FinishTurn("db", h.name, nil); err != nil {
		t.Fatal(err)
	}
	if _, v, err := hosts[1].store.TurnStateOf("db", hosts[1].name); err != nil || v.Go {
		t.Fatalf("after 17:00 in Berlin the verdict is %+v (%v), want a wait for the window", v, err)
	}

	// order --now: the same deploy goes outside the window.
	if _, err := admin.ClearSteps(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.OrderWith([][]string{{"db"}}, OrderOptions{Now: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := hosts[1].turn(ctx, "db", "v2"); err != nil {
		t.Fatalf("with --now, outside the window: %v", err)
	}
}
