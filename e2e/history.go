package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// Probe is one change in what a host's service answers on /release: whether
// it answers 200, and the version and the sha256 of the bytes it runs; or
// that it gave no answer in time (NoAnswer), which alone does not say
// whether it serves.
type Probe struct {
	At       time.Time
	Host     string
	Service  string
	OK       bool
	Version  string
	Digest   string
	NoAnswer bool
}

// Sample is what ZooKeeper said at one moment.
type Sample struct {
	At time.Time
	// Turns are the hosts holding a turn, by service.
	Turns map[string][]string
	// Steps is the deploy queue, head first: the services of each step.
	Steps [][]string
	// Rollback marks, for each step of Steps, a step of a rollback.
	Rollback []bool
	// Current are the hosts in /current, by service.
	Current map[string][]string
	// Halted is the recorded halt of each halted service.
	Halted map[string]string
}

// Fault is one fault the nemesis injected: on Host, or on ZooKeeper when
// Host is empty, from Start until it was healed (zero while it lasts).
type Fault struct {
	Kind   string
	Host   string
	Start  time.Time
	Healed time.Time
}

// History is everything recorded while a schedule ran.
type History struct {
	Start, End time.Time
	Probes     []Probe
	Samples    []Sample
	Faults     []Fault
	// Staged maps each service's versions to the sha256 of their
	// artifacts: the only bytes a host may run.
	Staged map[string]map[string]string
}

// Target is one service of one host that the recorder asks.
type Target struct {
	Host, Service, URL string
}

// Recorder records a History: it asks every target every probeInterval and
// samples ZooKeeper every sampleInterval, keeping changes only.
type Recorder struct {
	store    *roll.Store
	services []string
	client   *http.Client
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.Mutex
	h      History
	latest Sample              // the latest read of ZooKeeper, changed or not
	last   map[[2]string]Probe // the latest probe of each host and service
}

const (
	probeInterval  = 50 * time.Millisecond
	probeTimeout   = time.Second
	sampleInterval = 25 * time.Millisecond
)

// Record starts recording. staged seeds History.Staged.
func Record(store *roll.Store, services []string, targets []Target, staged map[string]map[string]string) *Recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		store:    store,
		services: services,
		// A client per recorder: keep-alive connections to a host cut off
		// from the network must not outlive the recorder.
		client: &http.Client{Timeout: probeTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
		cancel: cancel,
		h:      History{Start: time.Now(), Staged: map[string]map[string]string{}},
		last:   map[[2]string]Probe{},
	}
	for svc, vs := range staged {
		for v, sum := range vs {
			r.stagedLocked(svc, v, sum)
		}
	}
	for _, tg := range targets {
		r.wg.Add(1)
		go r.probe(ctx, tg)
	}
	r.wg.Add(1)
	go r.sample(ctx)
	return r
}

// Staged records that version of svc was staged with sha256 sum.
func (r *Recorder) Staged(svc, version, sum string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stagedLocked(svc, version, sum)
}

func (r *Recorder) stagedLocked(svc, version, sum string) {
	if r.h.Staged[svc] == nil {
		r.h.Staged[svc] = map[string]string{}
	}
	r.h.Staged[svc][version] = sum
}

// Fault records the start of a fault and returns the function that records
// its end.
func (r *Recorder) Fault(kind, host string) (healed func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := len(r.h.Faults)
	r.h.Faults = append(r.h.Faults, Fault{Kind: kind, Host: host, Start: time.Now()})
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.h.Faults[i].Healed = time.Now()
	}
}

// Last returns the last probe of host's svc, and whether there was one.
func (r *Recorder) Last(host, svc string) (Probe, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.last[[2]string{host, svc}]
	return p, ok
}

// LastSample returns the latest read of ZooKeeper; its At is when it was
// read.
func (r *Recorder) LastSample() (Sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest, !r.latest.At.IsZero()
}

// Stop ends the recording and returns the history.
func (r *Recorder) Stop() History {
	r.cancel()
	r.wg.Wait()
	r.client.CloseIdleConnections()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.End = time.Now()
	return r.h
}

func (r *Recorder) probe(ctx context.Context, tg Target) {
	defer r.wg.Done()
	var last *Probe
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		p := Probe{Host: tg.Host, Service: tg.Service}
		var answered bool
		p.OK, p.Version, p.Digest, answered = r.ask(ctx, tg.URL)
		p.NoAnswer = !answered
		// Stamped when the answer came: a refused connection observed
		// after a fault was injected must not seem to come before it.
		p.At = time.Now()
		if ctx.Err() != nil {
			return
		}
		if last == nil || last.OK != p.OK || last.Version != p.Version || last.Digest != p.Digest || last.NoAnswer != p.NoAnswer {
			last = &p
			r.mu.Lock()
			r.h.Probes = append(r.h.Probes, p)
			r.last[[2]string{p.Host, p.Service}] = p
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ask GETs url: 200 means serving; the body, with or without the
// "unhealthy" prefix of a 503, is "version sha256", or "version -" while the
// service is still hashing its release. Only a definite answer counts: an
// HTTP status, or a refused connection (nothing listens: the service is
// down). A timeout says nothing (the host may be cut off, or this machine
// too busy to answer in time), so answered is false; the checker decides
// what it means.
func (r *Recorder) ask(ctx context.Context, url string) (ok bool, version, digest string, answered bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "", "", false
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false, "", "", errors.Is(err, syscall.ECONNREFUSED)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(body)), "unhealthy "))
	if len(f) == 2 {
		version, digest = f[0], f[1]
	}
	if digest == "-" {
		digest = "" // not computed yet
	}
	return resp.StatusCode == http.StatusOK, version, digest, true
}

func (r *Recorder) sample(ctx context.Context) {
	defer r.wg.Done()
	var last *Sample
	tick := time.NewTicker(sampleInterval)
	defer tick.Stop()
	for {
		s, err := r.read()
		if ctx.Err() != nil {
			return
		}
		// While ZooKeeper is unreachable there is nothing to record.
		if err == nil {
			r.mu.Lock()
			r.latest = s
			if last == nil || !sameSample(*last, s) {
				last = &s
				r.h.Samples = append(r.h.Samples, s)
			}
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// read samples ZooKeeper: the turns first, then the deploy queue, so that a
// turn is never seen with a deploy queue older than it.
func (r *Recorder) read() (Sample, error) {
	s := Sample{At: time.Now(), Turns: map[string][]string{}, Current: map[string][]string{}, Halted: map[string]string{}}
	for _, svc := range r.services {
		turns, err := r.store.Turns(svc)
		if err != nil {
			return s, err
		}
		for h := range turns {
			s.Turns[svc] = append(s.Turns[svc], h)
		}
		slices.Sort(s.Turns[svc])
	}
	steps, err := r.store.Steps()
	if err != nil {
		return s, err
	}
	for _, st := range steps {
		s.Steps = append(s.Steps, st.Services)
		s.Rollback = append(s.Rollback, st.Rollback)
	}
	for _, svc := range r.services {
		cur, err := r.store.OnlineHosts(svc)
		if err != nil {
			return s, err
		}
		s.Current[svc] = cur
		c, err := r.store.Control(svc)
		if err != nil {
			return s, err
		}
		if c.Halted != nil {
			s.Halted[svc] = c.Halted.String()
		}
	}
	return s, nil
}

func sameSample(a, b Sample) bool {
	return fmt.Sprint(a.Turns, a.Steps, a.Rollback, a.Current, a.Halted) == fmt.Sprint(b.Turns, b.Steps, b.Rollback, b.Current, b.Halted)
}
