package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/dcroll/dcroll/roll"
)

// fakeClock is a clock that moves only when slept on or when a check
// takes its time: the health wait runs on it in no time, and exactly.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) bool {
	if d < 0 {
		panic(fmt.Sprintf("Sleep(%s)", d))
	}
	c.now = c.now.Add(d)
	return ctx.Err() == nil
}

// fakeService answers its checks as healthy says at the time each check
// begins, counted from the wait's start; each check takes took.
type fakeService struct {
	clk     *fakeClock
	start   time.Time
	took    time.Duration
	healthy func(at time.Duration) bool
	exitAt  time.Duration // Running turns false from then on; 0: never
	checks  []checkRecord
}

type checkRecord struct {
	at, end time.Duration // from the wait's start
	ok      bool
}

func newFakeService(healthy func(at time.Duration) bool, took time.Duration) (*fakeClock, *fakeService) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return clk, &fakeService{clk: clk, start: clk.now, took: took, healthy: healthy}
}

func (s *fakeService) Check(context.Context) error {
	at := s.clk.now.Sub(s.start)
	s.clk.now = s.clk.now.Add(s.took)
	ok := s.healthy(at)
	s.checks = append(s.checks, checkRecord{at: at, end: s.clk.now.Sub(s.start), ok: ok})
	if !ok {
		return errors.New("503 Service Unavailable")
	}
	return nil
}

func (s *fakeService) Running() bool {
	return s.exitAt == 0 || s.clk.now.Sub(s.start) < s.exitAt
}

func (s *fakeService) elapsed() time.Duration { return s.clk.now.Sub(s.start) }

// probeGap is the longest wait between two probes at the given interval.
func probeGap(interval time.Duration) time.Duration {
	return max(min(interval, probeMax), probeFirst)
}

// maxChecks bounds the checks of a wait that sees the service first
// healthy at ready and then healthy for minHealthy: until ready, the
// probes (the growing ones, then one per probe gap) and the checks of the
// interval schedule between them; then one check per interval and the one
// at min_healthy.
func maxChecks(ready, minHealthy, interval time.Duration) int {
	growing := int(math.Ceil(math.Log(float64(probeMax)/float64(probeFirst))/math.Log(1.5))) + 1
	probing := growing + int(ready/probeGap(interval)) + 1 + int(ready/interval) + 1
	return 1 + probing + int(minHealthy/interval) + 1
}

func policy(minHealthy, deadline time.Duration, maxFailed int) roll.HealthPolicy {
	return roll.HealthPolicy{MinHealthy: roll.Duration(minHealthy), Deadline: roll.Duration(deadline), MaxFailedChecks: maxFailed}
}

// A service that starts answering healthy at some time and stays so: the
// wait ends once it has been healthy for min_healthy, no later than its
// first healthy moment plus min_healthy plus one probe gap (and the time
// the checks themselves take), with a bounded number of checks.
func TestAwaitHealthyEndsWithinTheBound(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ready := time.Duration(rapid.Int64Range(0, int64(20*time.Second)).Draw(t, "ready"))
		interval := time.Duration(rapid.Int64Range(int64(10*time.Millisecond), int64(5*time.Second)).Draw(t, "interval"))
		minHealthy := time.Duration(rapid.Int64Range(0, int64(30*time.Second)).Draw(t, "minHealthy"))
		took := time.Duration(rapid.Int64Range(0, int64(20*time.Millisecond)).Draw(t, "took"))
		clk, svc := newFakeService(func(at time.Duration) bool { return at >= ready }, took)

		if err := awaitHealthy(context.Background(), clk, svc, interval, policy(minHealthy, time.Hour, 0)); err != nil {
			t.Fatalf("wait failed: %v (checks %v)", err, svc.checks)
		}
		end := svc.elapsed()
		first := -1
		for i, c := range svc.checks {
			if c.ok {
				first = i
				break
			}
		}
		if first < 0 {
			t.Fatalf("the wait ended with no healthy check: %v", svc.checks)
		}
		since := svc.checks[first].end
		if end-since < minHealthy {
			t.Fatalf("ended %s after the first healthy answer, min_healthy is %s", end-since, minHealthy)
		}
		if bound := ready + probeGap(interval) + minHealthy + 3*took; end > bound {
			t.Fatalf("ended at %s, past ready %s + probe gap %s + min_healthy %s + 3 × check %s = %s",
				end, ready, probeGap(interval), minHealthy, took, bound)
		}
		if n, bound := len(svc.checks), maxChecks(ready, minHealthy, interval); n > bound {
			t.Fatalf("%d checks, more than %d", n, bound)
		}
	})
}

// A service that flaps: the wait ends only after a run of healthy checks
// spanning min_healthy with no failed check in it (a failed check restarts
// the clock), and no later than min_healthy after the first healthy check
// that follows the last failed one.
func TestAwaitHealthyRestartsTheClockOnAFailedCheck(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		interval := time.Duration(rapid.Int64Range(int64(10*time.Millisecond), int64(3*time.Second)).Draw(t, "interval"))
		minHealthy := time.Duration(rapid.Int64Range(0, int64(10*time.Second)).Draw(t, "minHealthy"))
		took := time.Duration(rapid.Int64Range(0, int64(10*time.Millisecond)).Draw(t, "took"))
		// Unhealthy windows: [from, from+length).
		type window struct{ from, length time.Duration }
		windows := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) window {
			return window{
				from:   time.Duration(rapid.Int64Range(0, int64(30*time.Second)).Draw(t, "from")),
				length: time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(5*time.Second)).Draw(t, "length")),
			}
		}), 0, 6).Draw(t, "windows")
		healthy := func(at time.Duration) bool {
			for _, w := range windows {
				if at >= w.from && at < w.from+w.length {
					return false
				}
			}
			return true
		}
		clk, svc := newFakeService(healthy, took)

		if err := awaitHealthy(context.Background(), clk, svc, interval, policy(minHealthy, time.Hour, 0)); err != nil {
			t.Fatalf("wait failed: %v", err)
		}
		end := svc.elapsed()
		lastFailed := -1
		for i, c := range svc.checks {
			if !c.ok {
				lastFailed = i
			}
		}
		if lastFailed == len(svc.checks)-1 {
			t.Fatalf("ended on a failed check: %v", svc.checks)
		}
		since := svc.checks[lastFailed+1].end
		if end-since < minHealthy {
			t.Fatalf("ended %s after the first healthy check since the last failed one (at %s), min_healthy is %s",
				end-since, svc.checks[max(lastFailed, 0)].at, minHealthy)
		}
		if end > since+minHealthy+took {
			t.Fatalf("ended at %s, later than min_healthy %s after the healthy run began at %s", end, minHealthy, since)
		}
	})
}

// The clock restarts on a failed check in the middle of the healthy run:
// a hand-picked case of the property above, with the figures written out.
func TestAwaitHealthyFailedCheckMidwayStartsOver(t *testing.T) {
	// Healthy from 1s; one failed check at 3s (the window holds one
	// check of the 1s interval); min_healthy 5s.
	healthy := func(at time.Duration) bool {
		return at >= time.Second && (at < 2900*time.Millisecond || at >= 3100*time.Millisecond)
	}
	clk, svc := newFakeService(healthy, 0)
	if err := awaitHealthy(context.Background(), clk, svc, time.Second, policy(5*time.Second, time.Hour, 0)); err != nil {
		t.Fatal(err)
	}
	// First healthy check at 1s, the failed one at 3s, healthy again at
	// the first probe past 3.1s, done 5s later: not at 6s.
	if end := svc.elapsed(); end < 8100*time.Millisecond || end > 8100*time.Millisecond+probeMax {
		t.Fatalf("ended at %s, want 5s after the first healthy probe past 3.1s", end)
	}
}

// A service that never answers healthy fails after max_failed_checks
// checks of the interval schedule, not after as many quick probes: at the
// same moment as if only the interval checks had run.
func TestAwaitHealthyMaxFailedChecksCountsTheIntervalSchedule(t *testing.T) {
	for _, took := range []time.Duration{0, 7 * time.Millisecond} {
		clk, svc := newFakeService(func(time.Duration) bool { return false }, took)
		interval := 300 * time.Millisecond
		err := awaitHealthy(context.Background(), clk, svc, interval, policy(time.Second, time.Hour, 30))
		if err == nil || !strings.Contains(err.Error(), "30 health checks failed in a row (max_failed_checks): 503") {
			t.Fatalf("took %s: err = %v, want 30 failed checks", took, err)
		}
		if end, want := svc.elapsed(), 29*interval; end < want || end > want+2*took {
			t.Fatalf("took %s: failed at %s, want the 30th interval check, at %s", took, end, want)
		}
		if n, bound := len(svc.checks), maxChecks(29*interval, 0, interval); n > bound {
			t.Fatalf("took %s: %d checks, more than %d", took, n, bound)
		}
	}
}

// A failed check after a healthy one counts toward max_failed_checks at
// once, and a healthy one sets the count back to 0.
func TestAwaitHealthyMaxFailedChecksAfterASuccess(t *testing.T) {
	// Healthy only in [1s, 2.5s): the check at 2s is healthy,
	// then every check fails.
	clk, svc := newFakeService(func(at time.Duration) bool { return at >= time.Second && at < 2500*time.Millisecond }, 0)
	err := awaitHealthy(context.Background(), clk, svc, time.Second, policy(10*time.Second, time.Hour, 3))
	if err == nil || !strings.Contains(err.Error(), "3 health checks failed in a row") {
		t.Fatalf("err = %v", err)
	}
	// Failed at 3s (counted at once), 4s, 5s.
	if end := svc.elapsed(); end != 5*time.Second {
		t.Fatalf("failed at %s, want 5s", end)
	}
}

// A service never healthy fails at its deadline, checked once right at it.
func TestAwaitHealthyFailsAtTheDeadline(t *testing.T) {
	clk, svc := newFakeService(func(time.Duration) bool { return false }, 3*time.Millisecond)
	err := awaitHealthy(context.Background(), clk, svc, 2*time.Second, policy(time.Second, 10*time.Second, 0))
	if err == nil || !strings.Contains(err.Error(), "not healthy for 1s within 10s: 503") {
		t.Fatalf("err = %v", err)
	}
	if end := svc.elapsed(); end < 10*time.Second || end > 10*time.Second+3*time.Millisecond {
		t.Fatalf("failed at %s, want the check at the deadline, 10s", end)
	}

	// Healthy, but too late to last min_healthy by the deadline.
	clk, svc = newFakeService(func(at time.Duration) bool { return at >= 8*time.Second }, 0)
	err = awaitHealthy(context.Background(), clk, svc, 2*time.Second, policy(5*time.Second, 10*time.Second, 0))
	if err == nil || !strings.Contains(err.Error(), "not healthy for 5s within 10s") {
		t.Fatalf("err = %v", err)
	}
	if end := svc.elapsed(); end != 10*time.Second {
		t.Fatalf("failed at %s, want 10s", end)
	}
}

// A process that exits fails the wait at the next check.
func TestAwaitHealthyFailsWhenTheProcessExits(t *testing.T) {
	clk, svc := newFakeService(func(time.Duration) bool { return false }, 0)
	svc.exitAt = 50 * time.Millisecond
	err := awaitHealthy(context.Background(), clk, svc, 2*time.Second, policy(time.Second, time.Hour, 0))
	if err == nil || err.Error() != "the process exited" {
		t.Fatalf("err = %v", err)
	}
	if end := svc.elapsed(); end > 50*time.Millisecond+probeMax {
		t.Fatalf("noticed at %s, want within a probe gap of 50ms", end)
	}
}

// min_healthy 0: the first healthy answer ends the wait.
func TestAwaitHealthyZeroMinHealthy(t *testing.T) {
	clk, svc := newFakeService(func(time.Duration) bool { return true }, 0)
	if err := awaitHealthy(context.Background(), clk, svc, 2*time.Second, policy(0, time.Hour, 0)); err != nil {
		t.Fatal(err)
	}
	if len(svc.checks) != 1 {
		t.Fatalf("%d checks, want 1", len(svc.checks))
	}
}
