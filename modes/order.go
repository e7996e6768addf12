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
	auto    bool
	wait    bool
	timeout time.Duration
}

func (*orderMode) Synopsis() string {
	return "queue staged services for deploy, in an order their dependencies allow"
}

func (m *orderMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("order", pflag.ContinueOnError)
	fs.BoolVar(&m.auto, "auto", false, "queue every staged service not yet queued, in steps derived from the dependencies")
	fs.BoolVar(&m.wait, "wait", false, "wait until the queued services have rolled out (exit 0) or one halts (exit 1)")
	fs.DurationVar(&m.timeout, "timeout", 0, "with --wait, give up after this long (exit 1; 0: never)")
	return fs, "order [--auto] [--wait [--timeout D]] [SERVICE[,SERVICE...]]...", `
Each argument is one step of the deploy queue; services joined by commas
roll in the same step. The steps go to the end of the queue; the head step
is the one rolling, and it leaves the queue when every online host of its
services runs the staged release. For example, with api depending on db:

  dcroll order db api,cache    # db first, then api and cache together
  dcroll order --auto          # the same, derived from the dependencies

Every service must have a release staged, appear once, not be queued
already, and come after every staged service it depends on. On any error
nothing is written.

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
	steps, err = store.Order(steps)
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
	queue, err := store.Steps()
	if err != nil {
		fmt.Fprintf(env.Stderr, "dcroll: note: cannot read the queue back; `dcroll status` shows it: %v\n", err)
		return nil
	}
	printQueue(env.Stdout, queue)
	return nil
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
