package roll

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
	"golang.org/x/sync/errgroup"
)

// frontCounts is what the front of a ready queue reads of the fleet to
// decide: child counts, one request each whatever the fleet's size, where
// the lists of /members/<svc> and /current/<svc> would be two replies of
// about 150 KB each at 10,000 hosts, for every turn.
//
// A count cannot tell which hosts are in /current, so it is read on two
// facts of the protocol: a host enters /current/<svc> only as a member of
// svc (it registers its membership first, and forget is refused while its
// agent is up), and the hosts in turn are the only online hosts that do
// not count. How many of them are still in /current (a host leaves it
// before it stops its service and enters it again once healthy, before it
// releases the turn) is read, one exists each, only when it changes the
// verdict.
type frontCounts struct {
	members, current       int // children of /members/<svc> and /current/<svc>
	hostOnline, hostMember bool
	// inTurnOnline is how many of the hosts in turn, the deciding host
	// aside, are in /current (-1: not read).
	inTurnOnline int
	// expired is how many members are offline for longer than member_ttl
	// (-1: not read; it is read only when a percentage quorum holds the
	// host while a member is offline).
	expired int
}

// parallel runs reads at once and returns the first error. They share the
// store's one session, whose requests ZooKeeper answers in order: the
// replies come in about one round trip, not one round trip each.
func parallel(reads ...func() error) error {
	var g errgroup.Group
	for _, r := range reads {
		g.Go(r)
	}
	return g.Wait()
}

// countChildren reads how many children p has (a missing p has none).
func (s *Store) countChildren(p string, n *int) func() error {
	return func() error {
		ok, stat, err := s.conn.Exists(p)
		if err != nil {
			return fmt.Errorf("roll: read %s: %w", p, err)
		}
		*n = 0
		if ok {
			*n = int(stat.NumChildren)
		}
		return nil
	}
}

// exists reads whether p exists.
func (s *Store) exists(p string, ok *bool) func() error {
	return func() error {
		var err error
		if *ok, _, err = s.conn.Exists(p); err != nil {
			return fmt.Errorf("roll: read %s: %w", p, err)
		}
		return nil
	}
}

// inTurnOthers is how many hosts hold a turn, the deciding host aside.
func (s TurnState) inTurnOthers() int {
	n := 0
	for _, h := range s.InTurn {
		if h != s.Host {
			n++
		}
	}
	return n
}

// countsAt is the counted state with k of the hosts in turn (the deciding
// host aside) still in /current.
func (s TurnState) countsAt(k int) turnCounts {
	f := s.front
	expired := max(f.expired, 0)
	return turnCounts{
		Policy: s.Policy, Protocol: s.Protocol, MinProtocol: s.MinProtocol, Paused: s.Paused, Halted: s.Halted,
		HeadStep: s.HeadStep, DepsDone: s.DepsDone, ReadyFront: s.ReadyFront, Window: s.Window,
		InTurn:     s.inTurnOthers(),
		Members:    f.members - expired,
		Online:     f.current - k,
		Expired:    expired,
		HostOnline: f.hostOnline,
		HostMember: f.hostMember,
	}
}

// hasOffline reports whether a member may be offline: a reason to decide
// again now and then with nothing watched changing (see recheck).
func (s TurnState) hasOffline() bool {
	if s.front != nil {
		return s.front.members > s.front.current
	}
	return hasOffline(s.Members, s.Online)
}

// decideFront is Decide on the counts of st.front, reading the little more
// the verdict may need (see decideCounted).
func (s *Store) decideFront(svc string, st *TurnState) (Verdict, error) {
	return decideCounted(st,
		func() (int, error) { return s.countInTurnOnline(svc, st) },
		func(ttl time.Duration) (int, bool, error) { return s.countExpired(svc, st, ttl) })
}

// decideCounted is Decide on the counts of st.front. It reads, through the
// functions given, how many hosts in turn are still in /current only when
// the verdict differs between none and all of them, and how many members
// have expired (and whether st.Host is one) only when a percentage quorum
// holds the host while a member may be offline.
func decideCounted(st *TurnState, inTurnOnline func() (int, error), expired func(time.Duration) (int, bool, error)) (Verdict, error) {
	f := st.front
	for {
		var v Verdict
		if f.inTurnOnline >= 0 {
			v = decideCounts(st.countsAt(f.inTurnOnline))
		} else {
			fewest := decideCounts(st.countsAt(st.inTurnOthers()))
			most := decideCounts(st.countsAt(0))
			if fewest.Go != most.Go || fewest.on != most.on {
				n, err := inTurnOnline()
				if err != nil {
					return Verdict{}, err
				}
				f.inTurnOnline = n
				continue
			}
			v = most
		}
		ttl := st.Policy.TTL()
		if v.on != onQuorum || st.Policy.Quorum.Percent == 0 || ttl <= 0 || f.expired >= 0 || !st.hasOffline() {
			return v, nil
		}
		n, hostExpired, err := expired(ttl)
		if err != nil {
			return Verdict{}, err
		}
		f.expired = n
		if hostExpired {
			f.hostMember = false
		}
		if n == 0 {
			return v, nil
		}
	}
}

// countInTurnOnline counts the hosts in turn, st.Host aside, that were in
// /current/<svc> when it was counted, and counts it again (into st.front).
//
// One look at each host after the count is not enough: a host in turn
// leaves /current when its switch begins, which is often just after the
// next host, at the front now, counted it, and a look after that sees it
// gone while the count still holds it: the host would count as serving
// (the chaos checker saw db's quorum broken: three hosts out, quorum 4 of
// 6). So each host is looked at before and after a new count, and counted
// if either look saw it. A host in turn leaves /current once and enters
// it again once in its turn, and no other turn starts while the front
// decides: a host in /current at the count was there at one of the looks.
// A host that came back between them counts too, the safe side.
// 2 × max_parallel exists and one count, in three round trips, only when
// the verdict depends on it.
func (s *Store) countInTurnOnline(svc string, st *TurnState) (int, error) {
	var others []string
	for _, h := range st.InTurn {
		if h != st.Host {
			others = append(others, h)
		}
	}
	look := func() ([]bool, error) {
		in := make([]bool, len(others))
		var reads []func() error
		for i, h := range others {
			reads = append(reads, s.exists(s.Tree.Current(svc, h), &in[i]))
		}
		return in, parallel(reads...)
	}
	before, err := look()
	if err != nil {
		return 0, err
	}
	if err := s.countChildren(s.Tree.CurrentDir(svc), &st.front.current)(); err != nil {
		return 0, err
	}
	after, err := look()
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range others {
		if before[i] || after[i] {
			n++
		}
	}
	return n, nil
}

// countExpired counts the members of svc offline for longer than ttl, from
// the fleet view's gone, each checked to be still a member and still not
// serving (out of /current, or in turn; the view lags by about a second):
// two exists each, for the members gone that long, not for the fleet.
// hostExpired reports that the deciding host is one of them.
func (s *Store) countExpired(svc string, st *TurnState, ttl time.Duration) (n int, hostExpired bool, err error) {
	var v FleetView
	_, err = s.get(s.Tree.Fleet(svc), &v)
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		return 0, false, nil // no expiry without a view; status shows a bad one
	case err != nil:
		return 0, false, err
	}
	names := v.Expired(ttl, time.Now())
	member := make([]bool, len(names))
	online := make([]bool, len(names))
	var reads []func() error
	for i, h := range names {
		reads = append(reads, s.exists(s.Tree.Member(svc, h), &member[i]), s.exists(s.Tree.Current(svc, h), &online[i]))
	}
	if err := parallel(reads...); err != nil {
		return 0, false, err
	}
	for i, h := range names {
		serving := online[i] && (h == st.Host || !slices.Contains(st.InTurn, h))
		if member[i] && !serving {
			n++
			hostExpired = hostExpired || h == st.Host
		}
	}
	return n, hostExpired, nil
}
