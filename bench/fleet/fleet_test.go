package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/internal/testutil"
)

// TestIntegration_FleetCostPerHostIsConstant runs the simulator at two
// fleet sizes and fails if the ZooKeeper requests of a rollout, per host,
// grow with the fleet: a host that reads or watches something of size N on
// every change costs N times more per host at N hosts. It counts requests
// at the servers; it never times anything. Each rollout must also keep
// quorum and max_parallel, and end with every host on the new version.
//
// The simulator runs as its own process, built with the race detector, so
// that a race inside go-zookeeper (which a reconnect under load can hit;
// see testutil.LibraryRace) is told apart from one in dcroll: the race
// detector fails a test for any race in its own process.
func TestIntegration_FleetCostPerHostIsConstant(t *testing.T) {
	if testing.Short() {
		t.Skip("the simulation takes minutes; not in -short")
	}
	countsFile := filepath.Join(t.TempDir(), "counts.json")
	runSimulator(t, "--hosts", "50,200", "--max-parallel", "5", "--quorum", "90",
		"--health", "50ms", "--min-healthy", "300ms", "--session-timeout", "20s", "--idle", "2s",
		"--batch", "50", "--heap", "512m", "--timeout", "5m", "--json", countsFile)
	b, err := os.ReadFile(countsFile)
	if err != nil {
		t.Fatal(err)
	}
	var cs []counts
	if err := json.Unmarshal(b, &cs); err != nil || len(cs) != 2 {
		t.Fatalf("counts.json: %v, %d runs:\n%s", err, len(cs), b)
	}
	for _, c := range cs {
		t.Logf("%d hosts: %.1f requests per host (%d in all), %d notifications", c.Hosts, c.RequestsPerHost, c.Requests, c.Notifications)
		if c.OnNew != c.Hosts {
			t.Errorf("%d hosts: %d on the new version at the end", c.Hosts, c.OnNew)
		}
		if c.MaxInTurn > c.MaxParallel {
			t.Errorf("%d hosts: %d turns held at once, max_parallel is %d", c.Hosts, c.MaxInTurn, c.MaxParallel)
		}
		if c.MinServing < c.Need {
			t.Errorf("%d hosts: %d serving at one time, quorum is %d", c.Hosts, c.MinServing, c.Need)
		}
	}
	for _, c := range cs {
		if c.Election {
			t.Fatalf("%d hosts: the ensemble elected a leader during the rollout, and its servers' counts started again: the requests are not known (a machine too loaded for its ZooKeeper servers?)", c.Hosts)
		}
	}
	if cs[1].RequestsPerHost > 1.5*cs[0].RequestsPerHost {
		t.Errorf("requests per host per rollout grow with the fleet: %.1f at %d hosts, %.1f at %d",
			cs[0].RequestsPerHost, cs[0].Hosts, cs[1].RequestsPerHost, cs[1].Hosts)
	}
}

// runSimulator builds the simulator with the race detector and runs it with
// args, failing t if it fails or races outside go-zookeeper.
func runSimulator(t *testing.T, args ...string) {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "fleet")
	if out, err := exec.Command("go", "build", "-race", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	cmd := exec.Command(exe, args...)
	var stderr bytes.Buffer
	cmd.Stdout = testWriter{t}
	cmd.Stderr = io.MultiWriter(&stderr, testWriter{t})
	err := cmd.Run()
	races := 0
	for _, report := range testutil.RaceReports(stderr.String()) {
		if testutil.LibraryRace(report) {
			t.Logf("a data race inside go-zookeeper (known upstream):\n%s", report)
			continue
		}
		t.Errorf("data race:\n%s", report)
		races++
	}
	var exit *exec.ExitError
	// 66 is the race detector's exit code: the races were judged above.
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 66 && races == 0 && strings.Contains(stderr.String(), "WARNING: DATA RACE")) {
		t.Fatalf("the simulator failed: %v", err)
	}
}

func TestParseMntr(t *testing.T) {
	m := parseMntr("zk_version\t3.8.0-1\nzk_packets_received\t1234\nzk_packets_sent\t 99\nzk_server_state\tleader\n")
	if m["zk_packets_received"] != 1234 || m["zk_packets_sent"] != 99 || len(m) != 2 {
		t.Errorf("parseMntr = %v", m)
	}
}

// testWriter sends the simulator's output to the test log, a line at a time.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// A server's counts that went back tell an election between two readings.
func TestCountersTellAnElection(t *testing.T) {
	before := counters{received: 300, each: []int64{100, 100, 100}}
	if (counters{received: 600, each: []int64{200, 200, 200}}).restartedSince(before) {
		t.Error("counts that all grew tell an election")
	}
	if !(counters{received: 420, each: []int64{200, 20, 200}}).restartedSince(before) {
		t.Error("a server's count that went back does not tell an election")
	}
}
