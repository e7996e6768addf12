package modes

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/roll"
)

func init() { register("seed", func() mode { return &seedMode{} }) }

type seedMode struct {
	dryRun      bool
	minProtocol int
}

func (*seedMode) Synopsis() string {
	return "bootstrap or update a data center's tree and service catalog from a file"
}

func (m *seedMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("seed", pflag.ContinueOnError)
	fs.BoolVar(&m.dryRun, "dry-run", false, "print what would change, change nothing")
	fs.IntVar(&m.minProtocol, "min-protocol", -1, "the lowest protocol version an agent must speak to take turns (docs/PROTOCOL.md); -1 leaves it as it is")
	return fs, "seed [--dry-run] [--min-protocol N] FILE", `
FILE lists the services with their policies, for example:

  [services.db]
  quorum = 2              # hosts that must stay online, or "60%" of members
  max_parallel = 1        # hosts upgrading at once
  [services.db.health]
  min_healthy = "30s"     # healthy this long after a switch...
  deadline = "5m"         # ...within this long, or the switch fails

  [services.api]
  depends_on = ["db"]     # db finishes its step before api starts
  quorum = "50%"

The file is validated first; on any error nothing is written. Seeding again
after an edit updates the policies; services missing from the file are
reported and left alone. All writes happen in one ZooKeeper transaction.
--min-protocol raises (or lowers) the protocol version agents must speak to
take upgrade turns; raise it once every agent runs the dcroll that speaks it.`
}

// completeArgs: FILE is a file name.
func (*seedMode) completeArgs(args []string) ([]string, bool) { return nil, len(args) == 0 }

func (m *seedMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return usageErr("want exactly one seed FILE, got %d arguments", len(args))
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	catalog, err := roll.ParseCatalog(args[0], f)
	if err != nil {
		return err
	}
	store, cfg, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	plan, err := store.PlanSeed(catalog)
	if err != nil {
		return err
	}
	for _, ch := range plan.Changes {
		fmt.Fprintln(env.Stdout, ch)
	}
	for _, name := range plan.Extra {
		fmt.Fprintf(env.Stdout, "note: service %q is in %s but not in %s; left as it is\n", name, store.Tree.Services(), args[0])
	}
	verb := "changed"
	if m.dryRun {
		verb = "would change"
	} else if err := store.ApplySeed(plan); err != nil || len(plan.Changes) > 0 {
		// A seed that changes nothing writes nothing, not even history.
		if err := recordAction(env, store, roll.HistoryEvent{Action: roll.ActSeed, Services: catalog.Names(),
			Detail: fmt.Sprintf("%d nodes changed, %d unchanged", len(plan.Changes), plan.Unchanged)}, err); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "%s: %d services, %d nodes %s, %d unchanged\n", cfg.ZooKeeper.Root, len(catalog), len(plan.Changes), verb, plan.Unchanged)
	if m.minProtocol < 0 {
		return nil
	}
	if m.dryRun {
		fmt.Fprintf(env.Stdout, "would set min_protocol %d\n", m.minProtocol)
		return nil
	}
	if err := recordAction(env, store, roll.HistoryEvent{Action: roll.ActSeed, Detail: fmt.Sprintf("min_protocol %d", m.minProtocol)},
		store.SetMinProtocol(m.minProtocol)); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "min_protocol %d: agents that speak an older protocol take no upgrade turns\n", m.minProtocol)
	return nil
}
