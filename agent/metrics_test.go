package agent

import (
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// Every metric of the agent, with its series, passes promtool's lint
// (names, units, _total on counters, help text).
func TestMetricsLint(t *testing.T) {
	m := newMetrics("v1.2.3")
	m.watchUploads(func() int64 { return 42 })
	m.addService("web")
	m.setRunning("web", "2.0")
	m.setHealthy("web", true, time.Now())
	m.turnTaken("web", time.Now())
	m.turnEnded("web", time.Now())
	m.switched("web", nil)
	m.fetched("web", SourceBitTorrent, 10)
	m.fetchDone("web", time.Second, nil)
	problems, err := promtest.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	// A version change replaces the info series, it does not add one.
	m.setRunning("web", "2.1")
	if n := promtest.CollectAndCount(m.versionInfo); n != 1 {
		t.Fatalf("%d version_info series after a version change, want 1", n)
	}
}
