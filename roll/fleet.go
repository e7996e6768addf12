package roll

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/state"
)

// The fleet view: how many hosts serve each version of a service, in one
// node, <root>/fleet/<svc>, that the advancer keeps. A host reads it at boot
// and now and then for its cache, one request, instead of listing
// /current/<svc> and reading every child: at 10,000 hosts that was 10,000
// reads per host per look, and every host looked on every change.

// FleetView is the data of <root>/fleet/<svc>.
type FleetView struct {
	// Versions counts the hosts in /current/<svc> per version.
	Versions map[string]int `json:"versions"`
	// Online is the number of hosts in /current/<svc>.
	Online int `json:"online"`
	// At is when the advancer last saw /current/<svc> change.
	At time.Time `json:"at"`
	// Gone gives, for each member of the service that is not in
	// /current/<svc>, when the advancer first saw it so: member_ttl is
	// counted from then.
	Gone map[string]time.Time `json:"gone,omitempty"`
	// Hosts names the hosts of each version but the most common one
	// (Common), for a version of at most FleetNamed hosts: status lists
	// the hosts on an odd version without reading every host. A version
	// with more hosts is counted in Versions only.
	Hosts map[string][]string `json:"hosts,omitempty"`
}

// FleetNamed is the most hosts of one version a fleet view names.
const FleetNamed = 100

// Common is the version most hosts run, "" for an empty fleet; of
// versions equally common, the newest (the agents' choice at boot too).
func (v FleetView) Common() string {
	return commonVersion(v.Versions)
}

func commonVersion(counts map[string]int) string {
	best := ""
	for ver, n := range counts {
		if best == "" || n > counts[best] || n == counts[best] && state.CompareVersions(ver, best) > 0 {
			best = ver
		}
	}
	return best
}

// named gives the hosts of each version but the most common one, for the
// versions of at most FleetNamed hosts, sorted: a view's Hosts.
func named(known map[string]string, counts map[string]int) map[string][]string {
	common := commonVersion(counts)
	var out map[string][]string
	for h, ver := range known {
		if ver == common || counts[ver] > FleetNamed {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		out[ver] = append(out[ver], h)
	}
	for _, hs := range out {
		slices.Sort(hs)
	}
	return out
}

// Expired lists the hosts gone for longer than ttl at now (none if ttl is
// 0).
func (v FleetView) Expired(ttl time.Duration, now time.Time) []string {
	if ttl <= 0 {
		return nil
	}
	var out []string
	for h, since := range v.Gone {
		if now.Sub(since) > ttl {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

func (v FleetView) validate() error {
	n := 0
	for ver, c := range v.Versions {
		if err := ValidVersion(ver); err != nil {
			return err
		}
		if c < 0 {
			return fmt.Errorf("versions: %s counts %d hosts", ver, c)
		}
		n += c
	}
	if v.Online != n {
		return fmt.Errorf("online %d, but the versions count %d hosts", v.Online, n)
	}
	if err := validNames("gone", "host", slices.Collect(maps.Keys(v.Gone))); err != nil {
		return err
	}
	for ver, hs := range v.Hosts {
		if len(hs) > v.Versions[ver] {
			return fmt.Errorf("hosts: %d named on %s, which counts %d", len(hs), ver, v.Versions[ver])
		}
		if err := validNames("hosts", "host", hs); err != nil {
			return err
		}
	}
	return nil
}

func (t Tree) fleetDir() string { return t.join("fleet") }

// Fleet is the fleet view node of svc.
func (t Tree) Fleet(svc string) string { return t.join("fleet", svc) }

// FleetView reads svc's fleet view: one request. Where no advancer has
// written it yet (a data center whose agents predate it), it counts
// /current/<svc> itself, one read per host.
func (s *Store) FleetView(svc string) (FleetView, error) {
	v, _, err := s.fleetView(svc)
	return v, err
}

// fleetView is FleetView with the version of the node read: -1 when there
// is none and /current/<svc> was counted.
func (s *Store) fleetView(svc string) (FleetView, int32, error) {
	var v FleetView
	stat, err := s.get(s.Tree.Fleet(svc), &v)
	if !errors.Is(err, zk.ErrNoNode) {
		if err != nil {
			return v, 0, err
		}
		return v, stat.Version, nil
	}
	cur, err := s.CurrentOf(svc)
	if err != nil {
		return v, 0, err
	}
	return countVersions(cur), -1, nil
}

// BootView is the fleet view for a host's first look after boot, when it
// may move to the fleet's version: a view the advancer has not brought up
// to date yet (it counts a second after a change) must not decide that.
// It also reads how many hosts /current/<svc> holds now, one request: a
// view whose most popular version leads by more than the view is off by
// is taken; else it waits and reads again, and after a few tries counts
// /current/<svc> itself.
func (s *Store) BootView(ctx context.Context, svc string) (FleetView, error) {
	for try := 0; try < 5; try++ {
		v, err := s.FleetView(svc)
		if err != nil {
			return v, err
		}
		ok, st, err := s.conn.Exists(s.Tree.CurrentDir(svc))
		if err != nil {
			return v, fmt.Errorf("roll: read %s: %w", s.Tree.CurrentDir(svc), err)
		}
		if !ok {
			return v, fmt.Errorf("roll: service %q is not in the catalog (%s is missing)", svc, s.Tree.CurrentDir(svc))
		}
		if v.decisive(abs(int(st.NumChildren) - v.Online)) {
			return v, nil
		}
		if !clock.Sleep(ctx, fleetSettle+clock.Jitter(fleetSettle)) {
			return v, ctx.Err()
		}
	}
	cur, err := s.CurrentOf(svc)
	if err != nil {
		return FleetView{}, err
	}
	return countVersions(cur), nil
}

// decisive reports whether the view's most popular version stays so when
// off counts may be wrong.
func (v FleetView) decisive(off int) bool {
	if off == 0 {
		return true
	}
	first, second := 0, 0
	for _, n := range v.Versions {
		switch {
		case n > first:
			first, second = n, first
		case n > second:
			second = n
		}
	}
	return first-second > off
}

func abs(n int) int { return max(n, -n) }

func countVersions(cur map[string]Current) FleetView {
	v := FleetView{Versions: map[string]int{}, Online: len(cur)}
	for _, c := range cur {
		v.Versions[c.Version]++
	}
	return v
}

// fleetRecount is how often the advancer reads every /current node again.
// Between recounts it reads only the hosts that entered (see
// summarizer.look), and a change of a node in place, which no list shows,
// waits for a recount.
const fleetRecount = 5 * time.Minute

// summarize keeps every service's fleet view while ctx lasts (while this
// host is the advancer). It watches each /current/<svc>, and after a change
// waits settle before it looks, so that a rollout's many changes cost it
// one list a settle, not one per change. Errors are retried.
func (s *Store) summarize(ctx context.Context, settle time.Duration) {
	z := newSummarizer()
	recount := time.Now().Add(fleetRecount)
	for ctx.Err() == nil {
		if time.Now().After(recount) {
			z.forget()
			recount = time.Now().Add(fleetRecount)
		}
		resync := s.resyncs.next()
		watches, err := z.look(s)
		if err != nil {
			watches = nil
			if !clock.Sleep(ctx, settle+clock.Jitter(time.Second)) {
				return
			}
			continue
		}
		if waitAny(ctx, append(watches, resync)...) != nil {
			return
		}
		if !clock.Sleep(ctx, settle) {
			return
		}
	}
}

// summarizer is what the advancer knows of each service's /current between
// two looks.
type summarizer struct {
	svcs    map[string]*seenService
	written map[string]FleetView
}

// seenService is what one look saw of /current/<svc>.
type seenService struct {
	hosts   map[string]seenHost // the nodes read
	present map[string]bool     // the hosts listed
	// cversion is /current/<svc>'s child version: it counts every entry
	// and departure, including those that came and went between looks.
	cversion int32
	listed   bool     // present and cversion were read
	turns    []string // the hosts in turn at the look
}

// seenHost is a host's node in /current/<svc> as last read.
type seenHost struct {
	version string
	czxid   int64 // the node's creation: a host that left and came back has a new one
}

func newSummarizer() *summarizer {
	return &summarizer{svcs: map[string]*seenService{}, written: map[string]FleetView{}}
}

// forget makes the next look read every host's node again.
func (z *summarizer) forget() { z.svcs = map[string]*seenService{} }

// look brings every service's fleet view up to date and returns the
// watches on their /current. It lists /members/<svc> too, to keep the
// view's Gone: a view written before by another advancer gives the times
// it knew.
//
// It reads the nodes of the hosts that entered since the last look. A host
// that left and came back between two looks (a switch shorter than the
// advancer's settle) is in both lists: the child version of /current,
// which counts every entry and departure, tells that it happened. Such a
// host held a turn for it, so the hosts in turn at the last look or now
// are read again, and the creation of their nodes tells which came back;
// if that does not account for every change, every node is read.
func (z *summarizer) look(s *Store) ([]<-chan zk.Event, error) {
	names, _, err := s.conn.Children(s.Tree.Services())
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Services(), err)
	}
	var watches []<-chan zk.Event
	for _, svc := range names {
		dir := s.Tree.CurrentDir(svc)
		hosts, stat, ch, err := s.list(dir, true)
		if errors.Is(err, zk.ErrNoNode) {
			hosts, stat = nil, nil
			_, _, ch, err = s.conn.ExistsW(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("roll: list %s: %w", dir, err)
		}
		watches = append(watches, ch)
		turns, _, err := s.childrenW(s.Tree.turnsDir(svc), false)
		if err != nil {
			return nil, err
		}
		hosts = s.validHosts(dir, hosts)
		seen := z.svcs[svc]
		if seen == nil {
			seen = &seenService{hosts: map[string]seenHost{}}
			z.svcs[svc] = seen
		}
		present := make(map[string]bool, len(hosts))
		for _, h := range hosts {
			present[h] = true
		}
		// Every entry and departure since the last look that the two lists
		// do not show: hosts that left and came back meanwhile.
		unseen := 0
		if stat != nil && seen.listed {
			unseen = int(stat.Cversion - seen.cversion)
			for h := range present {
				if !seen.present[h] {
					unseen--
				}
			}
			for h := range seen.present {
				if !present[h] {
					unseen--
				}
			}
		}
		maps.DeleteFunc(seen.hosts, func(h string, _ seenHost) bool { return !present[h] })
		if unseen > 0 {
			for _, h := range append(slices.Clone(seen.turns), turns...) {
				old, ok := seen.hosts[h]
				if !ok {
					continue
				}
				now, found, err := readSeen(s, svc, h)
				if err != nil {
					return nil, err
				}
				if !found || now.czxid != old.czxid {
					unseen -= 2
				}
				if found {
					seen.hosts[h] = now
				} else {
					delete(seen.hosts, h)
				}
			}
			if unseen > 0 {
				clear(seen.hosts) // not accounted for: read every node
			}
		}
		for _, h := range hosts {
			if _, ok := seen.hosts[h]; ok {
				continue
			}
			now, found, err := readSeen(s, svc, h)
			if err != nil {
				return nil, err
			}
			if found {
				seen.hosts[h] = now
			}
		}
		seen.present, seen.listed = present, stat != nil
		if stat != nil {
			seen.cversion = stat.Cversion
		}
		seen.turns = turns

		k := make(map[string]string, len(seen.hosts))
		for h, e := range seen.hosts {
			k[h] = e.version
		}
		v := FleetView{Versions: map[string]int{}, Online: len(k)}
		for _, ver := range k {
			v.Versions[ver]++
		}
		old, ok := z.written[svc]
		if !ok {
			// This advancer's first look: take the times the last one knew.
			if _, err := s.get(s.Tree.Fleet(svc), &old); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, ErrBadNode) {
				return nil, err
			}
		}
		members, err := s.Members(svc)
		if err != nil {
			return nil, err
		}
		v.Gone = gone(members, present, old.Gone, time.Now().UTC())
		v.Hosts = named(k, v.Versions)
		if ok && old.Online == v.Online && maps.Equal(old.Versions, v.Versions) && maps.Equal(old.Gone, v.Gone) &&
			maps.EqualFunc(old.Hosts, v.Hosts, slices.Equal) {
			continue
		}
		v.At = time.Now().UTC()
		if err := s.writeFleetView(svc, v); err != nil {
			return nil, err
		}
		z.written[svc] = v
	}
	return watches, nil
}

// readSeen reads host's node in /current/<svc>; found is false when it is
// gone, or not dcroll's (status shows it).
func readSeen(s *Store, svc, host string) (seenHost, bool, error) {
	var c Current
	stat, err := s.get(s.Tree.Current(svc, host), &c)
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		return seenHost{}, false, nil
	case err != nil:
		return seenHost{}, false, err
	}
	return seenHost{version: c.Version, czxid: stat.Czxid}, true, nil
}

// goneBudget bounds the bytes of the fleet view's gone: the view is one
// znode of at most MaxNodeData. A mass outage of thousands of hosts would
// not fit; the members gone longest are kept (they expire first), the
// others are added as room frees up, and until then do not expire, which
// errs on the side of counting them.
const goneBudget = MaxNodeData / 2

// gone gives the members that are not present, each with the time it was
// first seen gone: from before where known, else now; the longest gone
// first, within goneBudget.
func gone(members []string, present map[string]bool, before map[string]time.Time, now time.Time) map[string]time.Time {
	type entry struct {
		host  string
		since time.Time
	}
	var all []entry
	for _, h := range members {
		if present[h] {
			continue
		}
		since, ok := before[h]
		if !ok {
			since = now
		}
		all = append(all, entry{h, since})
	}
	if len(all) == 0 {
		return nil
	}
	slices.SortFunc(all, func(a, b entry) int {
		if c := a.since.Compare(b.since); c != 0 {
			return c
		}
		return strings.Compare(a.host, b.host)
	})
	out := map[string]time.Time{}
	size := 0
	for _, e := range all {
		// "host":"2006-01-02T15:04:05.999999999Z", in JSON.
		size += len(e.host) + len(time.RFC3339Nano) + 8
		if size > goneBudget {
			break
		}
		out[e.host] = e.since
	}
	return out
}

func (s *Store) writeFleetView(svc string, v FleetView) error {
	data, err := encode(v)
	if err != nil {
		return err
	}
	p := s.Tree.Fleet(svc)
	_, err = s.conn.Set(p, data, -1)
	if !errors.Is(err, zk.ErrNoNode) {
		if err != nil {
			return fmt.Errorf("roll: set %s: %w", p, err)
		}
		return nil
	}
	// The first view of this service, maybe of this data center.
	if _, err := s.conn.Create(s.Tree.fleetDir(), nil, 0, s.acls.of(s.Tree.fleetDir())); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("roll: create %s: %w", s.Tree.fleetDir(), err)
	}
	if _, err := s.conn.Create(p, data, 0, s.acls.of(p)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("roll: create %s: %w", p, err)
	}
	return nil
}
