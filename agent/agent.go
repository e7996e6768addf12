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
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/service"
	"github.com/dcroll/dcroll/state"
	"github.com/dcroll/dcroll/trust"
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
	// Replace takes the host name over from a machine whose agent is down
	// but whose memberships still name it: this machine replaces it (see
	// roll.Claim). It never takes a name whose holder's agent is up.
	Replace bool
}

// DefaultViewInterval is how often, on average, an agent reads the fleet
// view: 10,000 hosts then cost the ensemble 33 reads a second.
const DefaultViewInterval = 5 * time.Minute

// Agent runs one host's services. The goroutines (see Run): one owner per
// service (owner.go), which alone starts, stops, health-checks and switches
// it; the ZooKeeper loop (zkLoop), which alone writes this host's nodes;
// and, per session, a watch loop and an upgrade loop per service and the
// advancer.
//
// Fields without a note are set by New or by Run before the goroutines
// start, and only read after.
type Agent struct {
	opts      Options
	cfg       *config.Config
	log       hclog.Logger
	host      string
	machine   string   // this machine's id (internal/machineid); empty: none
	names     []string // the services, sorted
	units     map[string]*service.Unit
	rels      map[string]state.Releases
	owners    map[string]*owner
	fetcher   fetch.Fetcher
	swarm     *fetch.Swarm // nil without transfer.torrent_listen
	started   time.Time
	artifacts string            // where fetched artifacts are kept and served from
	peerToken string            // transfer.peer_token_file's token; empty: none
	trusted   []trust.PublicKey // [trust] keys; empty: releases need no signature
	recovered *state.Switch     // a switch interrupted by a crash, rolled back at boot
	metrics   *metrics
	// store is set by Run before the ZooKeeper loop starts; the owners
	// use it only on a message sent after that.
	store *roll.Store

	// fetchMu serializes getting a service's releases onto the disk: the
	// boot move and the upgrade loops of the old and the new session.
	fetchMu map[string]*sync.Mutex

	mu    sync.Mutex // guards the fields below
	cache *state.File
	// desired[svc] is what /current/<svc>/<host> should say (nil: absent),
	// and booted[svc] whether the boot move is done; both are written by
	// svc's owner alone and read by publish.
	desired  map[string]*roll.Current
	booted   map[string]bool
	seeding  map[string]string     // "svc/version" -> infohash seeded
	fetching map[string]roll.Fetch // downloads in progress, by service
	stuck    map[string]string     // why a staged release cannot be had, by service

	kick    chan struct{}   // asks the ZooKeeper loop to publish
	flushes chan chan error // asks it to publish now and answer
	zkDone  chan struct{}   // closed when the ZooKeeper loop is gone
	watches sync.WaitGroup  // the per-session loops
	moves   sync.WaitGroup  // the boot moves' fetches
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
		owners:    map[string]*owner{},
		desired:   map[string]*roll.Current{},
		booted:    map[string]bool{},
		fetchMu:   map[string]*sync.Mutex{},
		seeding:   map[string]string{},
		fetching:  map[string]roll.Fetch{},
		stuck:     map[string]string{},
		started:   time.Now().UTC(),
		fetcher:   fetch.HTTP{RedirectHosts: o.Config.Transfer.OriginRedirectHosts},
		artifacts: filepath.Join(o.Config.Host.StateDir, "artifacts"),
		kick:      make(chan struct{}, 1),
		flushes:   make(chan chan error),
		zkDone:    make(chan struct{}),
		metrics:   newMetrics(o.Version),
	}
	for name, sc := range o.Config.Services {
		if o.InProcess != nil {
			a.units[name] = service.NewInProcess(name, sc, o.Log, o.InProcess(a.host, name))
		} else {
			a.units[name] = service.New(name, sc, o.Log)
		}
		a.rels[name] = state.Releases{Dir: sc.Releases}
		a.fetchMu[name] = &sync.Mutex{}
		a.metrics.addService(name)
	}
	a.names = slices.Sorted(maps.Keys(a.units))
	for _, name := range a.names {
		a.owners[name] = newOwner(a, name)
	}
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
	if f := a.cfg.Transfer.PeerTokenFile; f != "" {
		if a.peerToken, err = config.ReadSecret("transfer.peer_token_file", f); err != nil {
			return err
		}
	}
	for _, s := range a.cfg.Trust.Keys {
		k, err := trust.ParsePublicKey(s)
		if err != nil {
			return err
		}
		a.trusted = append(a.trusted, k)
	}
	a.removeLeftovers()
	a.recoverSwitch()
	a.machine = a.identify()

	// Services first, ZooKeeper second: the host serves even when the
	// ensemble is unreachable.
	for _, svc := range a.serviceNames() {
		a.startFromCache(ctx, svc)
	}
	var wg sync.WaitGroup
	for _, svc := range a.serviceNames() {
		wg.Add(1)
		go func() { defer wg.Done(); a.owners[svc].run(ctx) }()
	}

	peers, err := a.servePeers()
	if err != nil {
		a.log.Error("cannot serve releases to peers", "listen", a.cfg.Transfer.Listen, "error", err)
	}
	if t := a.cfg.Transfer; t.TorrentListen != "" {
		a.swarm, err = fetch.NewSwarm(fetch.SwarmConfig{
			DataDir:             filepath.Join(a.cfg.Host.StateDir, "torrent"),
			Listen:              t.TorrentListen,
			UploadRate:          t.UploadRate,
			DownloadRate:        t.DownloadRate,
			Logger:              a.log.Named("torrent"),
			OriginRequests:      t.OriginRequests,
			OriginRedirectHosts: t.OriginRedirectHosts,
		})
		if err != nil {
			a.log.Error("no BitTorrent: releases come over HTTP", "listen", t.TorrentListen, "error", err)
		}
	}

	var uploaded func() int64
	if a.swarm != nil {
		uploaded = a.swarm.Uploaded
	}
	a.metrics.watchUploads(uploaded)
	var metricsSrv *http.Server
	if l := a.cfg.Metrics.Listen; l != "" {
		var addr net.Addr
		if metricsSrv, addr, err = a.metrics.serve(l); err != nil {
			a.log.Error("cannot serve metrics", "listen", l, "error", err)
		} else {
			a.log.Info("serving metrics", "addr", addr.String())
		}
	}

	store, events, err := roll.Dial(a.cfg.ZooKeeper, a.log)
	if err != nil {
		a.log.Error("cannot use ZooKeeper; serving from the local cache only", "error", err)
		close(a.zkDone)
	} else {
		a.store = store
		wg.Add(1)
		go func() { defer wg.Done(); defer close(a.zkDone); a.zkLoop(ctx, store, events) }()
	}

	<-ctx.Done()
	wg.Wait()
	a.watches.Wait()
	a.moves.Wait()
	if peers != nil {
		peers.Close()
	}
	if metricsSrv != nil {
		metricsSrv.Close()
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
	a.metrics.setRunning(svc, v)
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
		sess    = &session{}
		retry   <-chan time.Time
		backoff = newBackoff(time.Second, 30*time.Second)
		authed  bool
		gauge   = &sessionGauge{m: a.metrics}
	)
	stopWatches := func() {}
	defer func() { stopWatches() }()
	sync := func() {
		retry = nil
		if !authed {
			if err := store.Authenticate(); err != nil {
				a.log.Error("zookeeper authentication", "error", err)
				retry = time.After(backoff.NextBackOff())
				return
			}
			authed = true
		}
		err := a.publish(store, sess)
		if sess.claimed && !sess.watching {
			// The session's loops start once the name is this machine's:
			// a refused agent joins no queue and takes no turn.
			stopWatches = a.startWatches(ctx, store)
			sess.watching = true
		}
		var taken *roll.HostTakenError
		switch {
		case errors.As(err, &taken):
			a.refused(store, sess, taken)
			retry = time.After(backoff.NextBackOff())
			return
		case err != nil:
			a.log.Warn("zookeeper update failed, retrying", "error", err)
			retry = time.After(backoff.NextBackOff())
			return
		}
		backoff.Reset()
	}
	// Events can be dropped by go-zookeeper when its channel is full, so
	// the session is judged from the connection itself, on every event and
	// every second.
	lastConnErr := "" // the connection error logged last
	check := func() {
		now := store.Session()
		gauge.set(now.Up)
		if !now.Up {
			if err := store.ConnectError(); err != nil && err.Error() != lastConnErr {
				lastConnErr = err.Error()
				a.log.Warn("cannot connect to ZooKeeper; retrying", "error", err)
			}
			return
		}
		lastConnErr = ""
		if id := now.ID; id != sess.id {
			if sess.id != 0 {
				a.log.Info("new ZooKeeper session, registering again", "session", fmt.Sprintf("%#x", id))
			} else {
				a.log.Info("joined ZooKeeper", "server", now.Server, "session", fmt.Sprintf("%#x", id))
			}
			// Everything ephemeral of the old session is gone.
			sess = &session{id: id, published: map[string]*roll.Current{}}
			stopWatches()
			stopWatches = func() {}
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
				a.metrics.zkExpirations.Inc()
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
		case done := <-a.flushes:
			check()
			if sess.id == 0 {
				done <- errNoSession
				continue
			}
			sync()
			if retry != nil {
				done <- errors.New("cannot write to ZooKeeper now; retrying")
			} else {
				done <- nil
			}
		}
	}
}

// startWatches starts one watch loop per service for this session and
// returns what stops them.
func (a *Agent) startWatches(ctx context.Context, store *roll.Store) context.CancelFunc {
	wctx, cancel := context.WithCancel(ctx)
	a.watches.Add(2)
	go func() { defer a.watches.Done(); a.advanceLoop(wctx, store) }()
	go func() { defer a.watches.Done(); a.canaryHoldLoop(wctx, store) }()
	for _, svc := range a.serviceNames() {
		a.watches.Add(2)
		go func() { defer a.watches.Done(); a.watchLoop(wctx, store, svc) }()
		go func() { defer a.watches.Done(); a.rollLoop(wctx, store, svc) }()
	}
	return cancel
}

// session is what this host has written in one ZooKeeper session.
type session struct {
	id        int64
	claimed   bool                     // Register succeeded: the name is this machine's
	watching  bool                     // the session's loops run
	refused   string                   // why the name was refused, as last logged
	reported  string                   // the refusal as last published
	host      *roll.Host               // what /hosts/<host> says
	published map[string]*roll.Current // per service; absent: not yet written
}

// publish writes what changed since the last call in this session. It is
// called from the ZooKeeper loop alone: the one writer of this host's
// /hosts, /members and /current nodes. The first call of a session
// registers the host (roll.Store.Register): nothing is written under the
// host's name until the name is this machine's.
func (a *Agent) publish(store *roll.Store, sess *session) error {
	if !sess.claimed {
		h := a.hostNode()
		reg, err := store.Register(roll.Claim{
			Host: a.host, Machine: a.machine, Services: a.serviceNames(),
			Replace: a.opts.Replace, Joined: time.Now().UTC(),
		}, h)
		if err != nil {
			return err
		}
		sess.claimed, sess.host = true, &h
		a.registered(store, sess, reg)
	}
	// /hosts/<host>: written once per session, and again when the
	// downloads in progress change (at most every couple of seconds).
	if h := a.hostNode(); !reflect.DeepEqual(*sess.host, h) {
		if err := store.RegisterHost(a.host, h); err != nil {
			return err
		}
		sess.host = &h
	}
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

// hostNode is what /hosts/<host> should say now.
func (a *Agent) hostNode() roll.Host {
	a.mu.Lock()
	h := roll.Host{
		MachineID: a.machine,
		Agent:     a.opts.Version,
		Started:   a.started,
		Rack:      a.cfg.Host.Rack,
		Site:      a.cfg.Host.Site,
		Services:  a.serviceNames(),
		PeerAddr:  a.cfg.Transfer.Advertise,
		Fetching:  maps.Clone(a.fetching),
		Stuck:     maps.Clone(a.stuck),
	}
	a.mu.Unlock()
	if a.swarm != nil {
		h.TorrentAddr = a.cfg.Transfer.TorrentAdvertise
	}
	return h
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
			if !clock.Sleep(ctx, time.Second+clock.Jitter(time.Second)) {
				return
			}
			continue
		}
		a.observe(svc, view.Versions)
		// Between half and one and a half intervals: hosts that booted
		// together do not read together.
		if !clock.Sleep(ctx, a.opts.ViewInterval/2+clock.Jitter(a.opts.ViewInterval)) {
			return
		}
	}
}

func (a *Agent) isBooted(svc string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.booted[svc]
}

// observe hands the fleet's versions of svc (the other hosts' counts:
// this host is not in /current before its first look, see publish) to
// svc's owner.
func (a *Agent) observe(svc string, fleet map[string]int) {
	if fleet == nil {
		fleet = map[string]int{}
	}
	a.fleetIs(svc, fleetView{versions: fleet})
}
