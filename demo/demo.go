// Package demo runs a throwaway data center on this machine and rolls an
// upgrade across it, for `dcroll demo`: a ZooKeeper server, a fleet of real
// agents (child processes of the dcroll binary, each a host with its own
// state directory and ports) running three dependent services, and an
// operator that stages version 2 of all three, orders them, kills one host
// mid-rollout and brings it back. In a second act it stages a bad version
// 3 of web as a canary of one host with auto-rollback: the canary fails its
// health check and dcroll rolls web back to 2 by itself. It prints what happens to the writer it is
// given; everything it starts lives in one temporary directory and is
// stopped when it returns. It is a showcase, not a test harness: the tests
// use internal/zktest and internal/rolltest.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/trust"
)

// Limits of Options.Hosts. Below MinHosts a quorum of 75% leaves nobody
// free to upgrade.
const (
	MinHosts = 4
	MaxHosts = 30
)

// The versions the demo rolls from and to.
const (
	fromVersion = "1"
	toVersion   = "2"
)

// services are the demo's services, in dependency order.
var services = []string{"db", "api", "web"}

// catalog is the seed of the demo's data center: every host runs all three
// services, so the dependency order shows host by host; the quorums are
// shares, so they scale with --hosts, and they bind before max_parallel
// does for some services and not for others. web's switch fails after 25
// failed checks in a row (5 s at the hosts' health interval), not at the
// deadline: the second act's bad release is told quickly.
const catalog = `
[services.db]
quorum = "66%"
max_parallel = 2
[services.db.health]
min_healthy = "1s"
deadline = "30s"

[services.api]
depends_on = ["db"]
quorum = "50%"
max_parallel = 3
[services.api.health]
min_healthy = "1s"
deadline = "30s"

[services.web]
depends_on = ["api"]
quorum = "75%"
max_parallel = 2
[services.web.health]
min_healthy = "1s"
deadline = "30s"
max_failed_checks = 25
`

// Timings of the scenario.
const (
	// pollInterval is how often the demo checks its agents and redraws;
	// it reads the fleet again at most this often, when it changed.
	pollInterval = 500 * time.Millisecond
	bootTimeout  = 90 * time.Second
	rollTimeout  = 5 * time.Minute
	// restartAfter is how long the killed host stays down.
	restartAfter = 3 * time.Second
	// showFleetFor is how long the live view shows the fleet on version 1
	// before staging.
	showFleetFor = 2 * time.Second
)

// ErrInterrupted is returned when the context ends before the rollout.
var ErrInterrupted = errors.New("demo: interrupted")

// Options configure Run.
type Options struct {
	// Hosts is the number of hosts, MinHosts to MaxHosts.
	Hosts int
	// Exe is the dcroll binary the agents and services run.
	Exe string
	// Out receives the view and the messages.
	Out io.Writer
	// Live redraws a screen (a terminal) instead of printing lines, and
	// pauses for the viewer.
	Live bool
	// Keep keeps the work directory.
	Keep bool
	// ZooKeeper, if not empty, is an ensemble to use (host:port,...)
	// instead of starting a server; Root is then the data center root,
	// which must not exist (default: a fresh /dcroll-demo-<time>).
	ZooKeeper string
	Root      string
	// Jar is the ZooKeeper server's classpath; empty: Debian's.
	Jar string
	// Environ is the environment the children start from (os.Environ()).
	Environ []string
	// Detached stages as `stage --detach` does: nobody seeds, the HTTP
	// origin is the hosts' web seed and they trade the rest.
	Detached bool
}

// run is one demo: what it started, and what happened.
type run struct {
	o       Options
	start   time.Time
	dir     string
	env     []string
	zk      *zooKeeper
	servers []string
	root    string
	ownRoot bool // the root was created by the demo in a ZooKeeper of someone else's
	store   *roll.Store
	sw      *roll.SummaryWatch // the reads of the fleet, watched
	logFile *os.File
	origin  *http.Server
	hosts   []*host

	events   []string
	lastLine string

	victim      *host
	killedAt    time.Time
	killedIn    string // the service whose step was rolling
	restarted   bool
	restartedAt time.Time
	back        bool
	seeder      *fetch.Swarm
	originAddr  string // the origin's address, ip:port
	// act2 is when the second act began: a bad release of badService on
	// a canary, rolled back by itself.
	act2 time.Time
	a2   act2
	// key signs the releases, as stage --sign-key does; the hosts trust
	// only it.
	key trust.PrivateKey
}

// Run runs the demo until every host runs version 2 of every service, or ctx
// ends, and stops everything it started before it returns.
func Run(ctx context.Context, o Options) (err error) {
	if o.Hosts < MinHosts || o.Hosts > MaxHosts {
		return fmt.Errorf("%d hosts: want %d to %d", o.Hosts, MinHosts, MaxHosts)
	}
	if o.Exe == "" {
		return errors.New("no dcroll binary to run the agents with")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	var java, classpath string
	if o.ZooKeeper == "" {
		if java, classpath, err = LookupZooKeeper(o.Jar); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "dcroll-demo-")
	if err != nil {
		return err
	}
	d := &run{o: o, start: time.Now(), dir: dir, env: childEnv(o.Environ, dir)}
	defer func() {
		d.cleanup()
		if err != nil && ctx.Err() != nil {
			err = ErrInterrupted
		}
	}()
	d.logFile, err = os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return err
	}

	if err := d.setup(ctx, java, classpath); err != nil {
		return err
	}
	if err := d.watch(ctx, bootTimeout, "every host to serve version "+fromVersion, d.booted); err != nil {
		return err
	}
	if o.Live {
		select {
		case <-time.After(showFleetFor):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := d.stage(); err != nil {
		return err
	}
	if err := d.watch(ctx, rollTimeout, "the rollout", d.rolling); err != nil {
		return err
	}
	d.summary()
	if err := d.badRelease(); err != nil {
		return err
	}
	if err := d.watch(ctx, rollTimeout, "the automatic rollback of "+badService+" "+badVersion, d.rolledBack); err != nil {
		return err
	}
	return d.summaryAct2()
}

// setup starts ZooKeeper (or checks the one given), seeds the data center
// and starts the agents.
func (d *run) setup(ctx context.Context, java, classpath string) error {
	if d.o.ZooKeeper == "" {
		zkDir := filepath.Join(d.dir, "zookeeper")
		if err := os.MkdirAll(zkDir, 0o755); err != nil {
			return err
		}
		d.printf("work dir %s (--keep keeps it)\n", d.dir)
		d.printf("starting ZooKeeper (%s)...\n", strings.Split(classpath, string(os.PathListSeparator))[0])
		z, err := startZooKeeper(ctx, java, classpath, zkDir, d.env)
		if err != nil {
			return err
		}
		d.zk, d.servers, d.root = z, []string{net.JoinHostPort(hostName, strconv.Itoa(z.port))}, "/dc"
		d.event("ZooKeeper serves on %s (pid %d, log %s)", z.addr(), z.proc.Pid(), d.rel(z.logPath()))
	} else {
		d.servers = config.SplitServers(d.o.ZooKeeper)
		d.root = d.o.Root
		if d.root == "" {
			d.root = "/dcroll-demo-" + strconv.FormatInt(time.Now().Unix(), 10)
		}
		if err := config.ValidRoot(d.root); err != nil {
			return err
		}
		d.printf("work dir %s (--keep keeps it)\n", d.dir)
	}

	log := hclog.New(&hclog.LoggerOptions{Name: "demo", Output: d.logFile, Level: hclog.Info})
	zkCfg := config.ZooKeeper{Servers: d.servers, Root: d.root, SessionTimeout: 10 * time.Second, ACL: "open"}
	store, err := roll.Open(ctx, zkCfg, log, 20*time.Second)
	if err != nil {
		return err
	}
	d.store, d.sw = store, store.WatchSummary()
	if d.zk == nil {
		exists, err := store.RootExists()
		if err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("%s already exists in ZooKeeper %s; the demo only seeds a fresh root (name one with --root)", d.root, d.o.ZooKeeper)
		}
		d.ownRoot = true
		d.event("using ZooKeeper %s, root %s", d.o.ZooKeeper, d.root)
	}

	c, err := roll.ParseCatalog("demo seed", strings.NewReader(catalog))
	if err != nil {
		return err
	}
	plan, err := store.PlanSeed(c)
	if err != nil {
		return err
	}
	if err := store.ApplySeed(plan); err != nil {
		return err
	}
	d.event("seeded %s: db; api depends on db; web depends on api (quorum 66%%/50%%/75%%, max_parallel 2/3/2, min_healthy 1s)", d.root)

	if d.key, err = trust.GenerateKey(); err != nil {
		return err
	}
	hostsDir := filepath.Join(d.dir, "hosts")
	var pids []string
	for i := range d.o.Hosts {
		name := fmt.Sprintf("host%d", i+1)
		h, err := newHost(name, filepath.Join(hostsDir, name), d.o.Exe, d.servers, d.root, services, d.key.Public.String())
		if err != nil {
			return err
		}
		d.hosts = append(d.hosts, h)
		if err := h.start(d.o.Exe, d.env); err != nil {
			return err
		}
		pids = append(pids, strconv.Itoa(h.agent.Pid()))
	}
	d.event("started %d agents (pids %s), each running db, api and web %s; logs in %s",
		len(d.hosts), strings.Join(pids, " "), fromVersion, filepath.Join(hostsDir, "hostN", "agent.log"))
	return nil
}

// hostName is how the demo's hosts, ZooKeeper, origin and seeder name one
// another. They all run on this machine's loopback; a fleet names its hosts,
// and the names resolve, which "localhost" does on every machine, so the
// demo takes the path of name resolution a fleet does. (The machine's own
// name may resolve elsewhere than 127.0.0.1, Debian's 127.0.1.1, and the
// demo has no business editing /etc/hosts.)
const hostName = "localhost"

// byName is addr (ip:port) with hostName for the IP.
func byName(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(hostName, port)
}

// stage publishes version 2 of every service from an HTTP origin of the
// demo's own and queues them in dependency order, as `dcroll stage` and
// `dcroll order --auto` would.
func (d *run) stage() error {
	origin := filepath.Join(d.dir, "origin")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.origin = &http.Server{Handler: fetch.NewServer(origin), ReadHeaderTimeout: 10 * time.Second}
	go d.origin.Serve(l)
	// The first BitTorrent seeder, as `dcroll stage` runs one: the hosts
	// fetch from it and from each other. Detached, there is none.
	if !d.o.Detached {
		d.seeder, err = fetch.NewSwarm(fetch.SwarmConfig{DataDir: filepath.Join(d.dir, "seeder"), Listen: "127.0.0.1:0"})
		if err != nil {
			return err
		}
	}
	d.originAddr = l.Addr().String()
	for _, svc := range services {
		if err := d.publish(svc, toVersion, false); err != nil {
			return err
		}
	}
	if d.seeder != nil {
		d.event("staged version %s of %s, signed by key %s, which every host trusts; seeded over BitTorrent from %s (HTTP fallback %s)",
			toVersion, strings.Join(services, ", "), d.key.Public.ID, d.seeder.Addr(), l.Addr())
	} else {
		d.event("staged version %s of %s detached, signed by key %s, which every host trusts; nobody seeds: the hosts take their shares from the HTTP origin %s as a web seed and trade the rest over BitTorrent",
			toVersion, strings.Join(services, ", "), d.key.Public.ID, l.Addr())
	}
	catalog, err := d.store.Services()
	if err != nil {
		return err
	}
	steps, err := roll.Catalog(catalog).AutoSteps(services)
	if err != nil {
		return err
	}
	if err := d.store.AppendSteps(steps); err != nil {
		return err
	}
	var names []string
	for _, st := range steps {
		names = append(names, strings.Join(st, ","))
	}
	d.event("ordered the deploy: %s", strings.Join(names, " -> "))
	return nil
}

// publish packs version of svc (a VERSION file; with unhealthy, the
// marker that fails `dcroll _serve`'s health check), serves it from the
// origin and the seeder, and stages it signed, as `dcroll stage
// --sign-key` would: with the release a rollback of it goes back to
// signed as one.
func (d *run) publish(svc, version string, unhealthy bool) error {
	origin := filepath.Join(d.dir, "origin")
	src := filepath.Join(d.dir, "release", svc, version)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(svc+" "+version+"\n"), 0o644); err != nil {
		return err
	}
	if unhealthy {
		if err := os.WriteFile(filepath.Join(src, "unhealthy"), nil, 0o644); err != nil {
			return err
		}
	}
	artifact := fetch.ArtifactPath(origin, svc, version)
	if err := os.MkdirAll(filepath.Dir(artifact), 0o755); err != nil {
		return err
	}
	if err := fetch.PackFile(src, artifact); err != nil {
		return err
	}
	size, sum, err := fetch.Describe(artifact)
	if err != nil {
		return err
	}
	mi, infohash, err := fetch.BuildMetainfo(artifact, svc+"-"+version, fetch.PieceLength(size))
	if err != nil {
		return err
	}
	m := roll.Manifest{
		Version: version, Size: size, SHA256: sum,
		URLs:     []string{fetch.PeerURL(byName(d.originAddr), svc, version)},
		Infohash: infohash, Metainfo: mi,
		Staged: time.Now().UTC(), By: "dcroll demo",
	}
	if d.seeder != nil {
		if err := d.seeder.Seed(mi, artifact); err != nil {
			return err
		}
		m.Seeders = []string{byName(d.seeder.Addr())}
	} else {
		m.WebSeeds = m.URLs
	}
	if m.Unpacked, err = fetch.UnpackedSize(artifact); err != nil {
		return err
	}
	m.Expires = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	m.Signatures = []trust.Signature{d.key.Sign(m.Release(d.root, svc))}
	if cur, err := d.store.Manifest(svc); err == nil {
		m.SignRollbacks(d.key, d.root, svc, cur)
	}
	return d.store.Stage(svc, m, false)
}

// watch reads the fleet, shows it, and hands it to phase until phase
// reports done or fails, ctx ends or timeout passes. It reads again when
// something it read changed (ZooKeeper watches, see readFleet), at most
// once per pollInterval; in between it checks the agents, runs phase on
// the last reading (the scenario's timers) and redraws.
func (d *run) watch(ctx context.Context, timeout time.Duration, what string, phase func(*snapshot) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	c := &changes{w: d.sw}
	defer c.stop()
	var last *snapshot
	retry := true
	for {
		// While the restarted host is awaited, its own nodes are read at
		// every tick: its return need not change what the summary watches.
		if retry || c.fired() || d.restarted && !d.back {
			c.stop()
			st, err := d.read()
			retry = err != nil
			if err != nil {
				// A display refresh: ride out a ZooKeeper hiccup.
				fmt.Fprintf(d.logFile, "status: %v\n", err)
			} else {
				last = st
			}
			var until time.Time
			if last != nil {
				until = last.sum.NextChange
			}
			c.start(ctx, until)
		}
		if last != nil {
			done, err := phase(last)
			d.show(last)
			if err != nil || done {
				return err
			}
		}
		if err := d.checkAgents(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			state := "no status"
			if last != nil {
				state = d.line(last)
			}
			return fmt.Errorf("gave up waiting for %s after %s: %s; agent logs are in %s (rerun with --keep to read them)",
				what, timeout, state, filepath.Join(d.dir, "hosts"))
		}
		select {
		case <-ctx.Done():
			d.printf("\ninterrupted; stopping everything the demo started...\n")
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// read reads the fleet for one screen and, once the killed host has been
// restarted, what it serves again, from its own nodes. A fleet view may
// go on giving that host the versions it ran before it died: its agent
// replaces its earlier session's /current nodes at once, faster than the
// advancer, which keeps the view, looks again, and the advancer reads
// only the hosts it sees enter (until its recount, minutes later).
func (d *run) read() (*snapshot, error) {
	before := d.store.Ops()
	st, err := readFleet(d.store, d.sw)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(d.logFile, "%6.1fs  read the fleet: %d requests\n", time.Since(d.start).Seconds(), d.store.Ops()-before)
	if d.restarted {
		if st.restarted, err = servesSince(d.store, d.victim.name, d.restartedAt); err != nil {
			return nil, err
		}
		delete(st.on, d.victim.name)
		if len(st.restarted) > 0 {
			st.on[d.victim.name] = st.restarted
		}
		st.recount()
	}
	return st, nil
}

// checkAgents fails when ZooKeeper or an agent died that the demo did not
// kill.
func (d *run) checkAgents() error {
	if d.zk != nil && d.zk.proc.Exited() {
		return fmt.Errorf("ZooKeeper exited (%v); its log:\n%s", d.zk.proc.Err(), tail(d.zk.logPath(), 20))
	}
	for _, h := range d.hosts {
		if h == d.victim && !d.restarted {
			continue
		}
		if h.agent != nil && h.agent.Exited() {
			return fmt.Errorf("the agent of %s exited (%v); its log:\n%s", h.name, h.agent.Err(), tail(h.logPath(), 20))
		}
	}
	return nil
}

// booted reports whether every host serves every service on version 1.
func (d *run) booted(st *snapshot) (bool, error) {
	return d.allOn(st, fromVersion), nil
}

// allOn reports whether every host is online for every service on version,
// from the per-version counts (see snapshot.recount): the demo's root
// holds its hosts alone.
func (d *run) allOn(st *snapshot, version string) bool {
	for _, svc := range services {
		if ss := st.service(svc); ss.Versions[version] != len(d.hosts) || ss.Online != len(d.hosts) {
			return false
		}
	}
	return true
}

// rolling drives the scenario during the rollout: it kills a host once db
// is done, restarts it, and reports done once every host runs version 2
// and the queue is empty.
func (d *run) rolling(st *snapshot) (bool, error) {
	for _, ss := range st.sum.Services {
		if ss.Halted != nil {
			return false, fmt.Errorf("%s halted: %s", ss.Name, ss.Halted)
		}
	}
	steps := st.sum.Deploy.Steps
	queued := map[string]bool{}
	for _, step := range steps {
		for _, s := range step.Services {
			queued[s] = true
		}
	}
	if d.victim == nil && !queued[services[0]] {
		d.kill(st)
	}
	if d.victim != nil && !d.restarted && time.Since(d.killedAt) >= restartAfter {
		d.restartedAt = time.Now()
		if err := d.victim.start(d.o.Exe, d.env); err != nil {
			return false, err
		}
		d.restarted = true
		d.event("restarted %s's agent (pid %d): it boots from its local cache, looks at the fleet and catches up",
			d.victim.name, d.victim.agent.Pid())
	}
	if d.restarted && !d.back && len(st.restarted) == len(services) {
		d.back = true
		d.event("%s is back online: %s", d.victim.name, hostLine(st.restarted))
	}
	return d.rolledOut(st), nil
}

// rolledOut reports whether every host runs version 2 of every service:
// the deploy queue is empty, no host is in its turn, every host is online
// for every service, and the restarted host serves version 2 of each.
// The counts cannot tell: the fleet view can go on counting a host on its
// earlier version for minutes, when it took its turn faster than the
// advancer looked. The queue can: the advancer removes a step only when
// every host in /current runs the step's release (it reads every node
// for that), and a host out of /current then was in its turn, now over,
// or was the killed one.
func (d *run) rolledOut(st *snapshot) bool {
	if !d.restarted || len(st.sum.Deploy.Steps) > 0 {
		return false
	}
	for _, svc := range services {
		ss := st.service(svc)
		if len(ss.Upgrading) > 0 || ss.Online != len(d.hosts) || st.restarted[svc] != toVersion {
			return false
		}
	}
	return true
}

// kill picks a host that has not upgraded the rolling service yet and is
// not taking its turn, and kills its agent with SIGKILL, like a power cut.
// The agent's services get SIGTERM from the kernel as it dies.
func (d *run) kill(st *snapshot) {
	rolling := services[len(services)-1]
	if steps := st.sum.Deploy.Steps; len(steps) > 0 {
		rolling = steps[0].Services[0]
	}
	ss := st.service(rolling)
	victim := d.hosts[len(d.hosts)/2]
	for i := len(d.hosts) - 1; i >= 0; i-- {
		h := d.hosts[i]
		if st.on[h.name][rolling] == fromVersion && !slices.Contains(ss.Upgrading, h.name) && ss.Next != h.name {
			victim = h
			break
		}
	}
	pid := victim.agent.Pid()
	victim.agent.Kill()
	d.victim, d.killedAt, d.killedIn = victim, time.Now(), rolling
	down := false
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if down = victim.servicesDown(); down {
			break
		}
	}
	what := "its services db, api and web died with it"
	if !down {
		what = "some of its services still answer"
	}
	d.event("KILLED %s's agent (pid %d) with SIGKILL while %s rolls; %s; back in %s",
		victim.name, pid, rolling, what, restartAfter)
}

// summary prints what the demo showed.
func (d *run) summary() {
	elapsed := time.Since(d.start).Round(100 * time.Millisecond)
	d.printf("\ndone in %s: %d hosts, %d services (%s); every host runs version %s of every service and the deploy queue is empty.\n",
		elapsed, len(d.hosts), len(services), strings.Join(services, ", "), toVersion)
	if d.victim != nil {
		d.printf("%s was killed with SIGKILL while %s rolled, restarted %s later, and caught up on its own.\n",
			d.victim.name, d.killedIn, restartAfter)
	}
}

// cleanup stops the agents (which stop their services), anything left
// carrying the demo's marker, the origin and ZooKeeper, and removes the
// work directory unless asked to keep it.
func (d *run) cleanup() {
	var wg sync.WaitGroup
	stopped := 0
	for _, h := range d.hosts {
		if h.running() {
			stopped++
			wg.Go(func() { h.agent.Terminate(agentGrace) })
		}
	}
	wg.Wait()
	if d.seeder != nil {
		_ = d.seeder.Close()
	}
	if d.origin != nil {
		d.origin.Close()
	}
	if d.store != nil {
		if d.ownRoot {
			if err := d.store.RemoveRoot(); err != nil {
				d.printf("could not delete %s from ZooKeeper: %v\n", d.root, err)
			}
		}
		d.store.Close()
	}
	d.zk.stop()
	if left := sweep(d.dir); len(left) > 0 {
		d.printf("killed %d stray processes: %v\n", len(left), left)
	}
	if d.logFile != nil {
		d.logFile.Close()
	}
	what := fmt.Sprintf("stopped %d agents", stopped)
	if d.zk != nil {
		what += " and ZooKeeper"
	}
	if d.o.Keep {
		d.printf("%s; kept %s (agent logs: hosts/*/agent.log, ZooKeeper's: zookeeper/zookeeper.log)\n", what, d.dir)
		return
	}
	if err := os.RemoveAll(d.dir); err != nil {
		d.printf("%s; could not remove %s: %v\n", what, d.dir, err)
		return
	}
	d.printf("%s; removed %s\n", what, d.dir)
}

// event records something the demo did: printed at once as a line, or
// shown under the live view.
func (d *run) event(format string, args ...any) {
	msg := fmt.Sprintf("%6.1fs  %s", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
	d.events = append(d.events, msg)
	fmt.Fprintln(d.logFile, msg)
	if !d.o.Live {
		fmt.Fprintln(d.o.Out, msg)
	}
}

func (d *run) printf(format string, args ...any) { fmt.Fprintf(d.o.Out, format, args...) }

// rel names path relative to the work directory when it is inside it.
func (d *run) rel(path string) string {
	if r, err := filepath.Rel(d.dir, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
