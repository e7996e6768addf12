package modes

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/trust"
)

func init() { register("keygen", func() mode { return &keygenMode{} }) }

type keygenMode struct{}

func (*keygenMode) Synopsis() string {
	return "make an ed25519 key pair to sign releases with (stage --sign-key)"
}

func (*keygenMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	return pflag.NewFlagSet("keygen", pflag.ContinueOnError), "keygen FILE", `
Writes a new private key to FILE (mode 0600; an existing file is never
overwritten) and its public key to FILE.pub. Sign releases with
stage --sign-key FILE, keep FILE off the hosts and out of ZooKeeper's
reach, and list the public key in every host's [trust] keys: the hosts then
run only releases it signed. For a rotation, trust the old and the new key
until every release is signed with the new one.`
}

func (*keygenMode) Run(_ context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return usageErr("want exactly one FILE, got %d arguments", len(args))
	}
	k, err := trust.GenerateKey()
	if err != nil {
		return err
	}
	if err := trust.WriteKeyPair(k, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote the private key to %s and the public key to %s.pub (key %s)\n", args[0], args[0], k.Public.ID)
	fmt.Fprintf(env.Stdout, "trust it on the hosts, in /etc/dcroll/dcroll.toml:\n\n[trust]\nkeys = [%q]\n", k.Public.String())
	return nil
}
