package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestIntegration_FleetCostPerHostIsConstant runs the simulator at two
// fleet sizes and fails if the ZooKeeper requests of a rollout, per host,
// grow with the fleet: a host that reads or watches something of size N on
// every change costs N times more per host at N hosts. It counts requests
// at the servers; it never times anything. Each rollout must also keep
// quorum and max_parallel, and end with every host on the new version.
func TestIntegration_FleetCostPerHostIsConstant(t *testing.T) {
	o := options{
		maxParallelPct: 5,
		quorumPct:      90,
		health:         50 * time.Millisecond,
		minHealthy:     300 * time.Millisecond,
		sessionTimeout: 20 * time.Second,
		idle:           2 * time.Second,
		batch:          50,
		heap:           "512m",
		timeout:        5 * time.Minute,
	}
	var perHost []float64
	for _, n := range []int{50, 200} {
		o.hosts = n
		r, err := simulate(context.Background(), t, o, testWriter{t})
		if err != nil {
			t.Fatalf("%d hosts: %v", n, err)
		}
		t.Logf("%d hosts: %.1f requests per host (%d in all, %.1f/s idle), %d notifications",
			n, r.requestsPerHost(), r.requests, r.idleRequests, r.notifications)
		if r.onNew != n {
			t.Errorf("%d hosts: %d on the new version at the end", n, r.onNew)
		}
		if r.maxInTurn > r.maxParallel {
			t.Errorf("%d hosts: %d turns held at once, max_parallel is %d", n, r.maxInTurn, r.maxParallel)
		}
		if r.minServing < r.need {
			t.Errorf("%d hosts: %d serving at one time, quorum is %d", n, r.minServing, r.need)
		}
		perHost = append(perHost, r.requestsPerHost())
	}
	if perHost[1] > 1.5*perHost[0] {
		t.Errorf("requests per host per rollout grow with the fleet: %.1f at 50 hosts, %.1f at 200", perHost[0], perHost[1])
	}
}

func TestParseMntr(t *testing.T) {
	m := parseMntr("zk_version\t3.8.0-1\nzk_packets_received\t1234\nzk_packets_sent\t 99\nzk_server_state\tleader\n")
	if m["zk_packets_received"] != 1234 || m["zk_packets_sent"] != 99 || len(m) != 2 {
		t.Errorf("parseMntr = %v", m)
	}
}

// testWriter sends the simulator's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
