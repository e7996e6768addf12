package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
)

// switchVersion moves svc from one version to another while this host
// holds the turn, and returns the failure if the new version did not
// become healthy (the host is then back on from). The intent is written to
// state.json first, so that a crash at any point is recovered at boot.
//
// A switch, once begun, runs to its end even if the agent is asked to stop
// (bounded by the health deadline): stopping halfway would leave the host
// on neither version, and would halt the deploy for no fault of the
// release. systemd's stop timeout is the backstop; the boot recovers.
//
// It runs in svc's owner (o), which meanwhile does nothing else.
func (a *Agent) switchVersion(ctx context.Context, store *roll.Store, log hclog.Logger, o *owner, from, to string) *roll.Failure {
	ctx = context.WithoutCancel(ctx)
	svc := o.svc
	policy := roll.Service{Health: roll.HealthPolicy{MinHealthy: roll.DefaultMinHealthy, Deadline: roll.DefaultDeadline}}
	if services, err := store.Services(); err == nil {
		if p, ok := services[svc]; ok {
			policy = p
		}
	}
	log = log.With("from", from, "to", to)
	log.Info("taking the turn: switching")

	a.mu.Lock()
	a.cache.Switch = &state.Switch{Service: svc, From: from, To: to, Started: time.Now().UTC()}
	a.mu.Unlock()
	a.saveCache()
	defer func() {
		a.mu.Lock()
		a.cache.Switch = nil
		a.mu.Unlock()
		a.saveCache()
	}()

	// Leave /current before stopping: the others count this host offline
	// from here on.
	if err := o.leaveCurrent(); err != nil {
		// Nothing was stopped: release the turn and queue again later. The
		// next health check puts the host back in /current.
		log.Warn("cannot leave /current; not switching this time", "error", err)
		return nil
	}
	reason := ""
	if err := a.restartAs(ctx, svc, to); err != nil {
		reason = err.Error()
	} else if err := a.awaitHealthy(ctx, svc, policy.Health); err != nil {
		reason = err.Error()
	}
	if reason == "" {
		log.Info("healthy on the new version")
		if err := o.enterCurrent(to); err != nil {
			log.Warn("cannot re-enter /current yet; the ZooKeeper loop retries", "error", err)
		}
		return nil
	}

	log.Error("the new version failed; switching back", "reason", reason)
	if err := a.restartAs(ctx, svc, from); err != nil {
		log.Error("cannot start the old version again", "error", err)
	} else if err := a.awaitHealthy(ctx, svc, policy.Health); err != nil {
		log.Error("the old version is not healthy either", "error", err)
	} else if err := o.enterCurrent(from); err != nil {
		log.Warn("cannot re-enter /current yet; the ZooKeeper loop retries", "error", err)
	}
	return &roll.Failure{Host: a.host, Version: to, Reason: reason, At: time.Now().UTC()}
}

// restartAs stops svc and starts version: the symlink swap is one rename.
func (a *Agent) restartAs(ctx context.Context, svc, version string) error {
	if err := a.units[svc].Stop(ctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := a.start(ctx, svc, version); err != nil {
		return fmt.Errorf("start %s: %w", version, err)
	}
	return nil
}

// recoverSwitch finishes, at boot, a switch that a crash interrupted: the
// new version was never confirmed healthy, so the host goes back to the
// old one, complete on disk, and will queue for its turn again.
func (a *Agent) recoverSwitch() {
	sw := a.cache.Switch
	if sw == nil {
		return
	}
	a.cache.Switch = nil
	rel, ok := a.rels[sw.Service]
	if !ok {
		return
	}
	a.log.Warn("recovering an interrupted switch: back to the old version", "service", sw.Service, "from", sw.From, "to", sw.To)
	if err := rel.Activate(sw.From); err != nil {
		a.log.Error("cannot point the release back", "service", sw.Service, "version", sw.From, "error", err)
	}
	s := a.cacheService(sw.Service)
	s.Running = sw.From
	// The cache's fleet view may favour the new version; this boot starts
	// the old one and the turn decides the rest.
	a.recovered = sw
	a.saveCache()
}
