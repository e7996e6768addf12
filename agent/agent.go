// Package agent is what `dcroll agent` runs on every host: it starts the
// host's services from the local cache without waiting on ZooKeeper,
// health-checks them, and mirrors their state into ZooKeeper (presence,
// membership, /current) across disconnects and session expiries. The
// protocol's data model lives in roll; the local disk in state.
package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/service"
	"github.com/dcroll/dcroll/state"
)

// Options configure an agent.
type Options struct {
	Config *config.Config
	Log    hclog.Logger
	// Version is the agent's own version, published in /hosts.
	Version string
	// ViewInterval is the mean time between two reads of a service's
	// fleet view (roll.FleetView), which the cache keeps for the next boot.
	ViewInterval time.Duration
	// InProcess, if set, plays each service inside this process instead of
	// running its commands: for the fleet simulator.
	InProcess func(host, svc string) service.InProcess
	// Started, if set, is called once per service when its first start
	// returns (for the boot benchmark and tests).
	Started func(svc, version string)
}

// DefaultViewInterval is how often, on average, an agent reads the fleet
// view: 10,000 hosts then cost the ensemble 33 reads a second.
const DefaultViewInterval = 5 * time.Minute

// Agent runs one host's services.
type Agent struct {
	opts  Options
	cfg   *config.Config
	log   hclog.Logger
	host  string
	names []string // the services, sorted
	units map[string]*service.Unit
	rels  map[string]state.Releases
	// ops serializes what stops and starts one service: the health loop's
	// restarts and the move to the fleet's version.
	ops map[string]*sync.Mutex
	// fetchMu serializes getting a service's releases onto the disk.
	fetchMu map[string]*sync.Mutex

	mu      sync.Mutex
	cache   *state.File
	desired map[string]*roll.Current // what /current/<svc>/<host> should say; nil: absent
	booted  map[string]bool          // the fleet's version was applied once since boot
	// bootedCh[svc] is closed once booted[svc] is set: the upgrade loop
	// waits for it, so that a host back from a long absence first moves
	// to the fleet's version instead of queueing for a turn.
	bootedCh map[string]chan struct{}

	kick    chan struct{}
	watches sync.WaitGroup

	// pubMu makes publishing /current and a switch's leaving it mutually
	// exclusive, so a stale write can never put a stopping host back.
	pubMu sync.Mutex
	// switching marks services mid-switch: the health loop leaves their
	// /current node to the switch.
	switching map[string]bool
	recovered *state.Switch // a switch interrupted by a crash, rolled back at boot
	fetcher   fetch.Fetcher
	swarm     *fetch.Swarm          // nil without transfer.torrent_listen
	seeding   map[string]string     // "svc/version" -> infohash seeded; a.mu
	fetching  map[string]roll.Fetch // downloads in progress, by service; a.mu
	started   time.Time
	artifacts string // where fetched artifacts are kept and served from
}

// New prepares an agent; Run starts it.
func New(o Options) *Agent {
	if o.ViewInterval == 0 {
		o.ViewInterval = DefaultViewInterval
	}
	a := &Agent{
		opts:      o,
		cfg:       o.Config,
		log:       o.Log,
		host:      o.Config.Host.Name,
		units:     map[string]*service.Unit{},
		rels:      map[string]state.Releases{},
		ops:       map[string]*sync.Mutex{},
		desired:   map[string]*roll.Current{},
		booted:    map[string]bool{},
		bootedCh:  map[string]chan struct{}{},
		fetchMu:   map[string]*sync.Mutex{},
		switching: map[string]bool{},
		seeding:   map[string]string{},
		fetching:  map[string]roll.Fetch{},
		started:   time.Now().UTC(),
		fetcher:   fetch.HTTP{},
		artifacts: filepath.Join(o.Config.Host.StateDir, "artifacts"),
		kick:      make(chan struct{}, 1),
	}
	for name, sc := range o.Config.Services {
		if o.InProcess != nil {
			a.units[name] = service.NewInProcess(name, sc, o.Log, o.InProcess(a.host, name))
		} else {
			a.units[name] = service.New(name, sc, o.Log)
		}
		a.rels[name] = state.Releases{Dir: sc.Releases}
		a.ops[name] = &sync.Mutex{}
		a.fetchMu[name] = &sync.Mutex{}
		a.bootedCh[name] = make(chan struct{})
	}
	a.names = slices.Sorted(maps.Keys(a.units))
	return a
}

// serviceNames lists the host's services in name order.
func (a *Agent) serviceNames() []string { return a.names }

// Run serves until ctx is cancelled, then leaves ZooKeeper, stops the
// services it supervises, and returns.
func (a *Agent) Run(ctx context.Context) error {
	cache, err := state.Load(a.cfg.Host.StateDir)
	if err != nil {
		// A bad cache must not keep services down: start from the releases
		// on disk and rebuild the cache from ZooKeeper.
		a.log.Error("ignoring the local cache", "error", err)
		cache = &state.File{}
	}
	if cache.Services == nil {
		cache.Services = map[string]*state.Service{}
	}
	a.cache = cache
	a.recoverSwitch()

	// Services first, ZooKeeper second: the host serves even when the
	// ensemble is unreachable.
	for _, svc := range a.serviceNames() {
		a.startFromCache(ctx, svc)
	}
	var wg sync.WaitGroup
	for _, svc := range a.serviceNames() {
		wg.Add(1)
		go func() { defer wg.Done(); a.healthLoop(ctx, svc) }()
	}

	peers, err := a.servePeers()
	if err != nil {
		a.log.Error("cannot serve releases to peers", "listen", a.cfg.Transfer.Listen, "error", err)
	}
	if t := a.cfg.Transfer; t.TorrentListen != "" {
		a.swarm, err = fetch.NewSwarm(fetch.SwarmConfig{
			DataDir:      filepath.Join(a.cfg.Host.StateDir, "torrent"),
			Listen:       t.TorrentListen,
			UploadRate:   t.UploadRate,
			DownloadRate: t.DownloadRate,
			Logger:       a.log.Named("torrent"),
		})
		if err != nil {
			a.log.Error("no BitTorrent: releases come over HTTP", "listen", t.TorrentListen, "error", err)
		}
	}

	store, events, err := roll.Dial(a.cfg.ZooKeeper, a.log)
	if err != nil {
		a.log.Error("cannot use ZooKeeper; serving from the local cache only", "error", err)
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); a.zkLoop(ctx, store, events) }()
	}

	<-ctx.Done()
	wg.Wait()
	a.watches.Wait()
	if peers != nil {
		peers.Close()
	}
	if a.swarm != nil {
		_ = a.swarm.Close()
	}
	if store != nil {
		// Closing the session removes this host's ephemeral nodes (/hosts
		// and /current) at once, not after the session timeout.
		store.Close()
		a.log.Info("left ZooKeeper")
	}
	stopCtx := context.Background()
	for _, svc := range a.serviceNames() {
		if u := a.units[svc]; u.Supervised() {
			if err := u.Stop(stopCtx); err != nil {
				a.log.Error("stop", "service", svc, "error", err)
			}
		}
	}
	return nil
}

// pickVersion chooses what to start: the most popular version of the fleet
// that is installed here, else the version this host ran last, else the
// newest installed release.
func (a *Agent) pickVersion(svc string) (string, error) {
	installed, err := a.rels[svc].Installed()
	if err != nil {
		return "", err
	}
	if len(installed) == 0 {
		return "", fmt.Errorf("no release installed in %s", a.rels[svc].Dir)
	}
	have := map[string]bool{}
	for _, v := range installed {
		have[v] = true
	}
	a.mu.Lock()
	cached := a.cache.Services[svc]
	a.mu.Unlock()
	if cached != nil {
		for _, v := range byPopularity(cached.Fleet) {
			if have[v] {
				return v, nil
			}
		}
		if have[cached.Running] {
			return cached.Running, nil
		}
	}
	return installed[len(installed)-1], nil
}

// byPopularity orders versions by host count, most first; ties go to the
// newer version.
func byPopularity(fleet map[string]int) []string {
	vs := make([]string, 0, len(fleet))
	for v := range fleet {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		if fleet[vs[i]] != fleet[vs[j]] {
			return fleet[vs[i]] > fleet[vs[j]]
		}
		return state.CompareVersions(vs[i], vs[j]) > 0
	})
	return vs
}

func (a *Agent) startFromCache(ctx context.Context, svc string) {
	v, err := a.pickVersion(svc)
	if sw := a.recovered; sw != nil && sw.Service == svc && a.units[svc].Version() == "" {
		v, err = sw.From, nil
	}
	if err != nil {
		a.log.Error("cannot start", "service", svc, "error", err)
		return
	}
	if err := a.start(ctx, svc, v); err != nil {
		a.log.Error("cannot start", "service", svc, "version", v, "error", err)
	}
}

// start points the release symlink at v and starts it.
func (a *Agent) start(ctx context.Context, svc, v string) error {
	rel := a.rels[svc]
	if err := rel.Activate(v); err != nil {
		return err
	}
	if err := a.units[svc].Start(ctx, v, rel.Path(v)); err != nil {
		return err
	}
	if a.opts.Started != nil {
		a.opts.Started(svc, v)
	}
	a.mu.Lock()
	s := a.cacheService(svc)
	changed := s.Running != v
	s.Running = v
	a.mu.Unlock()
	if changed {
		a.saveCache()
	}
	return nil
}

// cacheService returns the cache entry of svc, creating it. a.mu is held.
func (a *Agent) cacheService(svc string) *state.Service {
	s := a.cache.Services[svc]
	if s == nil {
		s = &state.Service{}
		a.cache.Services[svc] = s
	}
	return s
}

func (a *Agent) saveCache() {
	a.mu.Lock()
	snapshot := &state.File{Services: map[string]*state.Service{}, Switch: a.cache.Switch}
	for k, v := range a.cache.Services {
		c := *v
		c.Fleet = maps.Clone(v.Fleet)
		snapshot.Services[k] = &c
	}
	a.mu.Unlock()
	if err := state.Save(a.cfg.Host.StateDir, snapshot); err != nil {
		a.log.Error("cannot write the local cache", "error", err)
	}
}

// healthLoop checks svc every interval, restarts a supervised process that
// died, and publishes the result as the desired /current node.
func (a *Agent) healthLoop(ctx context.Context, svc string) {
	u := a.units[svc]
	var healthy bool
	var since time.Time
	backoff := u.Interval()
	nextRestart := time.Now()
	ticker := time.NewTicker(u.Interval())
	defer ticker.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		if a.isSwitching(svc) {
			healthy = false
			if !waitTick(ctx, ticker) {
				return
			}
			continue
		}
		if u.Version() == "" || !u.Running() {
			if time.Now().After(nextRestart) {
				a.log.Warn("service not running, starting it", "service", svc)
				a.ops[svc].Lock()
				if u.Version() == "" || !u.Running() {
					a.startFromCache(ctx, svc)
				}
				a.ops[svc].Unlock()
				nextRestart = time.Now().Add(backoff)
				backoff = min(2*backoff, 30*time.Second)
			}
		}
		err := u.Check(ctx)
		now := err == nil
		if now && !healthy {
			since = time.Now().UTC()
			backoff = u.Interval()
			a.log.Info("healthy", "service", svc, "version", u.Version())
		}
		if !now && healthy {
			a.log.Warn("unhealthy", "service", svc, "version", u.Version(), "error", err)
		}
		if (now != healthy || (now && a.desiredVersion(svc) != u.Version())) && !a.isSwitching(svc) {
			healthy = now
			var c *roll.Current
			if healthy {
				c = &roll.Current{Version: u.Version(), Since: since}
			}
			a.setDesired(svc, c)
		}
		if !waitTick(ctx, ticker) {
			return
		}
	}
}

func waitTick(ctx context.Context, t *time.Ticker) bool {
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *Agent) isSwitching(svc string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.switching[svc]
}

func (a *Agent) desiredVersion(svc string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.desired[svc]; c != nil {
		return c.Version
	}
	return ""
}

func (a *Agent) setDesired(svc string, c *roll.Current) {
	a.mu.Lock()
	a.desired[svc] = c
	a.mu.Unlock()
	a.kickPublish()
}

// kickPublish asks the ZooKeeper loop to write what changed.
func (a *Agent) kickPublish() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// zkLoop keeps ZooKeeper in line with this host: on every new session it
// registers the host and its memberships and starts the watches, and on
// every health change it writes /current. Nothing here blocks the services.
func (a *Agent) zkLoop(ctx context.Context, store *roll.Store, events <-chan roll.SessionEvent) {
	var (
		sess   = &session{}
		retry  <-chan time.Time
		authed bool
	)
	stopWatches := func() {}
	defer func() { stopWatches() }()
	sync := func() {
		retry = nil
		if !authed {
			if err := store.Authenticate(); err != nil {
				a.log.Error("zookeeper authentication", "error", err)
				retry = time.After(time.Second)
				return
			}
			authed = true
		}
		if err := a.publish(store, sess); err != nil {
			a.log.Warn("zookeeper update failed, retrying", "error", err)
			retry = time.After(time.Second)
		}
	}
	// Events can be dropped by go-zookeeper when its channel is full, so
	// the session is judged from the connection itself, on every event and
	// every second.
	check := func() {
		now := store.Session()
		if !now.Up {
			return
		}
		if id := now.ID; id != sess.id {
			if sess.id != 0 {
				a.log.Info("new ZooKeeper session, registering again", "session", fmt.Sprintf("%#x", id))
			} else {
				a.log.Info("joined ZooKeeper", "server", now.Server, "session", fmt.Sprintf("%#x", id))
			}
			// Everything ephemeral of the old session is gone.
			sess = &session{id: id, published: map[string]*roll.Current{}}
			stopWatches()
			stopWatches = a.startWatches(ctx, store)
			sync()
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			switch ev.State {
			case roll.SessionExpired:
				a.log.Warn("ZooKeeper session expired; services keep running, registering again on reconnect")
			case roll.SessionDisconnected:
				a.log.Warn("lost ZooKeeper; services keep running", "server", ev.Server)
			}
			check()
		case <-tick.C:
			check()
		case <-a.kick:
			check()
			if sess.id != 0 {
				sync()
			}
		case <-retry:
			sync()
		}
	}
}

// startWatches starts one watch loop per service for this session and
// returns what stops them.
func (a *Agent) startWatches(ctx context.Context, store *roll.Store) context.CancelFunc {
	wctx, cancel := context.WithCancel(ctx)
	a.watches.Add(1)
	go func() { defer a.watches.Done(); a.advanceLoop(wctx, store) }()
	for _, svc := range a.serviceNames() {
		a.watches.Add(2)
		go func() { defer a.watches.Done(); a.watchLoop(wctx, store, svc) }()
		go func() { defer a.watches.Done(); a.rollLoop(wctx, store, svc) }()
	}
	return cancel
}

// session is what this host has written in one ZooKeeper session.
type session struct {
	id         int64
	registered bool                     // the memberships
	host       *roll.Host               // what /hosts/<host> says
	published  map[string]*roll.Current // per service; absent: not yet written
}

// publish writes what changed since the last call in this session.
func (a *Agent) publish(store *roll.Store, sess *session) error {
	if !sess.registered {
		for _, svc := range a.serviceNames() {
			if err := store.EnsureMember(svc, a.host, roll.Member{Joined: time.Now().UTC()}); err != nil {
				return err
			}
		}
		sess.registered = true
	}
	// /hosts/<host>: written once per session, and again when the
	// downloads in progress change (at most every couple of seconds).
	a.mu.Lock()
	h := roll.Host{
		Agent:    a.opts.Version,
		Started:  a.started,
		Rack:     a.cfg.Host.Rack,
		Site:     a.cfg.Host.Site,
		Services: a.serviceNames(),
		PeerAddr: a.cfg.Transfer.Advertise,
		Fetching: maps.Clone(a.fetching),
	}
	a.mu.Unlock()
	if a.swarm != nil {
		h.TorrentAddr = a.cfg.Transfer.TorrentAdvertise
	}
	if sess.host == nil || !reflect.DeepEqual(*sess.host, h) {
		if err := store.RegisterHost(a.host, h); err != nil {
			return err
		}
		sess.host = &h
	}
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	a.mu.Lock()
	want := maps.Clone(a.desired)
	booted := maps.Clone(a.booted)
	a.mu.Unlock()
	var errs []error
	for _, svc := range a.serviceNames() {
		w := want[svc]
		if !booted[svc] {
			// Not before the first look at the fleet: the host may still
			// move to the fleet's version.
			w = nil
		}
		if p, ok := sess.published[svc]; ok && sameCurrent(w, p) {
			continue
		}
		var err error
		if w != nil {
			err = store.SetCurrent(svc, a.host, *w)
		} else {
			err = store.ClearCurrent(svc, a.host)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sess.published[svc] = w
	}
	return errors.Join(errs...)
}

func sameCurrent(a, b *roll.Current) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Version == b.Version && a.Since.Equal(b.Since)
}

// watchLoop keeps the cached view of svc's fleet for this session: it
// reads the fleet view (one node) at once, then every ViewInterval or so,
// with jitter. It does not watch: a watch would wake every host on every
// change of the fleet, and the view only serves the next boot.
func (a *Agent) watchLoop(ctx context.Context, store *roll.Store, svc string) {
	for ctx.Err() == nil {
		var view roll.FleetView
		var err error
		if a.isBooted(svc) {
			view, err = store.FleetView(svc)
		} else {
			view, err = store.BootView(ctx, svc)
		}
		if err != nil {
			a.log.Warn("cannot read the fleet", "service", svc, "error", err)
			if !wait(ctx, time.Second+rand.N(time.Second)) {
				return
			}
			continue
		}
		a.observe(ctx, store, svc, view.Versions)
		// Between half and one and a half intervals: hosts that booted
		// together do not read together.
		if !wait(ctx, a.opts.ViewInterval/2+rand.N(a.opts.ViewInterval)) {
			return
		}
	}
}

func (a *Agent) isBooted(svc string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.booted[svc]
}

func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// observe records the fleet's versions of svc in the cache and, the first
// time after boot, moves this host to the fleet's version if it started
// another one (a first boot with an empty cache starts the newest release).
func (a *Agent) observe(ctx context.Context, store *roll.Store, svc string, fleet map[string]int) {
	if fleet == nil {
		fleet = map[string]int{}
	}
	a.mu.Lock()
	s := a.cacheService(svc)
	changed := !maps.Equal(s.Fleet, fleet)
	if changed {
		s.Fleet = fleet
		s.Seen = time.Now().UTC()
	}
	first := !a.booted[svc]
	a.mu.Unlock()
	if changed {
		a.saveCache()
	}
	if !first {
		return
	}
	// This host is not in /current until this first look is done (see
	// publish), so moving now takes nothing away from the service.
	defer func() {
		a.mu.Lock()
		a.booted[svc] = true
		a.mu.Unlock()
		close(a.bootedCh[svc])
		a.kickPublish()
	}()
	// This host is not in /current before this look (see publish), so the
	// view counts the others; one older than this host's last session may
	// still count it too, which only tips a tie.
	if len(fleet) == 0 {
		return
	}
	want := byPopularity(fleet)[0]
	u := a.units[svc]
	if u.Version() == want {
		return
	}
	if err := a.ensureRelease(ctx, store, svc, want); err != nil {
		a.log.Warn("cannot get the fleet's version; keeping this one", "service", svc, "fleet", want, "running", u.Version(), "error", err)
		return
	}
	a.ops[svc].Lock()
	defer a.ops[svc].Unlock()
	a.log.Info("moving to the fleet's version", "service", svc, "from", u.Version(), "to", want)
	a.setDesired(svc, nil)
	if err := u.Stop(ctx); err != nil {
		a.log.Error("stop", "service", svc, "error", err)
	}
	if err := a.start(ctx, svc, want); err != nil {
		a.log.Error("cannot start", "service", svc, "version", want, "error", err)
	}
}
