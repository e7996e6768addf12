package modes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/roll"
)

func init() { register("order", func() mode { return &orderMode{} }) }

type orderMode struct {
	auto         bool
	autoRollback bool
	canary       string
	now          bool
	dryRun       bool
	wait         bool
	timeout      time.Duration
}

func (*orderMode) Synopsis() string {
	return "queue staged services for deploy, in an order their dependencies allow"
}

func (m *orderMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("order", pflag.ContinueOnError)
	fs.BoolVar(&m.auto, "auto", false, "queue every staged service not yet queued, in steps derived from the dependencies")
	fs.BoolVar(&m.autoRollback, "auto-rollback", false, "when a release of this order halts, roll it back at once, as dcroll rollback would")
	fs.StringVar(&m.canary, "canary", "", "roll `N` hosts of each service (or N% of its members), then pause until dcroll promote")
	fs.BoolVar(&m.dryRun, "dry-run", false, "print the steps, the turns each service takes and an estimated duration; queue nothing")
	fs.BoolVar(&m.now, "now", false, "let this deploy's turns start outside the services' maintenance windows")
	fs.BoolVar(&m.wait, "wait", false, "wait until the queued services have rolled out (exit 0) or one halts (exit 1)")
	fs.DurationVar(&m.timeout, "timeout", 0, "with --wait, give up after this long (exit 1; 0: never)")
	return fs, "order [--auto] [--auto-rollback] [--canary N|N%] [--now] [--dry-run] [--wait [--timeout D]] [SERVICE[,SERVICE...]]...", `
Each argument is one step of the deploy queue; services joined by commas
roll in the same step. The steps go to the end of the queue; the head step
is the one rolling, and it leaves the queue when every online host of its
services runs the staged release. For example, with api depending on db:

  dcroll order db api,cache    # db first, then api and cache together
  dcroll order --auto          # the same, derived from the dependencies

Every service must have a release staged, appear once, not be queued
already, and come after every staged service it depends on. On any error
nothing is written. With --auto-rollback, a release of the order that halts
(a host's switch failed) is rolled back by itself, as ` + "`dcroll rollback`" + `
would: the service policy auto_rollback does the same for every deploy.
With --canary N, N hosts of each service (or N% of its members, at least
one) take their turns, and the service pauses with the reason "canary:
waiting for promote": ` + "`dcroll promote SERVICE`" + ` lets the rest roll,
` + "`dcroll rollback SERVICE`" + ` takes the canaries back; a service whose
policy has canary_hold is promoted by itself once its canaries have been
healthy that long. A service whose
policy has maintenance windows starts turns only inside one; --now lets
this deploy go outside them.

With --wait, order then follows the deploy, a line per change, and exits
0 once every service it queued has left the queue with every online host
on its staged release, or 1 when one halts (a switch failed and was
rolled back) or is unstaged (dcroll abort), or after --timeout: a CI
pipeline can gate on it. It reads the summary again only when ZooKeeper
reports a change, a few requests per service whatever the fleet's size.`
}

func (m *orderMode) Run(ctx context.Context, env *Env, args []string) (err error) {
	if m.timeout < 0 || (m.timeout > 0 && !m.wait) {
		return usageErr("--timeout goes with --wait, and is positive (0: never)")
	}
	if m.auto && len(args) > 0 {
		return usageErr("--auto takes no services, got %q", args[0])
	}
	if !m.auto && len(args) == 0 {
		return usageErr("name the services to queue, or use --auto")
	}
	opts := roll.OrderOptions{AutoRollback: m.autoRollback, Now: m.now}
	if m.canary != "" {
		var err error
		if opts.CanaryHosts, opts.CanaryPercent, err = roll.ParseCanary(m.canary); err != nil {
			return usageErr("--canary: %v", err)
		}
	}
	var steps [][]string
	for _, arg := range args {
		step := strings.Split(arg, ",")
		if slices.Contains(step, "") {
			return usageErr("step %q has an empty service name", arg)
		}
		steps = append(steps, step)
	}

	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if m.auto {
		steps = nil // every staged service not yet queued
	}
	if m.dryRun {
		return dryRun(env, store, steps)
	}
	asked := steps
	steps, err = store.OrderWith(steps, opts)
	if !errors.Is(err, roll.ErrAllQueued) {
		recordOrder(env, store, asked, steps, opts, err)
	}
	if errors.Is(err, roll.ErrAllQueued) {
		fmt.Fprintln(env.Stdout, "every staged service is queued already; nothing to add")
		queue, err := store.Steps()
		if err != nil {
			return err
		}
		printQueue(env.Stdout, queue)
		if m.wait {
			var all []string
			for _, st := range queue {
				all = append(all, st.Services...)
			}
			return waitRollout(ctx, env, store, all, "", m.timeout)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if m.wait {
		defer func() {
			if err == nil {
				err = waitRollout(ctx, env, store, slices.Concat(steps...), "", m.timeout)
			}
		}()
	}
	fmt.Fprintf(env.Stdout, "queued %d %s\n", len(steps), plural(len(steps), "step", "steps"))
	if m.canary != "" {
		printCanaries(env, store, steps)
	}
	if opts.AutoRollback {
		fmt.Fprintln(env.Stdout, "auto-rollback: a release of this order that halts goes back by itself to the release before it, as dcroll rollback would")
	}
	if opts.Now {
		printNow(env, store, steps)
	}
	// The deploy is queued: what follows is a courtesy, and a ZooKeeper
	// hiccup now must not make the operator think it failed (and queue
	// again). A step can be done already, for instance when every online
	// host runs its release: advance past it now rather than wait for the
	// agents to.
	if n, err := store.AdvanceSteps(); err != nil {
		fmt.Fprintf(env.Stderr, "dcroll: note: cannot check whether a step is done already (the agents will): %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(env.Stdout, "%d %s done already, removed\n", n, plural(n, "step was", "steps were"))
	}
	printQueueBack(env, store)
	return nil
}

// printQueueBack reads the deploy queue back after a command changed it,
// and prints it. The command is done: a failed read is a note.
func printQueueBack(env *Env, store *roll.Store) {
	queue, err := store.Steps()
	if err != nil {
		fmt.Fprintf(env.Stderr, "dcroll: note: cannot read the queue back; `dcroll status` shows it: %v\n", err)
		return
	}
	printQueue(env.Stdout, queue)
}

// printQueue prints the deploy queue, head first.
func printQueue(w io.Writer, queue []roll.StepEntry) {
	if len(queue) == 0 {
		fmt.Fprintln(w, "deploy queue: empty")
		return
	}
	fmt.Fprintln(w, "deploy queue:")
	for i, st := range queue {
		mark := ""
		if i == 0 {
			mark = "  (rolling)"
		}
		fmt.Fprintf(w, "  %d. %s%s\n", i+1, strings.Join(st.Services, ","), mark)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// recordOrder writes an order to the history: the steps queued, or those
// asked for when it failed.
func recordOrder(env *Env, store *roll.Store, asked, queued [][]string, opts roll.OrderOptions, err error) {
	steps := queued
	if err != nil {
		steps = asked
	}
	var services, parts []string
	for _, st := range steps {
		services = append(services, st...)
		parts = append(parts, strings.Join(st, ","))
	}
	detail := "steps: " + strings.Join(parts, " then ")
	if steps == nil {
		detail = "every staged service (--auto)"
	}
	if opts.AutoRollback {
		detail += ", auto-rollback"
	}
	if opts.Now {
		detail += ", now (outside the maintenance windows)"
	}
	if opts.CanaryHosts > 0 {
		detail += fmt.Sprintf(", canary of %d hosts", opts.CanaryHosts)
	} else if opts.CanaryPercent > 0 {
		detail += fmt.Sprintf(", canary of %d%%", opts.CanaryPercent)
	}
	_ = recordAction(env, store, roll.HistoryEvent{Action: roll.ActOrder, Services: services, Detail: detail}, err)
}

// printNow says which services of steps have maintenance windows that
// this order's turns may start outside of.
func printNow(env *Env, store *roll.Store, steps [][]string) {
	services, err := store.Services()
	if err != nil {
		return
	}
	var windowed []string
	for _, svc := range slices.Concat(steps...) {
		if len(services[svc].Windows) > 0 {
			windowed = append(windowed, fmt.Sprintf("%s (%s)", svc, strings.Join(services[svc].Windows, "; ")))
		}
	}
	if len(windowed) == 0 {
		fmt.Fprintln(env.Stdout, "now: no service of this order has maintenance windows; its turns start at any time anyway")
		return
	}
	fmt.Fprintf(env.Stdout, "now: turns start outside the maintenance windows too, for this deploy only: %s\n", strings.Join(windowed, ", "))
}

// printCanaries says how many hosts each service's canary rolls.
func printCanaries(env *Env, store *roll.Store, steps [][]string) {
	for _, step := range steps {
		for _, svc := range step {
			c, err := store.Control(svc)
			if err != nil || c.Canary == nil {
				continue
			}
			until := "dcroll promote " + svc
			if services, err := store.Services(); err == nil && services[svc].CanaryHold > 0 {
				until += fmt.Sprintf(", or until they have been healthy for %s (canary_hold)", services[svc].CanaryHold)
			}
			fmt.Fprintf(env.Stdout, "canary: %d %s of %s, then a pause until %s\n",
				c.Canary.Hosts, plural(c.Canary.Hosts, "host", "hosts"), svc, until)
		}
	}
}

// dryRun prints what an order of steps would queue and how long it may
// take, and writes nothing.
func dryRun(env *Env, store *roll.Store, steps [][]string) error {
	steps, err := store.CheckOrder(steps)
	if err != nil {
		return err
	}
	estimates, err := store.EstimateSteps(steps)
	if err != nil {
		return err
	}
	services, err := store.Services()
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "dry run: nothing is queued")
	var total time.Duration
	for i, step := range steps {
		fmt.Fprintf(env.Stdout, "step %d: %s\n", i+1, strings.Join(step, ","))
		var longest time.Duration // the services of a step roll at once
		for _, e := range estimates {
			if e.Step != i+1 {
				continue
			}
			pol := services[e.Service]
			source := "min_healthy, as no finished step of it is kept in the history"
			if e.Measured {
				source = "measured: the median of its last finished steps"
			}
			switch {
			case e.Turns == 0:
				fmt.Fprintf(env.Stdout, "  %s: every one of its %d members runs the staged release already\n", e.Service, e.Members)
			case e.Parallel == 0:
				fmt.Fprintf(env.Stdout, "  %s: %d turns, but quorum %s of %d members leaves no room for one: it waits until lowered\n",
					e.Service, e.Turns, pol.Quorum, e.Members)
			default:
				fmt.Fprintf(env.Stdout, "  %s: %d of %d members take a turn, %d at a time (max_parallel %d, quorum %s): %d %s of ~%s (%s): ~%s\n",
					e.Service, e.Turns, e.Members, e.Parallel, max(pol.MaxParallel, 1), pol.Quorum, e.Rounds, plural(e.Rounds, "round", "rounds"),
					time.Duration(e.Round), source, time.Duration(e.Estimate))
			}
			longest = max(longest, time.Duration(e.Estimate))
		}
		total += longest
	}
	fmt.Fprintf(env.Stdout, "estimated: ~%s in all, with every host ready (fetching is not counted)\n", total)
	return nil
}
