package e2e

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// Violation is a moment at which an invariant did not hold.
type Violation struct {
	At        time.Time
	Invariant string // quorum, max_parallel, order, rollback_order, integrity
	Detail    string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s: %s", v.At.Format("15:04:05.000"), v.Invariant, v.Detail)
}

// Model is what the checker knows of the data center.
type Model struct {
	Policies roll.Catalog
	Hosts    []string
	// Detection is how long after a host fails dcroll may still count it
	// as serving: its session timeout plus the time ZooKeeper and the
	// agents take to notice.
	Detection time.Duration
}

// Check replays h and returns every moment an invariant of docs/PROTOCOL.md did
// not hold. The services' own answers are the truth about who serves:
//
//   - A host that does not serve while no fault touches it was taken out of
//     service by dcroll. A fault's window runs from its injection until the
//     host serves every service again and is back in /current.
//   - Quorum: while dcroll has a host of a service out of service, at least
//     quorum other members serve. Hosts that a fault took down less than
//     Detection before dcroll took its host out count as serving: dcroll
//     could not know yet.
//   - max_parallel: dcroll has at most max_parallel hosts of a service out
//     of service, and ZooKeeper lists at most max_parallel turns.
//   - Order: no host of a service holds a turn while a service it depends
//     on is still in the deploy queue, unless the service is in a rollback
//     step at the head of the queue.
//   - Rollback order: a rollback goes the reverse way. No host of a
//     service takes a turn of its rollback while a service that depends on
//     it is still in a rollback step of the deploy queue. A turn counts
//     as the rollback's when a sample read after the rollback step was
//     seen did not list it: a turn seen with the rollback step at once
//     may have been taken, for the release rolled back, just before.
//   - Integrity: every version a host answers with runs the bytes of that
//     version's artifact, as staged.
func Check(m Model, h History) []Violation {
	r := newReplay(m, h)
	windows := r.faultWindows()
	// A state that lasts is reported once: at its first moment, under a
	// key naming what is wrong.
	var vs []Violation
	reported := map[string]bool{}
	add := func(at time.Time, inv, key, format string, args ...any) {
		if reported[inv+" "+key] {
			return
		}
		reported[inv+" "+key] = true
		vs = append(vs, Violation{At: at, Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}

	for _, p := range h.Probes {
		if p.Digest == "" {
			continue
		}
		want, ok := h.Staged[p.Service][p.Version]
		switch {
		case !ok:
			add(p.At, "integrity", p.Host+p.Service+p.Version+p.Digest, "%s %s answers version %q, which was never staged", p.Host, p.Service, p.Version)
		case want != p.Digest:
			add(p.At, "integrity", p.Host+p.Service+p.Version+p.Digest, "%s %s %s runs bytes with sha256 %s, the artifact has %s", p.Host, p.Service, p.Version, p.Digest, want)
		}
	}

	r.run(func(t time.Time, st *replayState) {
		if s := st.sample; s != nil && st.sampleChanged {
			for svc, turns := range s.Turns {
				pol := m.Policies[svc]
				if mp := max(pol.MaxParallel, 1); len(turns) > mp {
					add(t, "max_parallel", fmt.Sprint("zk", svc, turns), "%s: ZooKeeper lists %d turns %v, max_parallel %d", svc, len(turns), turns, mp)
				}
				if len(turns) == 0 {
					continue
				}
				if !s.headRollback(svc) {
					for _, dep := range pol.DependsOn {
						for _, step := range s.Steps {
							if slices.Contains(step, dep) {
								add(t, "order", fmt.Sprint(svc, turns, dep), "%s: %v hold turns while %s, which it depends on, is still in the deploy queue %v", svc, turns, dep, s.Steps)
							}
						}
					}
				}
				since, rolling := st.rollbackSince[svc]
				if !rolling {
					continue
				}
				var taken []string
				for _, h := range turns {
					if st.turnSince[svc][h] >= since+2 {
						taken = append(taken, h)
					}
				}
				if len(taken) == 0 {
					continue
				}
				for i, step := range s.Steps {
					if !s.rollbackStep(i) {
						continue
					}
					for _, other := range step {
						if dependsOn(m.Policies, other, svc) {
							add(t, "rollback_order", fmt.Sprint(svc, taken, other), "%s: %v took turns of its rollback while %s, which depends on it, is still in a rollback step of the deploy queue %v", svc, taken, other, s.Steps)
						}
					}
				}
			}
		}
		if !st.allProbed() {
			return
		}
		for _, svc := range m.Policies.Names() {
			pol := m.Policies[svc]
			need := pol.Quorum.Need(len(m.Hosts))
			var serving, down []string
			var faulted []string
			for _, host := range m.Hosts {
				inWindow := windows.covers(host, t)
				switch {
				case st.serving(svc, host, inWindow):
					serving = append(serving, host)
				case inWindow:
					faulted = append(faulted, host)
				default:
					down = append(down, host)
				}
			}
			if mp := max(pol.MaxParallel, 1); len(down) > mp {
				add(t, "max_parallel", fmt.Sprint(svc, down), "%s: dcroll has %d hosts out of service %v, max_parallel %d", svc, len(down), down, mp)
			}
			for _, d := range down {
				since := st.downSince[svc][d]
				excused := 0
				for _, f := range faulted {
					if windows.start(f, t).After(since.Add(-m.Detection)) {
						excused++
					}
				}
				if len(serving)+excused < need {
					add(t, "quorum", fmt.Sprint(svc, d, since), "%s: %s out of service by dcroll since %s while %d serve %v (+%d failed too recently to know), quorum %d",
						svc, d, since.Format("15:04:05.000"), len(serving), serving, excused, need)
				}
			}
		}
	})
	return vs
}

// replay walks a History's probes and samples in time order.
type replay struct {
	m      Model
	h      History
	events []event
}

// event is a probe, a sample, or neither: a moment to judge.
type event struct {
	at     time.Time
	probe  *Probe
	sample *Sample
}

type replayState struct {
	m             Model
	probes        map[string]map[string]Probe     // by service, host: the latest
	answered      map[string]map[string]Probe     // the latest with an answer
	downSince     map[string]map[string]time.Time // when a host last stopped serving
	sample        *Sample
	sampleChanged bool
	samples       int // how many samples were applied
	// rollbackSince is, for each service in a rollback step, the sample
	// from which on it has been in one; turnSince, for each turn, the
	// sample from which on it has been listed.
	rollbackSince map[string]int
	turnSince     map[string]map[string]int
}

func newReplay(m Model, h History) *replay {
	r := &replay{m: m, h: h}
	for i := range h.Probes {
		r.events = append(r.events, event{at: h.Probes[i].At, probe: &h.Probes[i]})
	}
	for i := range h.Samples {
		r.events = append(r.events, event{at: h.Samples[i].At, sample: &h.Samples[i]})
	}
	// A fault's start and heal are moments to judge too: a host that is
	// back when its fault is healed changes nothing recorded after.
	for _, f := range h.Faults {
		r.events = append(r.events, event{at: f.Start}, event{at: f.Start.Add(m.Detection)})
		if !f.Healed.IsZero() {
			r.events = append(r.events, event{at: f.Healed})
		}
	}
	sort.SliceStable(r.events, func(i, j int) bool { return r.events[i].at.Before(r.events[j].at) })
	return r
}

// run calls fn after applying each event.
func (r *replay) run(fn func(time.Time, *replayState)) {
	st := &replayState{m: r.m, probes: map[string]map[string]Probe{}, answered: map[string]map[string]Probe{}, downSince: map[string]map[string]time.Time{}}
	for svc := range r.m.Policies {
		st.probes[svc] = map[string]Probe{}
		st.answered[svc] = map[string]Probe{}
		st.downSince[svc] = map[string]time.Time{}
	}
	for _, e := range r.events {
		st.sampleChanged = false
		if p := e.probe; p != nil {
			if st.probes[p.Service] == nil {
				continue // a service the model does not know
			}
			st.probes[p.Service][p.Host] = *p
			if !p.NoAnswer {
				prev, seen := st.answered[p.Service][p.Host]
				if !p.OK && (!seen || prev.OK) {
					st.downSince[p.Service][p.Host] = p.At
				}
				st.answered[p.Service][p.Host] = *p
			}
		} else if e.sample != nil {
			st.apply(e.sample)
		}
		fn(e.at, st)
	}
}

// apply makes s the latest sample and follows the rollback steps and the
// turns it lists.
func (st *replayState) apply(s *Sample) {
	st.sample = s
	st.sampleChanged = true
	n := st.samples
	st.samples++
	rolling := map[string]int{}
	for i, step := range s.Steps {
		if !s.rollbackStep(i) {
			continue
		}
		for _, svc := range step {
			since, ok := st.rollbackSince[svc]
			if !ok {
				since = n
			}
			rolling[svc] = since
		}
	}
	st.rollbackSince = rolling
	turns := map[string]map[string]int{}
	for svc, hosts := range s.Turns {
		turns[svc] = map[string]int{}
		for _, h := range hosts {
			since, ok := st.turnSince[svc][h]
			if !ok {
				since = n
			}
			turns[svc][h] = since
		}
	}
	st.turnSince = turns
}

// rollbackStep reports whether step i of s is a rollback's.
func (s *Sample) rollbackStep(i int) bool { return i < len(s.Rollback) && s.Rollback[i] }

// headRollback reports whether svc is in a rollback step at the head of
// the deploy queue: it goes back whatever its dependencies do.
func (s *Sample) headRollback(svc string) bool {
	return len(s.Steps) > 0 && s.rollbackStep(0) && slices.Contains(s.Steps[0], svc)
}

// dependsOn reports whether name depends on dep in c, directly or not.
func dependsOn(c roll.Catalog, name, dep string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(n string) bool {
		for _, d := range c[n].DependsOn {
			if d == dep {
				return true
			}
			if !seen[d] {
				seen[d] = true
				if walk(d) {
					return true
				}
			}
		}
		return false
	}
	return walk(name)
}

func (st *replayState) allProbed() bool {
	for svc := range st.m.Policies {
		if len(st.answered[svc]) < len(st.m.Hosts) {
			return false
		}
	}
	return true
}

// serving says whether host serves svc: its latest answer was 200. A host
// that does not answer in time serves if a fault has it (it is cut off,
// frozen or overloaded on purpose); otherwise the silence may be this
// machine's load, and its latest answer stands.
func (st *replayState) serving(svc, host string, inWindow bool) bool {
	if st.probes[svc][host].NoAnswer && inWindow {
		return false
	}
	return st.answered[svc][host].OK
}

// back reports whether host serves every service and is in /current for
// each in the latest sample.
func (st *replayState) back(host string) bool {
	if st.sample == nil {
		return false
	}
	for svc := range st.m.Policies {
		if p := st.probes[svc][host]; !p.OK || p.NoAnswer || !slices.Contains(st.sample.Current[svc], host) {
			return false
		}
	}
	return true
}

// window is when a fault had a host: from injection until the host was back.
type window struct {
	from, to time.Time // to is zero if the host never came back
}

type windows map[string][]window

func (w windows) covers(host string, t time.Time) bool {
	for _, win := range w[host] {
		if !t.Before(win.from) && (win.to.IsZero() || t.Before(win.to)) {
			return true
		}
	}
	return false
}

// start is when the window covering host at t began.
func (w windows) start(host string, t time.Time) time.Time {
	for _, win := range w[host] {
		if !t.Before(win.from) && (win.to.IsZero() || t.Before(win.to)) {
			return win.from
		}
	}
	return t
}

// faultWindows computes each host fault's window: it ends at the first
// event after the heal at which the host is back, and not before Detection
// has passed since the fault: until then /current may still list the host
// under the session it had before the fault (killed and restarted at once,
// its old session lives on), and a host that boots and moves to the
// fleet's version before it registers anew must not look back already.
func (r *replay) faultWindows() windows {
	w := windows{}
	for _, f := range r.h.Faults {
		if f.Host == "" {
			continue
		}
		win := window{from: f.Start}
		if !f.Healed.IsZero() {
			settled := f.Start.Add(r.m.Detection)
			r.run(func(t time.Time, st *replayState) {
				if win.to.IsZero() && !t.Before(f.Healed) && !t.Before(settled) && st.back(f.Host) {
					win.to = t
				}
			})
		}
		w[f.Host] = append(w[f.Host], win)
	}
	return w
}
