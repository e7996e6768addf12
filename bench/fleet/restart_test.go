package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestIntegration_FleetSurvivesAnEnsembleRestart restarts every voting
// server under a small fleet, the leader first, and checks from ZooKeeper's
// side and the agents' that nothing was lost: no session expired, no host
// node changed owner, no child of /current/<svc> was ever deleted, and the
// leader's restart made every session reconnect (each follower drops its
// sessions when it loses the leader). It counts; it times nothing. Its
// second run points the hosts at an observer.
func TestIntegration_FleetSurvivesAnEnsembleRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("the simulation takes a minute; not in -short")
	}
	for _, observers := range []string{"0", "1"} {
		t.Run("observers="+observers, func(t *testing.T) {
			countsFile := filepath.Join(t.TempDir(), "counts.json")
			runSimulator(t, "--hosts", "30", "--restart-ensemble", "--observers", observers,
				"--health", "50ms", "--session-timeout", "10s", "--idle", "1s",
				"--batch", "30", "--heap", "256m", "--json", countsFile)
			b, err := os.ReadFile(countsFile)
			if err != nil {
				t.Fatal(err)
			}
			var cs []restartCounts
			if err := json.Unmarshal(b, &cs); err != nil || len(cs) != 1 {
				t.Fatalf("counts.json: %v, %d runs:\n%s", err, len(cs), b)
			}
			c := cs[0]
			t.Logf("%+v", c)
			if c.Expired != 0 || c.Renewed != 0 {
				t.Errorf("the agents logged %d expired and %d new sessions, want none", c.Expired, c.Renewed)
			}
			if c.CurrentOwners != 0 || c.HostsOwners != 0 {
				t.Errorf("%d /current and %d /hosts nodes changed owner, want none", c.CurrentOwners, c.HostsOwners)
			}
			if c.CurrentCreated != 0 || c.FewestOnline != c.Hosts {
				t.Errorf("/current/web: %d children created or deleted, fewest %d of %d hosts; want none, all", c.CurrentCreated, c.FewestOnline, c.Hosts)
			}
			if len(c.Reconnected) != 3 || c.Reconnected[0] != c.Hosts {
				t.Errorf("sessions reconnected per restart: %v, want 3 restarts, all %d after the leader's", c.Reconnected, c.Hosts)
			}
		})
	}
}
