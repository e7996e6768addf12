package modes

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/roll"
)

func init() { register("promote", func() mode { return &promoteMode{} }) }

type promoteMode struct{}

func (*promoteMode) Synopsis() string {
	return "end a canary deploy: the rest of the hosts roll"
}

func (*promoteMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("promote", pflag.ContinueOnError), "promote SERVICE", `
` + "`dcroll order --canary N SERVICE`" + ` rolls N hosts of SERVICE (or N% of its
members) and pauses it with the reason "` + roll.CanaryWait + `".
Promote lifts that pause: the rest of the hosts roll, through the same
turns. ` + "`dcroll rollback SERVICE`" + ` takes the canaries back instead.`
}

func (*promoteMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return usageErr("want exactly one SERVICE, got %d arguments", len(args))
	}
	svc := args[0]
	if !config.ValidName(svc) {
		return usageErr("service %q is not a valid service name", svc)
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	was, err := store.Promote(svc)
	if err := recordAction(env, store, roll.HistoryEvent{Action: roll.ActPromote, Services: args,
		Detail: fmt.Sprintf("canary of %d hosts, %d turns taken", was.Hosts, was.Taken)}, err); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "promoted %s: the canary took %d of %d turns; the rest of the hosts roll\n", svc, was.Taken, was.Hosts)
	return nil
}
