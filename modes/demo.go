package modes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/demo"
)

func init() { register("demo", func() mode { return &demoMode{} }) }

// Environment variables of the demo. They do not start with DCROLL_, which
// the config loader reserves.
const (
	demoZooKeeperEnv = "DEMO_ZOOKEEPER"
	zooKeeperJarEnv  = "ZOOKEEPER_JAR"
)

type demoMode struct {
	hosts          int
	nonInteractive bool
	keep           bool
	detached       bool
}

func (*demoMode) Synopsis() string {
	return "run a throwaway data center on this machine and watch a rollout"
}

func (m *demoMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.IntVar(&m.hosts, "hosts", 9, fmt.Sprintf("number of hosts, %d to %d", demo.MinHosts, demo.MaxHosts))
	fs.BoolVar(&m.nonInteractive, "non-interactive", false, "print plain progress lines, no screen redraws and no pauses (tests, CI)")
	fs.BoolVar(&m.keep, "keep", false, "keep the temporary directory (configs, state, logs) for inspection")
	fs.BoolVar(&m.detached, "detached", false, "stage as stage --detach does: nobody seeds, the hosts take the release from the HTTP origin as a web seed and from each other")
	return fs, "demo [--hosts N] [--non-interactive] [--keep] [--detached]", `
Starts a ZooKeeper server (java and the Debian zookeeper package:
` + demo.InstallHint + `), seeds three services, db, api depending on db,
and web depending on api, and runs N agents on this machine, each a host
with its own state directory running all three services on version 1.
It then stages version 2 of all three, orders them, and shows the rollout:
service after service, never more hosts down than the quorum allows. While
api rolls, one host's agent is killed with SIGKILL, its services die with
it, and a few seconds later it comes back and catches up.

Everything lives in one temporary directory and stops when the demo ends,
done or interrupted with Ctrl-C. $` + demoZooKeeperEnv + `=host:port uses an
existing ZooKeeper instead (under a fresh root, deleted at the end, or the
one named by --root); $` + zooKeeperJarEnv + ` names another ZooKeeper jar.`
}

func (m *demoMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	if m.hosts < demo.MinHosts || m.hosts > demo.MaxHosts {
		return usageErr("--hosts %d: want %d to %d", m.hosts, demo.MinHosts, demo.MaxHosts)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the dcroll binary: %w", err)
	}
	o := demo.Options{
		Hosts:     m.hosts,
		Exe:       exe,
		Out:       env.Stdout,
		Live:      !m.nonInteractive && isTerminal(env.Stdout),
		Keep:      m.keep,
		ZooKeeper: lookupEnv(env.Environ, demoZooKeeperEnv),
		Root:      env.Root,
		Jar:       lookupEnv(env.Environ, zooKeeperJarEnv),
		Environ:   env.Environ,
		Detached:  m.detached,
	}
	if env.ZK != "" {
		o.ZooKeeper = env.ZK
	}
	err = demo.Run(ctx, o)
	if errors.Is(err, demo.ErrInterrupted) {
		return errors.New("interrupted")
	}
	if errors.Is(err, demo.ErrNoZooKeeper) {
		return fmt.Errorf("%s; install it with:\n  %s\nor point %s at a running ZooKeeper (host:port)",
			strings.TrimPrefix(err.Error(), "demo: "), demo.InstallHint, demoZooKeeperEnv)
	}
	return err
}

// lookupEnv returns the value of key in environ, "" if it is not set.
func lookupEnv(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
