package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
)

// The health wait of a switch probes the freshly started service quickly
// until it first answers healthy: waits that start at probeFirst and grow
// by half each time up to probeMax (or the health interval, if shorter).
// A service is then found healthy at most probeMax after it first is.
const (
	probeFirst = 5 * time.Millisecond
	probeMax   = 100 * time.Millisecond
)

// waitClock is the time the health wait runs on: the real clock, whose
// readings carry the monotonic clock (nothing here strips it: no Round,
// UTC or serialising), or a fake one in the tests.
type waitClock interface {
	Now() time.Time
	// Sleep waits d, or until ctx ends; it reports whether d passed.
	Sleep(ctx context.Context, d time.Duration) bool
}

type realClock struct{}

func (realClock) Now() time.Time                                  { return time.Now() }
func (realClock) Sleep(ctx context.Context, d time.Duration) bool { return clock.Sleep(ctx, d) }

// checker is what the health wait needs of a service unit.
type checker interface {
	Check(ctx context.Context) error
	Running() bool
}

// awaitHealthy checks svc until it has been healthy for the policy's
// min_healthy, or fails once the deadline has passed or after
// max_failed_checks failed checks in a row.
func (a *Agent) awaitHealthy(ctx context.Context, svc string, p roll.HealthPolicy) error {
	u := a.units[svc]
	return awaitHealthy(ctx, realClock{}, u, u.Interval(), p)
}

// awaitHealthy is the health wait of a switch, on clk. Until u answers
// healthy it probes with short, growing waits (probeFirst to probeMax);
// from the first healthy answer it checks every interval and once more
// exactly when min_healthy has passed, and returns nil as soon as u has
// been healthy for min_healthy. Any failed check restarts that clock, and
// the quick probing with it.
//
// max_failed_checks counts the checks of the interval schedule, as if
// only they ran: at most one failed check per interval counts, so that
// the quick probes of a slow start do not use the allowance up. A failed
// check after a healthy one always counts.
//
// The deadline is counted from the call; the last check runs at the
// deadline, and a service that was not healthy for min_healthy by then
// fails.
func awaitHealthy(ctx context.Context, clk waitClock, u checker, interval time.Duration, p roll.HealthPolicy) error {
	minHealthy := time.Duration(p.MinHealthy)
	start := clk.Now()
	deadline := start.Add(time.Duration(p.Deadline))
	probes := &backoff.ExponentialBackOff{
		InitialInterval: probeFirst,
		// The probes are local: no herd to spread, so no jitter, and the
		// bound on the time to see the service healthy is exact.
		RandomizationFactor: 0,
		Multiplier:          1.5,
		MaxInterval:         max(min(interval, probeMax), probeFirst),
	}
	probes.Reset()
	var (
		since   time.Time // the first of the healthy answers in a row; zero: none
		last    error     // the last failed check's error
		failed  int       // failed checks in a row, as counted for max_failed_checks
		counted = start   // the failed checks from then on count
	)
	for {
		checked := clk.Now()
		err := u.Check(ctx)
		now := clk.Now()
		switch {
		case !u.Running():
			return errors.New("the process exited")
		case err != nil:
			last = err
			if !since.IsZero() || !checked.Before(counted) {
				failed++
				if counted = counted.Add(interval); !checked.Before(counted) {
					counted = checked.Add(interval)
				}
			}
			if !since.IsZero() {
				since = time.Time{}
				probes.Reset()
			}
		case since.IsZero():
			since, failed = now, 0
		}
		if p.MaxFailedChecks > 0 && failed >= p.MaxFailedChecks {
			return fmt.Errorf("%d health checks failed in a row (max_failed_checks): %v", failed, last)
		}
		if !since.IsZero() && now.Sub(since) >= minHealthy {
			return nil
		}
		if !now.Before(deadline) {
			if last == nil {
				last = errors.New("not healthy for long enough")
			}
			return fmt.Errorf("not healthy for %s within %s: %v", p.MinHealthy, p.Deadline, last)
		}
		// The next check: a probe (or the next check that counts, if
		// sooner) until healthy; then the next one of the interval, or the
		// one at min_healthy, whichever is first; never past the deadline.
		var next time.Time
		if since.IsZero() {
			next = earliest(now.Add(probes.NextBackOff()), counted)
		} else {
			next = earliest(checked.Add(interval), since.Add(minHealthy))
		}
		next = earliest(next, deadline)
		if d := next.Sub(clk.Now()); d > 0 && !clk.Sleep(ctx, d) {
			return ctx.Err()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
