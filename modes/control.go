package modes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/roll"
)

func init() {
	register("pause", func() mode { return &pauseMode{pause: true} })
	register("resume", func() mode { return &pauseMode{pause: false} })
	register("abort", func() mode { return &abortMode{} })
}

// pauseMode is pause, or resume when pause is false.
type pauseMode struct {
	pause bool
}

func (m *pauseMode) Synopsis() string {
	if m.pause {
		return "stop hosts from taking new upgrade turns, for the deploy or one service"
	}
	return "lift a pause, or retry a halted service"
}

func (m *pauseMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	if m.pause {
		return pflag.NewFlagSet("pause", pflag.ContinueOnError), "pause [SERVICE]", `
Without SERVICE the whole deploy pauses; with it, only that service's. Hosts
mid-upgrade finish their switch; no host starts a new one until
` + "`dcroll resume`" + `. Downloads and the ready queue go on.`
	}
	return pflag.NewFlagSet("resume", pflag.ContinueOnError), "resume [SERVICE]", `
resume SERVICE lifts that service's pause and its halt: after a failed
switch halted it, this retries the deploy (fix the cause first; the failure
is shown by ` + "`dcroll status`" + `). Without SERVICE, resume lifts the
deploy's pause and every service's pause and halt.`
}

func (m *pauseMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 1 {
		return usageErr("want at most one SERVICE, got %d arguments", len(args))
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	services, err := store.Services()
	if err != nil {
		return err
	}
	names := roll.Catalog(services).Names()
	if len(args) == 1 {
		if _, ok := services[args[0]]; !ok {
			return fmt.Errorf("service %q is not in the catalog (%s)", args[0], strings.Join(names, ", "))
		}
		names = args[:1]
	}

	if m.pause {
		if len(args) == 0 {
			if err := recordAction(env, store, roll.HistoryEvent{Action: roll.ActPause, Detail: "the whole deploy"}, store.SetDeployPaused(true)); err != nil {
				return err
			}
			fmt.Fprintln(env.Stdout, "paused the deploy: no host starts a new upgrade turn until `dcroll resume`")
			return nil
		}
		if err := recordAction(env, store, roll.HistoryEvent{Action: roll.ActPause, Services: args[:1]},
			store.UpdateControl(args[0], func(c *roll.Control) { c.Paused = true })); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "paused %s: no host of it starts a new upgrade turn until `dcroll resume %s`\n", args[0], args[0])
		return nil
	}

	var did []string
	if len(args) == 0 {
		dc, err := store.DeployControl()
		if err != nil {
			return err
		}
		if dc.Paused {
			if err := store.SetDeployPaused(false); err != nil {
				return err
			}
			did = append(did, "resumed the deploy")
		}
	}
	var resumed []string
	for _, svc := range names {
		changes, err := clearControl(store, svc)
		if err != nil {
			return err
		}
		if len(changes) > 0 {
			resumed = append(resumed, svc)
		}
		did = append(did, changes...)
	}
	if len(did) == 0 {
		fmt.Fprintln(env.Stdout, "nothing was paused or halted")
		return nil
	}
	_ = recordAction(env, store, roll.HistoryEvent{Action: roll.ActResume, Services: resumed, Detail: strings.Join(did, "; ")}, nil)
	for _, d := range did {
		fmt.Fprintln(env.Stdout, d)
	}
	return nil
}

// clearControl lifts svc's pause and halt, and says what it lifted.
func clearControl(store *roll.Store, svc string) ([]string, error) {
	c, err := store.LiftControl(svc)
	return lifted(svc, c), err
}

// lifted says what lifting c's pause and halt did.
func lifted(svc string, c roll.Control) []string {
	var did []string
	if c.Paused {
		did = append(did, "resumed "+svc)
	}
	if c.Halted != nil {
		did = append(did, fmt.Sprintf("cleared the halt of %s (%s)", svc, c.Halted))
	}
	return did
}

type abortMode struct{}

func (*abortMode) Synopsis() string {
	return "drop the deploy: empty the queue, unstage every release, lift pauses and halts"
}

func (*abortMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("abort", pflag.ContinueOnError), "abort", `
Abort empties the deploy queue, removes every staged release with its ready
queue, and lifts every service's pause and halt. Hosts keep the version they
run now; a host mid-upgrade finishes its switch. The deploy's own pause (from
` + "`dcroll pause`" + ` without a service) stays until ` + "`dcroll resume`" + `.`
}

func (*abortMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	a, err := store.Abort()
	_ = recordAction(env, store, roll.HistoryEvent{Action: roll.ActAbort, Services: slices.Sorted(maps.Keys(a.Unstaged)),
		Detail: fmt.Sprintf("%d steps cleared, %d releases unstaged", a.Steps, len(a.Unstaged))}, err)
	if a.Cleared {
		fmt.Fprintf(env.Stdout, "cleared the deploy queue (%d %s)\n", a.Steps, plural(a.Steps, "step", "steps"))
	}
	for _, svc := range slices.Sorted(maps.Keys(a.Unstaged)) {
		fmt.Fprintf(env.Stdout, "unstaged %s %s\n", svc, a.Unstaged[svc])
	}
	for _, svc := range slices.Sorted(maps.Keys(a.Lifted)) {
		for _, l := range lifted(svc, a.Lifted[svc]) {
			fmt.Fprintln(env.Stdout, l)
		}
	}
	if err != nil {
		return err
	}
	var upgrading []string
	for svc, turns := range a.Upgrading {
		for h, t := range turns {
			upgrading = append(upgrading, fmt.Sprintf("%s %s (to %s)", svc, h, t.To))
		}
	}
	if len(upgrading) > 0 {
		slices.Sort(upgrading)
		fmt.Fprintf(env.Stdout, "mid-upgrade, finishing their switch: %s\n", strings.Join(upgrading, ", "))
	}
	if a.DeployPaused {
		fmt.Fprintln(env.Stdout, "note: the deploy stays paused; `dcroll resume` lifts it")
	}
	fmt.Fprintln(env.Stdout, "hosts keep the versions they run now")
	return nil
}
