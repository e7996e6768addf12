package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// The page's readings cost the same at 20 hosts as at 200, and viewers
// add none: it reads the summary at each change, once for every viewer,
// and of the history only the new events. Serving the page, its metrics
// and its JSON reads nothing.
func TestIntegration_PageCostDoesNotGrowWithTheFleetOrTheViewers(t *testing.T) {
	zkc := zktest.Standalone(t)
	perReading, perEvent := map[int]int64{}, map[int]int64{}
	for _, n := range []int{20, 200} {
		root := fmt.Sprintf("/page%d", n)
		admin := rolltest.Open(t, zkc, root)
		rolltest.Seed(t, admin, "[services.web]\nquorum = 1\n")
		now := time.Now().UTC()
		for i := range n {
			h := fmt.Sprintf("h%04d", i)
			if err := admin.EnsureMember("web", h, roll.Member{Joined: now}); err != nil {
				t.Fatal(err)
			}
			if err := admin.SetCurrent("web", h, roll.Current{Version: "v1", Since: now}); err != nil {
				t.Fatal(err)
			}
		}
		// The advancer keeps the fleet view, as an agent does.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = admin.RunAdvancer(ctx, "h0000") }()
		testutil.Eventually(t, 30*time.Second, func() error {
			sum, err := admin.Summary()
			if err != nil {
				return err
			}
			if ss := sum.Services[0]; ss.Counted || ss.Online != n {
				return fmt.Errorf("fleet view: %d online (counted without one: %v), want %d", ss.Online, ss.Counted, n)
			}
			return nil
		})

		probe := rolltest.Open(t, zkc, root)
		srv := New(probe, 10*time.Millisecond, hclog.NewNullLogger())
		go srv.Run(ctx)
		ts := httptest.NewServer(srv.Handler())
		defer ts.Close()
		// Ten viewers hold the live stream open.
		for range 10 {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
		}
		testutil.Eventually(t, 10*time.Second, func() error {
			if srv.Reads() == 0 {
				return errors.New("no reading yet")
			}
			return nil
		})
		// A change: one reading, whatever the viewers, and what it costs.
		reads, ops := srv.Reads(), probe.Ops()
		if err := admin.UpdateControl("web", func(c *roll.Control) { c.Paused = true }); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() error {
			v, _, _ := srv.snapshot()
			if v.Sum == nil || !v.Sum.Services[0].Paused {
				return errors.New("the pause not read yet")
			}
			return nil
		})
		if got := srv.Reads() - reads; got != 1 {
			t.Errorf("%d hosts: %d readings for one change with 10 viewers, want 1", n, got)
		}
		perReading[n] = probe.Ops() - ops

		// An event in the history: one reading, which reads the history's
		// head and that event alone besides the summary.
		reads, ops = srv.Reads(), probe.Ops()
		if err := admin.Record(roll.HistoryEvent{Action: roll.ActPause, Services: []string{"web"}}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() error {
			v, _, _ := srv.snapshot()
			if len(v.History) == 0 || v.History[0].Action != roll.ActPause {
				return errors.New("the event not read yet")
			}
			return nil
		})
		if got := srv.Reads() - reads; got != 1 {
			t.Errorf("%d hosts: %d readings for one event, want 1", n, got)
		}
		perEvent[n] = probe.Ops() - ops

		// Viewers loading the page, its JSON and its metrics cost nothing.
		testutil.Eventually(t, 10*time.Second, func() error {
			reads, ops := srv.Reads(), probe.Ops()
			for range 10 {
				for _, path := range []string{"/", "/summary.json", "/metrics"} {
					resp, err := http.Get(ts.URL + path)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("GET %s: %s", path, resp.Status)
					}
				}
			}
			if srv.Reads() != reads {
				return errors.New("a change came meanwhile: load again")
			}
			if got := probe.Ops() - ops; got != 0 {
				t.Fatalf("%d hosts: 30 loads of the page, its JSON and its metrics made %d requests, want none", n, got)
			}
			return nil
		})
		cancel()
	}
	t.Logf("requests per reading: %v; per reading of one new event: %v", perReading, perEvent)
	if perReading[200] != perReading[20] || perReading[20] == 0 {
		t.Errorf("a reading made %d requests at 200 hosts, %d at 20: it grows with the fleet", perReading[200], perReading[20])
	}
	if perEvent[200] != perEvent[20] || perEvent[20] != perReading[20]+2 {
		t.Errorf("a reading of one new event made %d requests at 200 hosts, %d at 20, want %d: the summary's, the history's head and the event",
			perEvent[200], perEvent[20], perReading[20]+2)
	}
}
