package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/agent"
	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/agentconf"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/modes"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/service"
	"github.com/dcroll/dcroll/state"
	"github.com/dcroll/dcroll/web"
)

// options are one simulation's parameters.
type options struct {
	hosts          int
	maxParallelPct int // max_parallel, in percent of the hosts
	quorumPct      int
	health         time.Duration // health-check interval of every host
	minHealthy     time.Duration
	sessionTimeout time.Duration
	idle           time.Duration // the idle window measured before the rollout
	batch          int           // hosts started at a time
	heap           string        // each ZooKeeper JVM's -Xmx
	observers      int           // observers next to the 3 voters; the hosts use only them
	restart        bool          // restart the ensemble instead of rolling out (restart.go)
	observe        bool          // during the rollout, the status page reads and every host is scraped
	timeout        time.Duration // the rollout's limit
}

// maxParallel is the service's max_parallel: a share of the hosts, at least 1.
func (o options) maxParallel() int { return max(1, o.hosts*o.maxParallelPct/100) }

// result is what one simulation measured. Requests and notifications are
// counted by the servers (mntr), minus the simulator's own.
type result struct {
	hosts, maxParallel, need int

	connect      time.Duration // all hosts online
	idleRequests float64       // requests per second with nothing to do (pings)

	requests      int64 // during the rollout, by the three servers
	election      bool  // the ensemble elected a leader during the rollout: requests and notifications are not known
	notifications int64 // packets sent minus packets received: what no request asked for
	peakWatches   int   // most watches held at once, summed over the servers
	leaderCPU     time.Duration
	leaderRSS     int64 // bytes

	handovers []time.Duration // one host's turn released → the next turn taken
	wall      time.Duration
	ideal     time.Duration // turns ÷ max_parallel × min_healthy (a fake restarts at once)

	maxInTurn  int // most turns held at once, seen in ZooKeeper
	minServing int // fewest hosts serving at once, seen in the services
	onNew      int // hosts on the new version at the end

	statusTime  time.Duration
	statusBytes int
	statusLines int

	// With observe: the status page's readings of the summary and the
	// requests they made, and the scrapes of the hosts' metrics.
	pageReads, pageRequests int64
	scrapes, scrapeBytes    int64

	heapPerHost int64 // bytes of Go heap in use per simulated host
	rssPerHost  int64 // bytes of this process's resident memory per simulated host
}

// requestsPerHost is the rollout's requests ÷ hosts, with the pings of the
// same span (the idle rate) taken out.
func (r result) requestsPerHost() float64 {
	return (float64(r.requests) - r.idleRequests*r.wall.Seconds()) / float64(r.hosts)
}

func (r result) handover(q float64) time.Duration {
	if len(r.handovers) == 0 {
		return 0
	}
	s := slices.Clone(r.handovers)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

// fake is one host's service, played in this process: it restarts at once
// and is healthy unless made otherwise.
type fake struct {
	sim       *sim
	mu        sync.Mutex
	version   string // guarded by mu
	running   bool   // guarded by mu
	unhealthy atomic.Bool
}

func (f *fake) Start(version string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running {
		f.sim.serving(+1)
	}
	if f.version != version {
		f.sim.onVersion(f.version, -1)
		f.sim.onVersion(version, +1)
	}
	f.version, f.running = version, true
	return nil
}

func (f *fake) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		f.sim.serving(-1)
	}
	f.running = false
}

func (f *fake) Check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !f.running:
		return fmt.Errorf("not running")
	case f.unhealthy.Load():
		return fmt.Errorf("made unhealthy")
	}
	return nil
}

// sim is one simulated data center.
type sim struct {
	o   options
	t   testing.TB
	zkc *zktest.Cluster
	log io.Writer

	mu         sync.Mutex
	nServing   int            // guarded by mu
	minServing int            // guarded by mu; from the rollout's start
	watching   bool           // guarded by mu: minServing is being kept
	versions   map[string]int // guarded by mu: hosts per running version
	fakes      map[string]*fake
	agents     []*agent.Agent // every host's, for its metrics

	// obs is the simulator's own connection, for what it observes; ops
	// counts its requests, which are taken out of the servers' counts.
	obs *zk.Conn
	ops atomic.Int64

	// said counts what the hosts log about their sessions; nil unless
	// the ensemble is restarted (restart.go).
	said *sessionLog
}

// hostServers is the hosts' zookeeper.servers: the observers if any, else
// the voters.
func (s *sim) hostServers() []string {
	if obs := s.zkc.Observers(); len(obs) > 0 {
		return obs
	}
	return s.zkc.Servers()
}

// hostLog is a host's logger: errors go to the simulator's log; when the
// ensemble is restarted, what the host says of its session is counted too.
func (s *sim) hostLog(name string) hclog.Logger {
	if s.said == nil {
		return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Error, Output: s.log})
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: s.said})
}

func (s *sim) serving(d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nServing += d
	if s.watching && s.nServing < s.minServing {
		s.minServing = s.nServing
	}
}

func (s *sim) onVersion(v string, d int) {
	if v == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions[v] += d
}

func (s *sim) count(v string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versions[v]
}

func (s *sim) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "%s  %6d hosts: %s\n", time.Now().Format("15:04:05"), s.o.hosts, fmt.Sprintf(format, args...))
}

const (
	root = "/dc"
	svc  = "web"
)

// simulate runs one data center of o.hosts simulated hosts through a
// rollout of one service and returns what it cost.
func simulate(ctx context.Context, t testing.TB, o options, log io.Writer) (result, error) {
	s := &sim{o: o, t: t, log: log, versions: map[string]int{}, fakes: map[string]*fake{}}
	r := result{hosts: o.hosts, maxParallel: o.maxParallel()}
	r.need = roll.Quorum{Percent: o.quorumPct}.Need(o.hosts)

	ctx, stop := context.WithCancel(ctx)
	var agents sync.WaitGroup
	defer func() {
		stop()
		agents.Wait()
	}()
	admin, err := s.startFleet(ctx, &agents, &r)
	if err != nil {
		return r, err
	}

	// What the fleet costs doing nothing: sessions ping. The hosts that
	// came online last are let settle first.
	s.logf("settling for %s, then measuring %s idle", o.idle/2, o.idle)
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(o.idle / 2):
	}
	idle0, err := s.counters()
	if err != nil {
		return r, err
	}
	ops0 := s.ops.Load()
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(o.idle):
	}
	idle1, err := s.counters()
	if err != nil {
		return r, err
	}
	r.idleRequests = float64(idle1.received-idle0.received-(s.ops.Load()-ops0)) / o.idle.Seconds()

	// The rollout: stage v2, order it, and watch it from the servers.
	leader := s.zkc.Leader()
	cpu0, err := procCPU(s.zkc.PID(leader))
	if err != nil {
		return r, err
	}
	s.mu.Lock()
	s.watching, s.minServing = true, s.nServing
	s.mu.Unlock()
	c0, err := s.counters()
	if err != nil {
		return r, err
	}
	ops0 = s.ops.Load()
	t0 := time.Now()
	s.logf("rolling out v2: max_parallel %d, quorum %d%% (%d hosts)", r.maxParallel, o.quorumPct, r.need)
	m := roll.Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("0", 64), Staged: time.Now().UTC(), By: "fleet"}
	if err := admin.Stage(svc, m, false); err != nil {
		return r, err
	}
	// Ordered as an operator orders: the history records the step's start,
	// which the status page's time left counts from.
	if _, err := admin.Order([][]string{{svc}}); err != nil {
		return r, err
	}
	rctx, rstop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	turns := &turnWatch{}
	go func() { defer bg.Done(); s.watchTurns(rctx, turns) }()
	go func() { defer bg.Done(); r.peakWatches = s.sampleWatches(rctx) }()
	if o.observe {
		bg.Add(2)
		page := rolltest.Open(t, s.zkc, root)
		srv := web.New(page, time.Second, hclog.NewNullLogger())
		go func() {
			defer bg.Done()
			ops0 := page.Ops()
			srv.Run(rctx)
			r.pageReads, r.pageRequests = int64(srv.Reads()), page.Ops()-ops0
		}()
		go func() { defer bg.Done(); r.scrapes, r.scrapeBytes = s.scrape(rctx, 5*time.Second) }()
	}
	err = s.awaitRolledOut(ctx, o.timeout)
	r.wall = time.Since(t0)
	rstop()
	bg.Wait()
	c1, cerr := s.counters()
	if err == nil {
		err = cerr
	}
	ops := s.ops.Load() - ops0
	cpu1, cpuErr := procCPU(s.zkc.PID(leader))
	if err == nil {
		err = cpuErr
	}
	s.mu.Lock()
	s.watching = false
	r.minServing = s.minServing
	s.mu.Unlock()
	r.onNew = s.count("v2")
	r.handovers, r.maxInTurn = turns.handovers, turns.max
	if err != nil {
		return r, err
	}
	r.requests = c1.received - c0.received - ops
	r.notifications = (c1.sent - c0.sent) - (c1.received - c0.received)
	r.election = c1.restartedSince(c0) || s.zkc.Leader() != leader
	if r.election {
		s.logf("a leader election during the rollout (the leader was server %d): the servers' counts of it are lost", leader)
	}
	r.leaderCPU = cpu1 - cpu0
	r.leaderRSS, _ = procRSS(s.zkc.PID(leader))
	turnCount := (o.hosts + r.maxParallel - 1) / r.maxParallel
	r.ideal = time.Duration(turnCount) * o.minHealthy
	s.logf("rolled out in %s", r.wall.Round(time.Millisecond))

	// status, as an operator runs it.
	var out, errOut bytes.Buffer
	t0 = time.Now()
	code := modes.Main(ctx, []string{"--zk", s.zkc.ConnString(), "--root", root, "status"}, &out, &errOut, nil)
	r.statusTime = time.Since(t0)
	if code != 0 {
		return r, fmt.Errorf("status exited %d: %s", code, errOut.String())
	}
	r.statusBytes = out.Len()
	r.statusLines = strings.Count(out.String(), "\n")
	return r, nil
}

// scrape reads every host's metrics every interval, as Prometheus would,
// until ctx ends, and counts the scrapes and their bytes.
func (s *sim) scrape(ctx context.Context, interval time.Duration) (scrapes, size int64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return scrapes, size
		case <-t.C:
		}
		for _, a := range s.agents {
			rec := httptest.NewRecorder()
			a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			scrapes++
			size += int64(rec.Body.Len())
		}
	}
}

// startFleet starts the ensemble, seeds the data center and brings the
// hosts online, a batch at a time, each batch online before the next. It
// records in r how long that took and what a host costs in memory.
func (s *sim) startFleet(ctx context.Context, agents *sync.WaitGroup, r *result) (*roll.Store, error) {
	o, t := s.o, s.t
	if o.observers > 0 {
		s.logf("starting a 3-server ensemble and %d observers", o.observers)
		s.zkc = zktest.EnsembleObservers(t, 3, o.observers, o.heap)
	} else {
		s.logf("starting a 3-server ensemble")
		s.zkc = zktest.EnsembleHeap(t, 3, o.heap)
	}
	admin := rolltest.Open(t, s.zkc, root)
	rolltest.Seed(t, admin, fmt.Sprintf(`
[services.%s]
quorum = "%d%%"
max_parallel = %d
[services.%s.health]
min_healthy = %q
deadline = "10m"
`, svc, o.quorumPct, r.maxParallel, svc, o.minHealthy.String()))
	obs, _, err := zk.Connect(s.zkc.Servers(), 30*time.Second, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	if err != nil {
		return nil, err
	}
	t.Cleanup(obs.Close)
	s.obs = obs

	// The hosts, a batch at a time, each online before the next batch.
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rss0, _ := procRSS(os.Getpid())
	t0 := time.Now()
	dir := t.TempDir()
	for i := 0; i < o.hosts; i++ {
		a, err := s.newHost(dir, fmt.Sprintf("host-%05d", i))
		if err != nil {
			return nil, err
		}
		s.agents = append(s.agents, a)
		agents.Add(1)
		go func() { defer agents.Done(); _ = a.Run(ctx) }()
		if (i+1)%o.batch == 0 || i+1 == o.hosts {
			if err := s.awaitOnline(ctx, i+1, 2*time.Minute); err != nil {
				return nil, err
			}
			s.logf("%d online", i+1)
		}
	}
	r.connect = time.Since(t0)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	r.heapPerHost = (int64(after.HeapInuse) - int64(before.HeapInuse)) / int64(o.hosts)
	rss1, _ := procRSS(os.Getpid())
	r.rssPerHost = (rss1 - rss0) / int64(o.hosts)

	return admin, nil
}

// newHost writes a host's config and state dir, with v1 and v2 installed
// and v1 last run, and returns its agent.
func (s *sim) newHost(dir, name string) (*agent.Agent, error) {
	hdir := filepath.Join(dir, name)
	rels := state.Releases{Dir: filepath.Join(hdir, "releases", svc)}
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(rels.Path(v), 0o755); err != nil {
			return nil, err
		}
	}
	if err := state.Save(hdir, &state.File{Services: map[string]*state.Service{svc: {Running: "v1"}}}); err != nil {
		return nil, err
	}
	toml := fmt.Sprintf(`
[zookeeper]
servers = [%s]
root = %q
session_timeout = %q
[host]
name = %q
state_dir = %q
[transfer]
listen = ""
torrent_listen = ""
[services.%s]
releases = %q
run = "played in-process by the fleet simulator"
[services.%s.health]
command = "true"
interval = %q
`, agentconf.QuoteList(s.hostServers()), root, s.o.sessionTimeout.String(), name, hdir, svc, rels.Dir, svc, s.o.health.String())
	cfg, err := config.Load(config.Sources{File: name + ".toml", FileData: []byte(toml)})
	if err != nil {
		return nil, err
	}
	f := &fake{sim: s}
	s.fakes[name] = f
	return agent.New(agent.Options{
		Config:    cfg,
		Log:       s.hostLog(name),
		Version:   "fleet",
		InProcess: func(string, string) service.InProcess { return f },
	}), nil
}

// awaitOnline waits until n hosts are in /current.
func (s *sim) awaitOnline(ctx context.Context, n int, limit time.Duration) error {
	return s.poll(ctx, limit, func() (bool, error) {
		s.ops.Add(1)
		_, st, err := s.obs.Exists(root + "/current/" + svc)
		return err == nil && int(st.NumChildren) >= n, err
	})
}

// awaitRolledOut waits until the deploy queue is empty and every host
// runs v2.
func (s *sim) awaitRolledOut(ctx context.Context, limit time.Duration) error {
	return s.poll(ctx, limit, func() (bool, error) {
		if s.count("v2") < s.o.hosts {
			return false, nil
		}
		s.ops.Add(1)
		_, st, err := s.obs.Exists(root + "/deploy")
		return err == nil && st.NumChildren == 0, err
	})
}

func (s *sim) poll(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("not done within %s (last error: %v); %d hosts on v2", limit, last, s.count("v2"))
}

// turnWatch records, from ZooKeeper, when turns are taken and released.
type turnWatch struct {
	released  []time.Time // releases not yet followed by a take
	handovers []time.Duration
	max       int
}

// watchTurns follows /roll/<svc>/turns until ctx ends. A take pairs with
// the oldest release not yet paired: that release freed its slot.
func (s *sim) watchTurns(ctx context.Context, w *turnWatch) {
	dir := root + "/roll/" + svc + "/turns"
	held := map[string]bool{}
	for ctx.Err() == nil {
		s.ops.Add(1)
		names, _, ch, err := s.obs.ChildrenW(dir)
		if err != nil {
			s.ops.Add(1)
			_, _, ch, err = s.obs.ExistsW(dir)
			if err != nil {
				return
			}
		}
		now := time.Now()
		seen := map[string]bool{}
		for _, n := range names {
			seen[n] = true
		}
		for h := range held {
			if !seen[h] {
				w.released = append(w.released, now)
				delete(held, h)
			}
		}
		for h := range seen {
			if !held[h] {
				held[h] = true
				if len(w.released) > 0 {
					w.handovers = append(w.handovers, now.Sub(w.released[0]))
					w.released = w.released[1:]
				}
			}
		}
		w.max = max(w.max, len(held))
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// sampleWatches asks every server how many watches it holds, twice a
// second, and returns the largest sum.
func (s *sim) sampleWatches(ctx context.Context) int {
	peak := 0
	for {
		sum := 0
		for i := range s.zkc.Servers() {
			out, err := s.zkc.FourLetterWord(i, "wchs")
			if err != nil {
				continue
			}
			if _, v, ok := strings.Cut(out, "Total watches:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				sum += n
			}
		}
		peak = max(peak, sum)
		select {
		case <-ctx.Done():
			return peak
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// counters are the servers' packet counts, summed, and each server's count
// of packets received.
type counters struct {
	received, sent int64
	each           []int64
}

// restartedSince reports whether a server's counts went back since before:
// a server counts from its last election, when its serving part is made
// anew, so the difference of the sums no longer counts the requests.
func (c counters) restartedSince(before counters) bool {
	for i := range min(len(c.each), len(before.each)) {
		if c.each[i] < before.each[i] {
			return true
		}
	}
	return false
}

func (s *sim) counters() (counters, error) {
	var c counters
	for i := range s.zkc.Servers() {
		out, err := s.zkc.FourLetterWord(i, "mntr")
		if err != nil {
			return c, err
		}
		m := parseMntr(out)
		c.received += m["zk_packets_received"]
		c.sent += m["zk_packets_sent"]
		c.each = append(c.each, m["zk_packets_received"])
	}
	return c, nil
}

// parseMntr reads the numeric lines of an answer to mntr.
func parseMntr(out string) map[string]int64 {
	m := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// procCPU is the user and system CPU time of process pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// procRSS is the resident set size of process pid, in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

type discard struct{}

func (discard) Printf(string, ...any) {}
