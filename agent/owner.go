package agent

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/service"
)

// owner is the one goroutine that owns a service's state on this host: its
// health, what /current/<svc>/<host> should say, the switch to a new
// version and the move to the fleet's version at boot. It is the only one
// that starts or stops the service once the agent runs. The others talk to
// it with messages: the fleet view (fleetIs), a switch (requestSwitch).
type owner struct {
	a   *Agent
	svc string
	u   *service.Unit

	fleet    chan fleetView // the newest view of the fleet; older ones are dropped
	switches chan switchReq
	firsts   chan firstReq
	moved    chan moveResult // the boot move's fetch is done
	// booted is closed by run, once, when the boot move is done: the
	// upgrade loop waits for it, so that a host back from a long absence
	// first moves to the fleet's version instead of queueing for a turn.
	booted chan struct{}
	// rolling is held by the one upgrade loop of svc that runs: a new
	// session's loop waits until the old session's loop has ended, for a
	// switch runs to its end even when its session is gone, and until it
	// has, the unit's version is not the one to judge the staged release
	// by. The loop that lets go passes on a failure it could not record
	// (its turn went with its session), and the next one records it.
	rolling chan *roll.Failure

	// Owned by run alone.
	healthy     bool
	since       time.Time // healthy since
	restarts    *backoff.ExponentialBackOff
	nextRestart time.Time
	moving      bool // the boot move is fetching the fleet's version
	isBooted    bool
}

// fleetView is the fleet's versions of one service: how many hosts run
// each version (this one included), and the version /current says this
// host runs ("" when it is not there).
type fleetView struct {
	versions map[string]int
	mine     string
}

// others is the view without this host.
func (v fleetView) others() map[string]int {
	others := maps.Clone(v.versions)
	if v.mine != "" {
		if others[v.mine]--; others[v.mine] <= 0 {
			delete(others, v.mine)
		}
	}
	return others
}

type switchReq struct {
	store    *roll.Store
	log      hclog.Logger // the turn's, with its keys
	from, to string
	done     chan *roll.Failure // buffered: the owner never waits on it
}

// firstReq asks the owner to start a service that runs nothing yet.
type firstReq struct {
	version string
	done    chan struct{}
}

type moveResult struct {
	version string
	err     error
}

func newOwner(a *Agent, svc string) *owner {
	u := a.units[svc]
	o := &owner{
		a: a, svc: svc, u: u,
		fleet:    make(chan fleetView, 1),
		switches: make(chan switchReq),
		firsts:   make(chan firstReq),
		moved:    make(chan moveResult, 1),
		booted:   make(chan struct{}),
		rolling:  make(chan *roll.Failure, 1),
		restarts: newBackoff(u.Interval(), 30*time.Second),
	}
	o.rolling <- nil
	return o
}

// run is the owner's loop: a health check every interval, and the
// messages in between. A switch runs to its end inside it, so nothing
// else touches the service meanwhile.
func (o *owner) run(ctx context.Context) {
	t := time.NewTicker(o.u.Interval())
	defer t.Stop()
	o.checkHealth(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.checkHealth(ctx)
		case v := <-o.fleet:
			o.observe(ctx, v)
		case r := <-o.moved:
			o.finishMove(ctx, r)
		case req := <-o.switches:
			req.done <- o.a.switchVersion(ctx, req.store, req.log, o, req.from, req.to)
		case req := <-o.firsts:
			o.startFirst(ctx, req.version)
			close(req.done)
		}
	}
}

// fleetIs tells the owner of svc the fleet's versions now. It never
// blocks: a view not yet taken is replaced by the newer one.
func (a *Agent) fleetIs(svc string, v fleetView) {
	ch := a.owners[svc].fleet
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// requestSwitch has the owner of svc switch it from one version to
// another, and returns the failure, if any. ok is false when the switch
// did not begin because ctx ended first.
func (a *Agent) requestSwitch(ctx context.Context, store *roll.Store, log hclog.Logger, svc, from, to string) (failure *roll.Failure, ok bool) {
	req := switchReq{store: store, log: log, from: from, to: to, done: make(chan *roll.Failure, 1)}
	select {
	case a.owners[svc].switches <- req:
	case <-ctx.Done():
		return nil, false
	}
	// Once begun, a switch runs to its end (see switchVersion).
	return <-req.done, true
}

// startFirst has the owner of svc start version, unpacked, if svc runs
// nothing yet: a fresh host's first release needs no turn, since starting
// it takes nothing away from the service.
func (a *Agent) startFirst(ctx context.Context, svc, version string) {
	req := firstReq{version: version, done: make(chan struct{})}
	select {
	case a.owners[svc].firsts <- req:
		<-req.done
	case <-ctx.Done():
	}
}

func (o *owner) startFirst(ctx context.Context, version string) {
	if o.u.Version() != "" {
		return
	}
	o.a.log.Info("starting the first release", "service", o.svc, "version", version)
	if err := o.a.start(ctx, o.svc, version); err != nil {
		o.a.log.Error("cannot start", "service", o.svc, "version", version, "error", err)
	}
	o.restarts.Reset()
	o.nextRestart = time.Now().Add(o.restarts.NextBackOff())
}

// checkHealth checks the service once, restarts a supervised process that
// died, and sets what /current should say.
func (o *owner) checkHealth(ctx context.Context) {
	u := o.u
	if (u.Version() == "" || !u.Running()) && time.Now().After(o.nextRestart) {
		o.a.log.Warn("service not running, starting it", "service", o.svc)
		o.a.startFromCache(ctx, o.svc)
		o.nextRestart = time.Now().Add(o.restarts.NextBackOff())
	}
	err := u.Check(ctx)
	now := err == nil
	if now && !o.healthy {
		o.since = time.Now().UTC()
		o.restarts.Reset()
		o.a.log.Info("healthy", "service", o.svc, "version", u.Version())
	}
	if !now && o.healthy {
		o.a.log.Warn("unhealthy", "service", o.svc, "version", u.Version(), "error", err)
	}
	if now != o.healthy {
		o.a.metrics.setHealthy(o.svc, now, time.Now())
	}
	if now != o.healthy || (now && o.desiredVersion() != u.Version()) {
		o.healthy = now
		var c *roll.Current
		if now {
			c = &roll.Current{Version: u.Version(), Since: o.since}
		}
		o.setDesired(c)
		o.a.kickPublish()
	}
}

func (o *owner) desiredVersion() string {
	o.a.mu.Lock()
	defer o.a.mu.Unlock()
	if c := o.a.desired[o.svc]; c != nil {
		return c.Version
	}
	return ""
}

// setDesired sets what /current/<svc>/<host> should say; the ZooKeeper
// loop writes it.
func (o *owner) setDesired(c *roll.Current) {
	o.a.mu.Lock()
	o.a.desired[o.svc] = c
	o.a.mu.Unlock()
}

// leaveCurrent takes the host out of /current/<svc> and returns once
// ZooKeeper has it: the others count it offline from then on.
func (o *owner) leaveCurrent() error {
	if o.healthy {
		o.a.metrics.setHealthy(o.svc, false, time.Now())
	}
	o.healthy = false
	o.setDesired(nil)
	return o.a.flush()
}

// enterCurrent puts the host back in /current/<svc> on version.
func (o *owner) enterCurrent(version string) error {
	if !o.healthy {
		o.a.metrics.setHealthy(o.svc, true, time.Now())
	}
	o.healthy, o.since = true, time.Now().UTC()
	o.setDesired(&roll.Current{Version: version, Since: o.since})
	return o.a.flush()
}

// observe records the fleet's versions in the cache and, the first time,
// moves this host to the fleet's version if it started another one (a
// first boot with an empty cache starts the newest release). The host is
// not in /current until that move is done (see publish), so moving takes
// nothing away from the service.
func (o *owner) observe(ctx context.Context, v fleetView) {
	a := o.a
	a.mu.Lock()
	s := a.cacheService(o.svc)
	changed := !maps.Equal(s.Fleet, v.versions)
	if changed {
		s.Fleet = maps.Clone(v.versions)
		s.Seen = time.Now().UTC()
	}
	a.mu.Unlock()
	if changed {
		a.saveCache()
	}
	if o.isBooted || o.moving {
		return
	}
	others := v.others()
	if len(others) == 0 {
		o.boot()
		return
	}
	want := byPopularity(others)[0]
	if o.u.Version() == want {
		o.boot()
		return
	}
	// Fetching may take long: the owner goes on checking health
	// meanwhile, and finishes the move when the fetch is done.
	o.moving = true
	a.moves.Add(1)
	go func() {
		defer a.moves.Done()
		o.moved <- moveResult{version: want, err: a.ensureRelease(ctx, a.store, o.svc, want)}
	}()
}

// finishMove moves to the fleet's version once it is on disk.
func (o *owner) finishMove(ctx context.Context, r moveResult) {
	o.moving = false
	defer o.boot()
	if r.err != nil {
		o.a.log.Warn("cannot get the fleet's version; keeping this one", "service", o.svc, "fleet", r.version, "running", o.u.Version(), "error", r.err)
		return
	}
	o.a.log.Info("moving to the fleet's version", "service", o.svc, "from", o.u.Version(), "to", r.version)
	if o.healthy {
		o.a.metrics.setHealthy(o.svc, false, time.Now())
	}
	o.healthy = false
	o.setDesired(nil)
	if err := o.u.Stop(ctx); err != nil {
		o.a.log.Error("stop", "service", o.svc, "error", err)
	}
	if err := o.a.start(ctx, o.svc, r.version); err != nil {
		o.a.log.Error("cannot start", "service", o.svc, "version", r.version, "error", err)
	}
}

// boot marks the boot move done: publish may now write /current, and the
// upgrade loop may queue for turns.
func (o *owner) boot() {
	if o.isBooted {
		return
	}
	o.isBooted = true
	o.a.mu.Lock()
	o.a.booted[o.svc] = true
	o.a.mu.Unlock()
	close(o.booted)
	o.a.kickPublish()
}

// errNoSession is flush's answer when there is no ZooKeeper session to
// write in.
var errNoSession = errors.New("no ZooKeeper session")

// flush has the ZooKeeper loop, the one writer of /current, write what
// every service's owner wants now, and returns its result.
func (a *Agent) flush() error {
	done := make(chan error, 1)
	select {
	case a.flushes <- done:
	case <-a.zkDone:
		return errNoSession
	}
	return <-done
}
