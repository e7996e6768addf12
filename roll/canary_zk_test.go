package roll

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

func TestParseCanary(t *testing.T) {
	for in, want := range map[string][2]int{"1": {1, 0}, "3": {3, 0}, "10%": {0, 10}, "100%": {0, 100}} {
		c, p, err := ParseCanary(in)
		if err != nil || c != want[0] || p != want[1] {
			t.Errorf("ParseCanary(%q) = %d, %d, %v; want %v", in, c, p, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "0%", "101%", "x", "2.5", "%"} {
		if _, _, err := ParseCanary(in); !errors.Is(err, ErrBadCanary) {
			t.Errorf("ParseCanary(%q) = %v, want ErrBadCanary", in, err)
		}
	}
}

// startTurns starts, on each host, a turn of db to version; the channel
// gets each host's outcome.
func startTurns(ctx context.Context, hosts []*simHost, version string) <-chan error {
	out := make(chan error, len(hosts))
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			_, err := h.turn(ctx, "db", version)
			if err != nil {
				err = fmt.Errorf("%s: %w", h.name, err)
			}
			out <- err
		})
	}
	go func() { wg.Wait(); close(out) }()
	return out
}

// countOn counts db's hosts on version.
func countOn(t *testing.T, s *Store, version string) int {
	t.Helper()
	n := 0
	for _, v := range versionsOf(t, s, "db") {
		if v == version {
			n++
		}
	}
	return n
}

// A canary of half of four members rolls two hosts, exactly, whatever
// the interleaving (max_parallel lets both take their turns at once), then
// pauses db with its reason; promote lets the rest roll.
func TestIntegration_CanaryPausesUntilPromote(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/canary"
	hosts := simFleet(t, zkc, root, 4)
	admin := rollbackFleet(t, zkc, root, "max_parallel = 2\n", hosts)
	if err := admin.Unstage("api"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Promote("db"); !errors.Is(err, ErrNoCanary) {
		t.Errorf("Promote before a canary = %v, want ErrNoCanary", err)
	}
	if _, err := admin.OrderWith([][]string{{"db"}}, OrderOptions{CanaryPercent: 50}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
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
		if !c.Paused || c.Reason != CanaryWait || len(turns) > 0 {
			return fmt.Errorf("control %+v, %d in turn: the canary has not finished", c, len(turns))
		}
		return nil
	})
	if n := countOn(t, admin, "v2"); n != 2 {
		t.Fatalf("%d hosts on v2 after a canary of 50%% of 4, want 2", n)
	}
	sum, err := admin.Summary()
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range sum.Services {
		if ss.Name == "db" && ss.RollWait != "paused: "+CanaryWait {
			t.Errorf("status of db waits on %q, want the canary's reason", ss.RollWait)
		}
	}

	was, err := admin.Promote("db")
	if err != nil || was.Hosts != 2 || was.Taken != 2 {
		t.Fatalf("Promote = %+v, %v; want the canary of 2 hosts, 2 taken", was, err)
	}
	for err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countOn(t, admin, "v2"); n != len(hosts) {
		t.Errorf("%d hosts on v2 after promote, want all %d", n, len(hosts))
	}
	if c, err := admin.Control("db"); err != nil || c.Paused || c.Canary != nil {
		t.Errorf("after promote db's control is %+v (%v)", c, err)
	}
}

// A rollback during a canary takes the canary host back and ends the
// canary: the hosts waiting for v2 leave the queue.
func TestIntegration_RollbackTakesTheCanariesBack(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/canaryback"
	hosts := simFleet(t, zkc, root, 3)
	admin := rollbackFleet(t, zkc, root, "", hosts)
	if err := admin.Unstage("api"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.OrderWith([][]string{{"db"}}, OrderOptions{CanaryHosts: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results := startTurns(ctx, hosts, "v2")
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := countOn(t, admin, "v2"); n != 1 {
			return fmt.Errorf("%d hosts on v2", n)
		}
		return nil
	})
	if _, err := admin.Rollback("db", "", false); err != nil {
		t.Fatal(err)
	}
	canary := ""
	for err := range results {
		switch {
		case err == nil && canary == "":
			for h, v := range versionsOf(t, admin, "db") {
				if v == "v2" {
					canary = h
				}
			}
		case err == nil:
			t.Errorf("a second host finished a turn to v2 during a canary of 1")
		case !errors.Is(err, ErrLeftQueue):
			t.Errorf("a waiting host: %v, want it out of the queue", err)
		}
	}
	if c, err := admin.Control("db"); err != nil || c.Paused || c.Canary != nil {
		t.Errorf("after the rollback db's control is %+v (%v), want the canary ended", c, err)
	}
	for _, h := range hosts {
		if h.name == canary {
			if _, err := h.turn(ctx, "db", "v1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := countOn(t, admin, "v1"); n != len(hosts) {
		t.Errorf("%d hosts on v1 after the rollback of the canary, want %d", n, len(hosts))
	}
}
