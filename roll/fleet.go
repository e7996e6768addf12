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
// Between recounts it reads only the hosts that entered: a host that
// changes its version leaves /current and enters again, except for a
// change of its node in place, which a recount catches.
const fleetRecount = 5 * time.Minute

// summarize keeps every service's fleet view while ctx lasts (while this
// host is the advancer). It watches each /current/<svc>, and after a change
// waits settle before it looks, so that a rollout's many changes cost it
// one list a settle, not one per change. Errors are retried.
func (s *Store) summarize(ctx context.Context, settle time.Duration) {
	known := map[string]map[string]string{} // svc → host → version
	written := map[string]FleetView{}
	recount := time.Now().Add(fleetRecount)
	for ctx.Err() == nil {
		if time.Now().After(recount) {
			known = map[string]map[string]string{}
			recount = time.Now().Add(fleetRecount)
		}
		watches, err := s.summarizeOnce(known, written)
		if err != nil {
			watches = nil
			if !clock.Sleep(ctx, settle+clock.Jitter(time.Second)) {
				return
			}
			continue
		}
		if waitAny(ctx, watches...) != nil {
			return
		}
		if !clock.Sleep(ctx, settle) {
			return
		}
	}
}

// summarizeOnce brings every service's fleet view up to date and returns
// the watches on their /current. It lists /members/<svc> too, to keep the
// view's Gone: a view written before by another advancer gives the times
// it knew.
func (s *Store) summarizeOnce(known map[string]map[string]string, written map[string]FleetView) ([]<-chan zk.Event, error) {
	names, _, err := s.conn.Children(s.Tree.Services())
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Services(), err)
	}
	var watches []<-chan zk.Event
	for _, svc := range names {
		hosts, ch, err := s.childrenW(s.Tree.CurrentDir(svc), true)
		if err != nil {
			return nil, err
		}
		watches = append(watches, ch)
		hosts = s.validHosts(s.Tree.CurrentDir(svc), hosts)
		k := known[svc]
		if k == nil {
			k = map[string]string{}
			known[svc] = k
		}
		present := make(map[string]bool, len(hosts))
		for _, h := range hosts {
			present[h] = true
			if _, ok := k[h]; ok {
				continue
			}
			var c Current
			_, err := s.get(s.Tree.Current(svc, h), &c)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				continue
			case errors.Is(err, ErrBadNode):
				continue // not dcroll's: status shows it
			case err != nil:
				return nil, err
			}
			k[h] = c.Version
		}
		maps.DeleteFunc(k, func(h, _ string) bool { return !present[h] })
		v := FleetView{Versions: map[string]int{}, Online: len(k)}
		for _, ver := range k {
			v.Versions[ver]++
		}
		old, ok := written[svc]
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
		written[svc] = v
	}
	return watches, nil
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
	if _, err := s.conn.Create(s.Tree.fleetDir(), nil, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("roll: create %s: %w", s.Tree.fleetDir(), err)
	}
	if _, err := s.conn.Create(p, data, 0, s.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("roll: create %s: %w", p, err)
	}
	return nil
}
