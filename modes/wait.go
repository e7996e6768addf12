package modes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
)

// errHalted is what a wait for a deploy returns when a service of it
// halted or its release was taken away: the exit code is 1, as for any
// error, and the message says why.
var errHalted = errors.New("the deploy did not finish")

// rollout is the state of one waited-for service, judged on a summary.
type rollout struct {
	done bool
	// failed says why the service will not finish without an operator
	// (halted, unstaged); empty while it may.
	failed string
	// progress is a line for the operator, printed when it changes.
	progress string
}

// judgeRollout says where svc's rollout stands in sum. A service has
// finished when its step left the deploy queue and the summary's counts
// show every online host on the staged release; it has failed when it
// halted on the staged release, or when nothing is staged any more (an
// abort).
func judgeRollout(sum *roll.FleetSummary, svc, version string) rollout {
	i := slices.IndexFunc(sum.Services, func(s roll.ServiceSummary) bool { return s.Name == svc })
	if i < 0 {
		return rollout{failed: fmt.Sprintf("%s: no such service any more", svc)}
	}
	s := sum.Services[i]
	if s.Halted != nil && (s.Staged == "" || s.Halted.Version == s.Staged) {
		return rollout{failed: fmt.Sprintf("%s halted: %s", svc, s.Halted)}
	}
	if s.Staged == "" {
		return rollout{failed: fmt.Sprintf("%s: nothing staged any more (aborted?)", svc)}
	}
	if version != "" && s.Staged != version {
		return rollout{failed: fmt.Sprintf("%s %s: replaced by %s", svc, version, s.Staged)}
	}
	queued := slices.ContainsFunc(sum.Deploy.Steps, func(st roll.StepStatus) bool { return slices.Contains(st.Services, svc) })
	on := s.Versions[s.Staged]
	r := rollout{progress: fmt.Sprintf("%s: %d/%d online hosts on %s", svc, on, s.Online, s.Staged)}
	if len(s.Upgrading) > 0 {
		r.progress += ", upgrading " + strings.Join(s.Upgrading, ",")
	}
	if !s.RollReady && s.RollWait != "" && s.RollWait != "rolled out" {
		r.progress += "; " + s.RollWait
	}
	r.done = !queued && len(s.Upgrading) == 0 && on == s.Online && s.Online > 0
	return r
}

// waitRollout waits until every one of services has rolled out (nil), one
// halts or is unstaged (errHalted), timeout passes (0: never) or ctx ends.
// version, if not empty, is the release of the one service waited for:
// another staged instead fails the wait.
// It reads the summary through a watch: a constant number of requests per
// service and per change, and none while nothing changes.
func waitRollout(ctx context.Context, env *Env, store *roll.Store, services []string, version string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("not finished after %s", timeout))
		defer cancel()
	}
	w := store.WatchSummary()
	shown := map[string]string{}
	for {
		sum, err := w.Read()
		if err != nil {
			// A wait rides out a ZooKeeper outage or a leader change.
			fmt.Fprintf(env.Stderr, "dcroll: %v (retrying)\n", err)
			if !clock.Sleep(ctx, time.Second) {
				return waitEnded(ctx)
			}
			continue
		}
		{
			done := true
			var failed []string
			for _, svc := range services {
				r := judgeRollout(sum, svc, version)
				if r.progress != "" && r.progress != shown[svc] {
					fmt.Fprintln(env.Stdout, r.progress)
					shown[svc] = r.progress
				}
				if r.failed != "" {
					failed = append(failed, r.failed)
				}
				done = done && r.done
			}
			if len(failed) > 0 {
				return fmt.Errorf("%w: %s", errHalted, strings.Join(failed, "; "))
			}
			if done {
				fmt.Fprintf(env.Stdout, "rolled out: %s\n", strings.Join(services, ","))
				return nil
			}
		}
		if w.Wait(ctx, sum.NextChange) != nil {
			return waitEnded(ctx)
		}
	}
}

// waitEnded is why a wait ended with its context: the timeout, or an
// interrupt.
func waitEnded(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return ctx.Err()
}
