package web

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// pageHosts are the fleet sizes the page's cost is counted at; the
// figures of docs/BENCHMARKS.md use -page.hosts 100,1000.
var pageHosts = flag.String("page.hosts", "50,200", "the fleet `sizes` the status page's cost is counted at")

// The page's readings cost the same at 50 hosts as at 200, and viewers
// add none: it reads the summary at each change, once for every viewer,
// and of the history only the new events. Serving the page, its metrics
// and its JSON reads nothing. The fleet is mid-rollout: a step rolls, a
// host is on the new release, and the page shows the time left.
func TestIntegration_PageCostDoesNotGrowWithTheFleetOrTheViewers(t *testing.T) {
	var sizes []int
	for f := range strings.SplitSeq(*pageHosts, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			t.Fatalf("-page.hosts: %q is not a fleet size of at least 2", f)
		}
		sizes = append(sizes, n)
	}
	zkc := zktest.Standalone(t)
	perReading, perEvent, nearEnd := map[int]int64{}, map[int]int64{}, map[int]int64{}
	for _, n := range sizes {
		root := fmt.Sprintf("/page%d", n)
		admin := rolltest.Open(t, zkc, root)
		rolltest.Seed(t, admin, "[services.web]\nquorum = 1\n")
		now := time.Now().UTC()
		for i := range n {
			h := fmt.Sprintf("h%04d", i)
			if err := admin.EnsureMember("web", h, roll.Member{Joined: now}); err != nil {
				t.Fatal(err)
			}
			ver := "v1"
			if i == 0 {
				ver = "v2" // the first host done
			}
			if err := admin.SetCurrent("web", h, roll.Current{Version: ver, Since: now}); err != nil {
				t.Fatal(err)
			}
		}
		// v2 staged and ordered, as an operator does: the step rolls, and
		// the history holds its start.
		m := roll.Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("0", 64), Staged: now, By: "test"}
		if err := admin.Stage("web", m, false); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Order([][]string{{"web"}}); err != nil {
			t.Fatal(err)
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
			if ss := sum.Services[0]; ss.Counted || ss.Online != n || ss.Versions["v2"] != 1 {
				return fmt.Errorf("fleet view: %d online, %d on v2 (counted without one: %v), want %d and 1", ss.Online, ss.Versions["v2"], ss.Counted, n)
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
			v, _, _ := srv.snapshot()
			if v.Sum == nil {
				return errors.New("no reading yet")
			}
			if left := eta(v.Sum, "web"); left == "" {
				return fmt.Errorf("no time left shown: progress %+v", v.Sum.Deploy.Progress)
			}
			return nil
		})
		// measure makes a change, waits until the page shows it, and
		// says what that cost: one reading, whatever the viewers.
		measure := func(what string, change func() error, shown func(view) bool) int64 {
			t.Helper()
			reads, ops := srv.Reads(), probe.Ops()
			if err := change(); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, func() error {
				if v, _, _ := srv.snapshot(); !shown(v) {
					return fmt.Errorf("%s not read yet", what)
				}
				return nil
			})
			if got := srv.Reads() - reads; got != 1 {
				t.Errorf("%d hosts: %d readings for %s with 10 viewers, want 1", n, got, what)
			}
			return probe.Ops() - ops
		}
		// A change of the fleet that writes no event.
		perReading[n] = measure("a pause", func() error {
			return admin.UpdateControl("web", func(c *roll.Control) { c.Paused = true })
		}, func(v view) bool { return v.Sum != nil && v.Sum.Services[0].Paused })
		// An event in the history: the reading reads the history's head
		// and that event alone besides the summary.
		perEvent[n] = measure("an event", func() error {
			return admin.Record(roll.HistoryEvent{Action: roll.ActPause, Services: []string{"web"}})
		}, func(v view) bool { return len(v.History) > 0 && v.History[0].Action == roll.ActPause })

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

		// Near the end of the step, SummaryLimit hosts or fewer lack the
		// release: a reading also reads their agents, to name the stuck
		// ones. Five left, at any size.
		for i := 1; i < n-5; i++ {
			// A switch: the host leaves /current and comes back on v2.
			h := fmt.Sprintf("h%04d", i)
			if err := admin.ClearCurrent("web", h); err != nil {
				t.Fatal(err)
			}
			if err := admin.SetCurrent("web", h, roll.Current{Version: "v2", Since: now}); err != nil {
				t.Fatal(err)
			}
		}
		testutil.Eventually(t, 30*time.Second, func() error {
			v, _, _ := srv.snapshot()
			if v.Sum == nil {
				return errors.New("none")
			}
			if v.Sum.Services[0].Lacking != 5 {
				return fmt.Errorf("the five hosts left not read yet: lacking %d, versions %v", v.Sum.Services[0].Lacking, v.Sum.Services[0].Versions)
			}
			return nil
		})
		nearEnd[n] = measure("a resume near the end", func() error {
			return admin.UpdateControl("web", func(c *roll.Control) { c.Paused = false })
		}, func(v view) bool { return v.Sum != nil && !v.Sum.Services[0].Paused })
		cancel()
	}
	t.Logf("hosts: requests per reading of a change / of a new event in the history / of a change with 5 hosts left")
	for _, n := range sizes {
		t.Logf("%d: %d / %d / %d", n, perReading[n], perEvent[n], nearEnd[n])
	}
	small := sizes[0]
	for _, n := range sizes {
		if perReading[n] != perReading[small] || perReading[n] == 0 || nearEnd[n] != nearEnd[small] {
			t.Errorf("a reading made %d requests at %d hosts, %d at %d (%d and %d near the end): it grows with the fleet",
				perReading[n], n, perReading[small], small, nearEnd[n], nearEnd[small])
		}
		if perEvent[n] != perReading[n]+2 {
			t.Errorf("%d hosts: a reading of one new event made %d requests, want %d: the summary's, the history's head and the event",
				n, perEvent[n], perReading[n]+2)
		}
	}
}
