package main

// --restart-ensemble: once every host is online and idle, restart each
// voting server of the ensemble in turn, the leader first, and count what
// the hosts' sessions went through. No rollout runs.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/benchtb"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// restartResult is what one restart run measured.
type restartResult struct {
	hosts   int
	connect time.Duration // all hosts online
	steps   []restartStep

	// The hosts' side: what the agents logged over the whole run.
	lost, expired, renewed int64 // disconnects, expiries, new sessions

	// ZooKeeper's side, over the whole run.
	currentOwners, hostsOwners int   // ephemeral nodes whose session changed
	currentCreated             int32 // children of /current/<svc> created or deleted (cversion)
	fewestOnline, samples      int   // fewest children of /current/<svc> seen, sampled every 50 ms
}

// restartStep is one server's restart.
type restartStep struct {
	server  int
	role    string        // its mode when it was stopped
	serving time.Duration // stop → the others serve, with a leader
	back    time.Duration // stop → the server serves again and every host's session is connected
	lost    int64         // disconnects the agents logged

	// delays are the reconnected sessions' kill → connection established
	// (the server's own "est" in cons); sessions whose connection
	// outlived the restart are not in it.
	delays []time.Duration
}

func (st restartStep) quantile(q float64) time.Duration {
	if len(st.delays) == 0 {
		return 0
	}
	s := slices.Clone(st.delays)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

// perBin counts the reconnects in each bin of width w from the stop.
func (st restartStep) perBin(w time.Duration) []int {
	var bins []int
	for _, d := range st.delays {
		i := int(d / w)
		for len(bins) <= i {
			bins = append(bins, 0)
		}
		bins[i]++
	}
	return bins
}

// peak is the most reconnects in one 100 ms bin.
func (st restartStep) peak() int {
	bins := st.perBin(100 * time.Millisecond)
	if len(bins) == 0 {
		return 0
	}
	return slices.Max(bins)
}

// sessionLog counts what the agents log about their ZooKeeper sessions
// (agent.zkLoop) and passes their errors on.
type sessionLog struct {
	errors io.Writer

	lost, expired, renewed atomic.Int64
	mu                     sync.Mutex // serializes writes to errors
}

func (l *sessionLog) Write(p []byte) (int, error) {
	switch {
	case bytes.Contains(p, []byte("lost ZooKeeper")):
		l.lost.Add(1)
	case bytes.Contains(p, []byte("ZooKeeper session expired")):
		l.expired.Add(1)
	case bytes.Contains(p, []byte("new ZooKeeper session")):
		l.renewed.Add(1)
	case bytes.Contains(p, []byte("[ERROR]")):
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.errors.Write(p)
	}
	return len(p), nil
}

// simulateRestart brings o.hosts hosts online, lets them idle for o.idle,
// then restarts the voting servers one by one: the leader, then the others,
// a follower first when there is one. Each server is killed (SIGKILL),
// the others are left to serve again, the server is started again, and the
// next restart waits until every host's session is connected again.
func simulateRestart(ctx context.Context, t testing.TB, o options, log io.Writer) (restartResult, error) {
	s := &sim{o: o, t: t, log: log, versions: map[string]int{}, fakes: map[string]*fake{}, said: &sessionLog{errors: log}}
	r := result{hosts: o.hosts, maxParallel: o.maxParallel()}
	r.need = roll.Quorum{Percent: o.quorumPct}.Need(o.hosts)
	rr := restartResult{hosts: o.hosts}

	ctx, stop := context.WithCancel(ctx)
	var agents sync.WaitGroup
	defer func() {
		stop()
		agents.Wait()
	}()
	admin, err := s.startFleet(ctx, &agents, &r)
	if err != nil {
		return rr, err
	}
	rr.connect = r.connect
	s.logf("all online; idling for %s", o.idle)
	if !sleepCtx(ctx, o.idle) {
		return rr, ctx.Err()
	}

	own := map[int64]bool{s.obs.SessionID(): true, admin.Session().ID: true}
	before, err := s.owners(ctx)
	if err != nil {
		return rr, err
	}
	said0 := s.said.counts()

	mctx, mstop := context.WithCancel(ctx)
	monitored := make(chan struct{})
	go func() { defer close(monitored); rr.fewestOnline, rr.samples = s.monitorOnline(mctx) }()
	rr.steps, err = s.restartVoters(ctx, own)
	mstop()
	<-monitored
	if err != nil {
		return rr, err
	}

	after, err := s.owners(ctx)
	if err != nil {
		return rr, err
	}
	said1 := s.said.counts()
	rr.lost, rr.expired, rr.renewed = said1.lost-said0.lost, said1.expired-said0.expired, said1.renewed-said0.renewed
	for h, o := range before.current {
		if after.current[h] != o {
			rr.currentOwners++
		}
	}
	for h, o := range before.hosts {
		if after.hosts[h] != o {
			rr.hostsOwners++
		}
	}
	rr.currentCreated = after.cversion - before.cversion
	return rr, nil
}

// restartVoters restarts every voting server once: the leader first, then
// the others, a follower before a leader.
func (s *sim) restartVoters(ctx context.Context, own map[int64]bool) ([]restartStep, error) {
	var steps []restartStep
	left := slices.Clone(s.zkc.Voters())
	next := s.zkc.Leader()
	for len(left) > 0 {
		if !slices.Contains(left, next) {
			next = left[0]
			for _, i := range left {
				if s.zkc.Mode(i) == zktest.ModeFollower {
					next = i
					break
				}
			}
		}
		left = slices.DeleteFunc(left, func(i int) bool { return i == next })
		st, err := s.restartOne(ctx, next, own)
		if err != nil {
			return steps, err
		}
		steps = append(steps, st)
		s.logf("server %d (%s) restarted: %d sessions reconnected, p50 %s, p99 %s, max %s, peak %d per 100 ms; per 500 ms: %v",
			st.server, st.role, len(st.delays), ms(st.quantile(0.5)), ms(st.quantile(0.99)), ms(st.quantile(1)), st.peak(), st.perBin(500*time.Millisecond))
		next = -1
		// Let the reconnected sessions settle before the next restart.
		if !sleepCtx(ctx, 2*time.Second) {
			return steps, ctx.Err()
		}
	}
	return steps, nil
}

// restartOne kills server i, waits until the others serve, starts it again
// and waits until every host's session is connected.
func (s *sim) restartOne(ctx context.Context, i int, own map[int64]bool) (restartStep, error) {
	st := restartStep{server: i, role: s.zkc.Mode(i)}
	lost0 := s.said.lost.Load()
	t0 := time.Now()
	s.zkc.Stop(i)
	s.zkc.WaitReady(s.t)
	st.serving = time.Since(t0)
	s.zkc.Start(i)

	limit := 2*s.o.sessionTimeout + time.Minute
	deadline := time.Now().Add(limit)
	for {
		est, err := s.sessions()
		hosts := 0
		for sid := range est {
			if !own[sid] {
				hosts++
			}
		}
		if err == nil && hosts >= s.o.hosts {
			st.back = time.Since(t0)
			for sid, e := range est {
				if !own[sid] && !e.Before(t0) {
					st.delays = append(st.delays, e.Sub(t0))
				}
			}
			st.lost = s.said.lost.Load() - lost0
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("restart of server %d: %d of %d host sessions connected after %s (last error: %v)", i, hosts, s.o.hosts, limit, err)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return st, ctx.Err()
		}
	}
}

// consLine matches a connection with a session in an answer to cons.
var consLine = regexp.MustCompile(`sid=0x([0-9a-f]+),.*est=([0-9]+)`)

// sessions asks every running server which sessions it serves, and since
// when their connection stands.
func (s *sim) sessions() (map[int64]time.Time, error) {
	est := map[int64]time.Time{}
	var errs []string
	for i := range s.zkc.Servers() {
		if s.zkc.PID(i) == 0 {
			continue
		}
		out, err := s.zkc.FourLetterWord(i, "cons")
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, m := range consLine.FindAllStringSubmatch(out, -1) {
			sid, err1 := strconv.ParseUint(m[1], 16, 64)
			msec, err2 := strconv.ParseInt(m[2], 10, 64)
			if err1 != nil || err2 != nil || sid == 0 {
				continue
			}
			if e := time.UnixMilli(msec); e.After(est[int64(sid)]) {
				est[int64(sid)] = e
			}
		}
	}
	if len(errs) > 0 {
		return est, fmt.Errorf("cons: %s", strings.Join(errs, "; "))
	}
	return est, nil
}

// ownership is who owns each host's ephemeral nodes.
type ownership struct {
	current, hosts map[string]int64 // host → session owning /current/<svc>/<host>, /hosts/<host>
	cversion       int32            // of /current/<svc>
}

// owners reads the owner of every host's /current/<svc> and /hosts node.
func (s *sim) owners(ctx context.Context) (ownership, error) {
	o := ownership{current: map[string]int64{}, hosts: map[string]int64{}}
	for _, dir := range []struct {
		path  string
		into  map[string]int64
		cvers bool
	}{{root + "/current/" + svc, o.current, true}, {root + "/hosts", o.hosts, false}} {
		names, st, err := s.obs.Children(dir.path)
		if err != nil {
			return o, fmt.Errorf("list %s: %w", dir.path, err)
		}
		if dir.cvers {
			o.cversion = st.Cversion
		}
		var mu sync.Mutex
		var first error
		work := make(chan string)
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for n := range work {
					_, st, err := s.obs.Exists(dir.path + "/" + n)
					mu.Lock()
					if err != nil && first == nil {
						first = fmt.Errorf("%s/%s: %w", dir.path, n, err)
					} else if err == nil {
						dir.into[n] = st.EphemeralOwner
					}
					mu.Unlock()
				}
			})
		}
		for _, n := range names {
			if ctx.Err() != nil {
				break
			}
			work <- n
		}
		close(work)
		wg.Wait()
		if first != nil {
			return o, first
		}
	}
	return o, ctx.Err()
}

// monitorOnline samples how many hosts are in /current/<svc> every 50 ms
// until ctx ends, and returns the fewest seen and the number of samples.
// Samples fail while the simulator's own session reconnects.
func (s *sim) monitorOnline(ctx context.Context) (fewest, samples int) {
	fewest = math.MaxInt
	for {
		_, st, err := s.obs.Exists(root + "/current/" + svc)
		if err == nil && st != nil {
			fewest = min(fewest, int(st.NumChildren))
			samples++
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fewest, samples
		}
	}
}

type sayCounts struct{ lost, expired, renewed int64 }

func (l *sessionLog) counts() sayCounts {
	return sayCounts{l.lost.Load(), l.expired.Load(), l.renewed.Load()}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// simulateRestartOnce is simulateOnce for a restart run.
func simulateRestartOnce(ctx context.Context, o options, log io.Writer) (r restartResult, err error) {
	tb := benchtb.New("dcroll-fleet-")
	defer tb.Close()
	err = benchtb.Catch(func() (err error) {
		r, err = simulateRestart(ctx, tb, o, log)
		return err
	})
	return r, err
}

// printRestart writes one table per run: a column per restart.
func printRestart(w io.Writer, rs []restartResult) {
	for n, r := range rs {
		fmt.Fprintf(w, "\nrun %d of %d: %d hosts, all online after %s\n\n", n+1, len(rs), r.hosts, r.connect.Round(100*time.Millisecond))
		row := func(name string, f func(st restartStep) string) {
			fmt.Fprintf(w, "| %s |", name)
			for _, st := range r.steps {
				fmt.Fprintf(w, " %s |", f(st))
			}
			fmt.Fprintln(w)
		}
		row("server stopped (its mode)", func(st restartStep) string { return fmt.Sprintf("%d (%s)", st.server, st.role) })
		fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---|", len(r.steps)))
		row("others serving again after", func(st restartStep) string { return ms(st.serving) })
		row("sessions reconnected", func(st restartStep) string { return strconv.Itoa(len(st.delays)) })
		row("reconnect p50 / p99 / max", func(st restartStep) string {
			return fmt.Sprintf("%s / %s / %s", ms(st.quantile(0.5)), ms(st.quantile(0.99)), ms(st.quantile(1)))
		})
		row("peak reconnects per 100 ms", func(st restartStep) string { return strconv.Itoa(st.peak()) })
		row("server back, every session connected after", func(st restartStep) string { return ms(st.back) })
		row("disconnects the agents logged", func(st restartStep) string { return strconv.FormatInt(st.lost, 10) })
		fmt.Fprintln(w)
		fmt.Fprintf(w, "sessions expired (agents' log): %d; new sessions (agents' log): %d\n", r.expired, r.renewed)
		fmt.Fprintf(w, "ephemeral owners changed: /current/%s %d, /hosts %d (of %d hosts)\n", svc, r.currentOwners, r.hostsOwners, r.hosts)
		fmt.Fprintf(w, "children of /current/%s created or deleted: %d; fewest seen: %d (%d samples)\n", svc, r.currentCreated, r.fewestOnline, r.samples)
	}
}

// restartCounts are what a restart run's check needs: counts, never a time.
type restartCounts struct {
	Hosts                      int
	Expired, Renewed           int64
	CurrentOwners, HostsOwners int
	CurrentCreated             int32
	FewestOnline               int
	Reconnected                []int // per restart
}

func (r restartResult) counts() restartCounts {
	c := restartCounts{Hosts: r.hosts, Expired: r.expired, Renewed: r.renewed, CurrentOwners: r.currentOwners,
		HostsOwners: r.hostsOwners, CurrentCreated: r.currentCreated, FewestOnline: r.fewestOnline}
	for _, st := range r.steps {
		c.Reconnected = append(c.Reconnected, len(st.delays))
	}
	return c
}

// runRestart runs the restart mode for each fleet size.
func runRestart(ctx context.Context, sizes []int, runs int, o options, stdout, stderr io.Writer) ([]restartCounts, error) {
	var cs []restartCounts
	for _, n := range sizes {
		var rs []restartResult
		for range runs {
			o.hosts = n
			r, err := simulateRestartOnce(ctx, o, stderr)
			if err != nil {
				return cs, fmt.Errorf("%d hosts: %w", n, err)
			}
			rs = append(rs, r)
			cs = append(cs, r.counts())
		}
		printRestart(stdout, rs)
	}
	return cs, nil
}
