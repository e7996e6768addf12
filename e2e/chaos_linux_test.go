package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
)

// regressions are schedules that once found a bug, run before the random
// ones. Timing decides whether a schedule hits a window, so each is run
// as recorded, not guaranteed to reproduce the bug without its fix.
var regressions = []struct {
	seed  uint64
	index int
	bug   string
}{
	{2, 0, "after a ZooKeeper quorum loss, turns whose release failed on the lost connection were held for good, and the deploy stalled"},
	{1795793887261778846, 16, "a take of a turn committed while a quorum loss swallowed its answer; the host, queued again, looped on its own turn and the hosts behind it stalled"},
	{1796193033674552312, 4, "a stage committed while a quorum loss swallowed its answer; stage exited with an error, nobody ordered the release, and the deploy stalled"},
	{1796202007453484121, 2, "a host back from a partition queued as a straggler, was judged on a fleet view not yet up to date, and waited for good on nodes that did not change"},
	{1796204383436754420, 14, "a host paused mid-switch lost its session and its turn; the new version failed, the failure went unrecorded, and the step neither finished nor halted"},
	{1796222965759410514, 5, "a host woken by a predecessor that left the queue decided on reads made before the take of the host ahead committed, and db's quorum broke"},
	{1796222814120259449, 0, "the same, with a host killed: three db turns within 330 ms against a quorum that allows two"},
	{1796225584089087312, 0, "the same after a first fix that still decided on reads made with the look at the queue when the predecessor's take woke the host"},
}

var (
	regress   = flag.Bool("e2e.regressions", true, "run the regression schedules before the random ones")
	schedules = flag.Int("e2e.schedules", 3, "number of chaos schedules to run")
	seedFlag  = flag.Uint64("e2e.seed", 0, "seed of the schedules (0: from the clock; the seed is printed)")
	from      = flag.Int("e2e.from", 0, "index of the first schedule, to replay one: -e2e.seed S -e2e.from I -e2e.schedules 1")
	hosts     = flag.Int("e2e.hosts", 6, "number of hosts")
	report    = flag.String("e2e.report", "", "file to write a summary of the run to, in Markdown")
)

// TestChaos builds a data center of network namespaces and runs randomized
// schedules of faults against rollouts, checking every invariant over the
// recorded history.
func TestChaos(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("the chaos run takes minutes; not in -short")
	}
	if *hosts < 4 || *hosts > 40 {
		t.Fatalf("-e2e.hosts %d: want 4 to 40", *hosts)
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos: seed %d, schedules %d to %d; replay one with: go test -race -run TestChaos ./e2e/ -args -e2e.seed %d -e2e.from I -e2e.schedules 1",
		seed, *from, *from+*schedules-1, seed)

	// Ctrl-C (or SIGTERM) stops the run but lets the cleanups remove the
	// lab: without this, the test binary would just exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dc := NewDC(t, buildDcroll(t), *hosts)
	t.Cleanup(func() {
		dc.stopAgents()
		checkRaces(t, dc)
		if t.Failed() {
			keepLogs(t, dc)
		}
	})
	c := NewChaos(t, dc)
	start := time.Now()
	var outcomes []Outcome
	violations := 0
	var runs []Schedule
	if *regress && *seedFlag == 0 {
		for _, r := range regressions {
			runs = append(runs, Regression(r.seed, r.index, *hosts, Services))
		}
	}
	for i := *from; i < *from+*schedules; i++ {
		runs = append(runs, NewSchedule(seed, i, *hosts, Services))
	}
	for _, s := range runs {
		if ctx.Err() != nil {
			t.Fatal("chaos: interrupted")
		}
		t.Logf("chaos: %s", s)
		out, err := c.Run(ctx, t, s)
		outcomes = append(outcomes, out)
		for _, v := range out.Violations {
			t.Errorf("chaos: %s: violation: %s", s, v)
			violations++
		}
		if err != nil {
			t.Fatalf("chaos: %s: %v (agent logs in %s)", s, err, dc.Dir)
		}
		t.Logf("chaos: schedule %d done in %s: halts %v, every host on %v, %d violations",
			s.Index, out.Duration.Round(time.Millisecond), out.Halts, out.Final, len(out.Violations))
	}
	summary := c.Summary(seed, outcomes, violations, time.Since(start))
	t.Log("chaos: summary\n" + summary)
	if *report != "" {
		if err := os.WriteFile(*report, []byte(summary), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// checkRaces fails the test for every data race the race detector reported
// in an agent's log (the agents and their services are built with -race)
// whose racing accesses are in dcroll's code. Races wholly inside
// go-zookeeper are logged, not failed (see testutil.LibraryRace).
func checkRaces(t *testing.T, dc *DC) {
	logs, _ := filepath.Glob(filepath.Join(dc.Dir, "*", "agent.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, report := range testutil.RaceReports(string(b)) {
			if testutil.LibraryRace(report) {
				t.Logf("chaos: %s: a data race inside go-zookeeper (known upstream):\n%s", l, report)
				continue
			}
			t.Errorf("chaos: %s: data race:\n%s", l, report)
		}
	}
}

// keepLogs copies the agents' logs out of the test's temp dir, which is
// about to be removed, and says where they are.
func keepLogs(t *testing.T, dc *DC) {
	dir, err := os.MkdirTemp("", "dcroll-e2e-logs-")
	if err != nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(dc.Dir, "*", "agent.log"))
	more, _ := filepath.Glob(filepath.Join(dc.Dir, "*.log"))
	for _, l := range append(logs, more...) {
		name := strings.ReplaceAll(strings.TrimPrefix(l, dc.Dir+"/"), "/", "-")
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
	}
	t.Logf("chaos: logs kept in %s", dir)
}

// Summary is the run in Markdown, for docs/RELIABILITY.md.
func (c *Chaos) Summary(seed uint64, outs []Outcome, violations int, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d schedules, %d hosts, 3 ZooKeeper servers, %s\n\n", seed, len(outs), len(c.DC.Hosts), took.Round(time.Second))
	fmt.Fprintf(&b, "| fault | occurrences |\n|---|---|\n")
	for _, k := range append(slices.Clone(Kinds), BadRelease) {
		fmt.Fprintf(&b, "| %s | %d |\n", k, c.Faults[k])
	}
	fmt.Fprintf(&b, "\n| operator's action | schedules |\n|---|---|\n")
	for _, op := range Ops {
		fmt.Fprintf(&b, "| %s | %d |\n", op, c.Ops[op])
	}
	rollouts := 0
	for _, o := range outs {
		rollouts += len(Services)
		if o.Schedule.Bad != "" {
			rollouts++
		}
	}
	var durs []time.Duration
	for _, o := range outs {
		durs = append(durs, o.Duration)
	}
	slices.Sort(durs)
	fmt.Fprintf(&b, "\nrollouts: %d services staged in %d schedules; %d schedules finished without a halt, %d halts, each with its reason:\n\n",
		rollouts, len(outs), c.Finished, len(c.Halts))
	for _, h := range c.Halts {
		fmt.Fprintf(&b, "- %s\n", h)
	}
	if len(durs) > 0 {
		fmt.Fprintf(&b, "\nschedule duration: median %s, max %s\n", durs[len(durs)/2].Round(time.Second), durs[len(durs)-1].Round(time.Second))
	}
	fmt.Fprintf(&b, "\ninvariant violations: %d\n", violations)
	return b.String()
}

// buildDcroll builds dcroll with the race detector into the test's temp dir.
func buildDcroll(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "dcroll")
	out, err := exec.Command("go", "build", "-race", "-o", exe, "github.com/dcroll/dcroll").CombinedOutput()
	if err != nil {
		t.Fatalf("build dcroll: %v\n%s", err, out)
	}
	return exe
}
