package modes

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

func init() { register("forget", func() mode { return &forgetMode{} }) }

type forgetMode struct{}

func (*forgetMode) Synopsis() string {
	return "remove a retired host from every service, so that quorums no longer count it"
}

func (*forgetMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("forget", pflag.ContinueOnError), "forget HOST", `
A host stays a member of its services, and counts in their quorums as
offline, until it is forgotten. Forget it once it is retired or renamed.
It is refused while the host's agent is up (its /hosts node exists): stop
dcroll on the host first. A forgotten host that comes back joins again.`
}

func (*forgetMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return usageErr("want exactly one HOST, got %d arguments", len(args))
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	forgot, err := store.Forget(args[0])
	if err != nil {
		return err
	}
	if len(forgot) == 0 {
		fmt.Fprintf(env.Stdout, "%s is not a member of any service; nothing to forget\n", args[0])
		return nil
	}
	fmt.Fprintf(env.Stdout, "forgot %s: no longer a member of %s\n", args[0], strings.Join(forgot, ", "))
	return nil
}
