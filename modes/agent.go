package modes

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/agent"
)

func init() { register("agent", func() mode { return &agentMode{} }) }

type agentMode struct {
	viewInterval time.Duration
	replace      bool
}

func (*agentMode) Synopsis() string {
	return "run this host's agent: serve its services, register them, take turns to upgrade"
}

func (m *agentMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	fs.DurationVar(&m.viewInterval, "view-interval", agent.DefaultViewInterval, "mean time between two reads of a service's fleet view, which the local cache keeps for the next boot")
	fs.BoolVar(&m.replace, "replace", false, "take the host name over from the machine it belongs to, whose agent is down: this machine replaces it")
	return fs, "agent [flags]", `
The agent starts every service of the host config at once, from the local
cache (the most popular version it saw in ZooKeeper, installed here), without
waiting for ZooKeeper. It then registers the host (/hosts, /members) for
this machine (refused while the host name is another machine's: see
--replace), health-checks each service and holds /current/<svc>/<host>
while it is healthy. It survives ZooKeeper outages and session expiry, and leaves
ZooKeeper at once on SIGTERM. systemd runs it as dcroll.service.`
}

func (m *agentMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	cfg, err := env.loadConfig()
	if err != nil {
		return err
	}
	log := env.logger(cfg)
	v, _ := BuildVersion()
	log.Info("starting", "version", v, "host", cfg.Host.Name, "services", len(cfg.Services))
	return agent.New(agent.Options{Config: cfg, Log: log, Version: v, ViewInterval: m.viewInterval, Replace: m.replace}).Run(ctx)
}
