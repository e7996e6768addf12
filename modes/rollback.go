package modes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/roll"
)

func init() { register("rollback", func() mode { return &rollbackMode{} }) }

type rollbackMode struct {
	to   string
	only bool
}

func (*rollbackMode) Synopsis() string {
	return "take a service back to the release its fleet ran before, through the same turns"
}

func (m *rollbackMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("rollback", pflag.ContinueOnError)
	fs.StringVar(&m.to, "to", "", "the `VERSION` to go back to: the release before the staged one (a check)")
	fs.BoolVar(&m.only, "only", false, "take back SERVICE alone, not the staged services that depend on it")
	return fs, "rollback SERVICE [--to VERSION] [--only]", `
Rollback stages again the release SERVICE's fleet ran before the staged one,
and queues it at the head of the deploy queue. Hosts go back through the
same turns as a rollout: quorum, max_parallel, health checks, a halt on a
failure. They keep the previous release on disk, so nothing is transferred.

The staged services that depend on SERVICE go back with it, first: the
reverse of the rollout order (with api depending on db, ` + "`dcroll rollback db`" + `
takes api back, then db). --only takes back SERVICE alone. The rollback
lifts the pauses and halts of the services it takes back; the other queued
steps follow it.`
}

func (m *rollbackMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return usageErr("want exactly one SERVICE, got %d arguments", len(args))
	}
	svc := args[0]
	if !config.ValidName(svc) {
		return usageErr("service %q is not a valid service name", svc)
	}
	if m.to != "" {
		if err := roll.ValidVersion(m.to); err != nil {
			return usageErr("--to: %v", err)
		}
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	plan, err := store.Rollback(svc, m.to, m.only)
	e := roll.HistoryEvent{Action: roll.ActRollback, Services: []string{svc}, Version: plan.From[svc], Detail: "to " + m.to}
	if err == nil {
		e.Services, e.Detail = plan.Services(), plan.Explain()
	}
	if err := recordAction(env, store, e, err); err != nil {
		return err
	}
	printRollback(env, svc, plan)
	printQueueBack(env, store)
	return nil
}

// printRollback says what a rollback of svc does, and why in that order.
func printRollback(env *Env, svc string, plan roll.RollbackPlan) {
	for _, name := range plan.Services() {
		fmt.Fprintf(env.Stdout, "rolling back %s: %s -> %s\n", name, plan.From[name], plan.To[name])
	}
	if deps := plan.Dependents[svc]; len(deps) > 0 {
		fmt.Fprintf(env.Stdout, "%s %s on %s: %s first, then %s (the reverse of the rollout; --only takes back %s alone)\n",
			strings.Join(deps, ", "), plural(len(deps), "depends", "depend"), svc, strings.Join(deps, ", "), svc, svc)
	}
	for _, name := range slices.Sorted(maps.Keys(plan.Lifted)) {
		for _, l := range lifted(name, plan.Lifted[name]) {
			fmt.Fprintln(env.Stdout, l)
		}
	}
	fmt.Fprintln(env.Stdout, "hosts go back through their turns (quorum, max_parallel, health checks); they have the release on disk")
}
