package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
)

// rollLoop is this host's part of the rolling upgrade of svc for one
// session: when a release is staged, get it, verify it and unpack it next
// to the running one, join the ready queue, wait for the turn (roll decides
// when), and switch.
func (a *Agent) rollLoop(ctx context.Context, store *roll.Store, svc string) {
	backoff := newBackoff(time.Second, time.Minute)
	retry := func(err error, msg string) bool {
		d := backoff.NextBackOff()
		a.log.Warn(msg, "service", svc, "error", err, "retry_in", d)
		return clock.Sleep(ctx, d)
	}
	o := a.owners[svc]
	select {
	case <-ctx.Done():
		return
	case <-o.booted:
	}
	var unrecorded *roll.Failure
	select {
	case <-ctx.Done():
		return
	case unrecorded = <-o.rolling:
	}
	defer func() { o.rolling <- unrecorded }()
	if unrecorded != nil {
		// A failed switch whose turn ended with the last session: the
		// deploy must still halt on it.
		a.log.Warn("recording a failed switch whose turn ended with its session", "service", svc, "version", unrecorded.Version, "reason", unrecorded.Reason)
		if !a.finishTurn(ctx, store, svc, unrecorded) {
			return
		}
		unrecorded = nil
	}
	for ctx.Err() == nil {
		m, staged, changed, err := store.WatchManifest(svc)
		if err != nil {
			if !retry(err, "cannot read the staged release") {
				return
			}
			continue
		}
		if !staged || m.Version == a.units[svc].Version() {
			if !staged {
				a.pruneAbandoned(store) // an abort leaves no download to finish
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		if err := a.ensureRelease(ctx, store, svc, m.Version); err != nil {
			if ctx.Err() == nil {
				a.setStuck(svc, fmt.Sprintf("%s: %v", m.Version, err))
			}
			if !retry(err, "cannot get the staged release") {
				return
			}
			continue
		}
		a.setStuck(svc, "")
		if a.units[svc].Version() == "" {
			a.startFirst(ctx, svc, m.Version)
			continue
		}
		ready, err := store.JoinReady(svc, a.host, m.Version)
		if err != nil {
			if !retry(err, "cannot join the ready queue") {
				return
			}
			continue
		}
		a.log.Info("ready to upgrade, waiting for the turn", "service", svc, "version", m.Version)
		from := a.units[svc].Version()
		err = store.AwaitTurn(ctx, svc, a.host, ready, roll.Turn{From: from, To: m.Version, Started: time.Now().UTC()})
		if err != nil {
			// Leave the queue cleanly before trying again: after a
			// connection loss the session, and the node, may live on,
			// and a node left behind would stand in the queue for good.
			a.untilDone(ctx, svc, "cannot leave the ready queue", func() error {
				return store.LeaveReady(ready)
			})
			if errors.Is(err, roll.ErrReplaced) {
				a.log.Info("left the ready queue", "service", svc, "version", m.Version, "reason", err)
			}
			if errors.Is(err, roll.ErrLeftQueue) || ctx.Err() != nil {
				continue
			}
			if !retry(err, "waiting for the turn failed") {
				return
			}
			continue
		}
		backoff.Reset()
		took := time.Now()
		a.metrics.turnTaken(svc, took)
		// The turn's lines carry its id: a log collector finds them all.
		tlog := a.log.With("service", svc, "version", m.Version, "turn", turnID(a.host, took))
		tlog.Info("took the turn", "from", from, "to", m.Version)
		if err := a.checkArtifact(svc, m); err != nil {
			// Refused at switch time: give the turn back and fetch again.
			a.finishTurn(ctx, store, svc, nil)
			a.metrics.turnEnded(svc, took)
			tlog.Info("gave the turn back: the release on disk no longer matches")
			continue
		}
		failure, switched := a.requestSwitch(ctx, store, tlog, svc, from, m.Version)
		if switched {
			a.metrics.switched(svc, failure)
		}
		finished := a.finishTurn(ctx, store, svc, failure)
		a.metrics.turnEnded(svc, took)
		tlog.Info("turn over", "switched", switched, "failed", failure != nil, "released", finished, "took", time.Since(took).Round(time.Millisecond))
		if !finished && failure != nil {
			unrecorded = failure
			return
		}
		if switched && failure == nil {
			a.prune(svc, m.Version, from)
		}
	}
}

// turnID names one turn of a host in the logs: the host and when it took
// the turn, as a log collector can index it.
func turnID(host string, took time.Time) string {
	return host + "@" + took.UTC().Format(time.RFC3339Nano)
}

// setStuck records why svc's staged release cannot be had ("": it can)
// for /hosts/<host>, which status shows.
func (a *Agent) setStuck(svc, why string) {
	if len(why) > roll.MaxStuckReason {
		why = why[:roll.MaxStuckReason-3] + "..."
	}
	a.mu.Lock()
	old := a.stuck[svc]
	if why == "" {
		delete(a.stuck, svc)
	} else {
		a.stuck[svc] = why
	}
	a.mu.Unlock()
	if old != why {
		a.kickPublish()
	}
}

// finishTurn releases the turn, recording failure if any, and retries until
// ZooKeeper has it. A turn is an ephemeral node, but a connection lost for
// less than the session timeout does not end the session: a turn not
// released would hold its place in max_parallel, and keep the step from
// finishing, for as long as this agent lives. It reports whether ZooKeeper
// has it; if not, ctx ended first, and with a failure the caller hands it
// to the next session's loop.
func (a *Agent) finishTurn(ctx context.Context, store *roll.Store, svc string, failure *roll.Failure) bool {
	return a.untilDone(ctx, svc, "cannot finish the turn", func() error {
		return store.FinishTurn(svc, a.host, failure)
	})
}

// untilDone calls op until it succeeds or ctx ends (the agent stops, or the
// session ended and took the ephemeral nodes with it), backing off between
// tries. It reports whether op succeeded.
func (a *Agent) untilDone(ctx context.Context, svc, msg string, op func() error) bool {
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		err := op()
		if err == nil {
			return true
		}
		d := backoff.NextBackOff()
		a.log.Warn(msg+"; retrying", "service", svc, "error", err, "retry_in", d)
		if !clock.Sleep(ctx, d) {
			a.log.Error(msg+"; giving up, the session's end releases it", "service", svc, "error", err)
			return false
		}
	}
}

// advanceLoop takes part, for this session, in electing the one agent that
// advances the deploy queue when a step finishes without a turn ending it.
func (a *Agent) advanceLoop(ctx context.Context, store *roll.Store) {
	backoff := newBackoff(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		err := store.RunAdvancer(ctx, a.host)
		if err == nil || ctx.Err() != nil {
			return
		}
		d := backoff.NextBackOff()
		a.log.Warn("advancing the deploy queue failed, retrying", "error", err, "retry_in", d)
		if !clock.Sleep(ctx, d) {
			return
		}
	}
}
