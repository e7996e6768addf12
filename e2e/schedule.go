package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Kinds of fault the nemesis injects.
const (
	Kill      = "kill"      // kill -9 of an agent, restarted after Hold
	Partition = "partition" // a host's link down for Hold, longer than the session timeout
	Pause     = "pause"     // SIGSTOP of an agent for Hold, longer than the session timeout, then SIGCONT
	ZKLeader  = "zk-leader" // kill of the ZooKeeper leader, restarted after Hold
	ZKQuorum  = "zk-quorum" // two of the three ZooKeeper servers down for Hold
	Slow      = "slow"      // a host's traffic capped at slowRate both ways for Hold
)

// Kinds lists every fault kind; BadRelease is the schedule's other fault.
var Kinds = []string{Kill, Partition, Pause, ZKLeader, ZKQuorum, Slow}

// BadRelease names, in counts, a schedule whose release fails its health
// check.
const BadRelease = "bad-release"

// The operator's actions a schedule may take besides staging and ordering.
const (
	// OpRollback: `dcroll rollback SVC` a moment after the order, during
	// the rollout or after it.
	OpRollback = "rollback"
	// OpCanary: `order --canary N`, then `dcroll promote` of each service
	// once its canary pauses it (web's canary_hold may promote it first).
	OpCanary = "canary"
	// OpAutoRollback: a bad release ordered with --auto-rollback, which
	// must end on the release before it everywhere.
	OpAutoRollback = "auto-rollback"
)

// Ops lists the operator's actions, for the report.
var Ops = []string{OpRollback, OpCanary, OpAutoRollback}

// Operator is what the operator does in a schedule besides staging and
// ordering: nothing (Action empty), or one of Ops.
type Operator struct {
	Action string
	// Service is the service rolled back (OpRollback).
	Service string
	// After is how long after the order the rollback comes (OpRollback).
	After time.Duration
	// Canary is the canary's size, a count or a percentage (OpCanary).
	Canary string
}

// Services of the data center: every host runs both, web depends on db.
var Services = []string{"db", "web"}

// SessionTimeout is the agents' ZooKeeper session timeout; partitions and
// pauses outlast it.
const SessionTimeout = 3 * time.Second

// slowRate is the cap of a Slow fault, bits/s.
const slowRate = 4_000_000

// Schedule is one round of the chaos test: a release of every service is
// staged and ordered, and the nemesis injects Faults one after the other.
type Schedule struct {
	Seed  uint64
	Index int
	// Bad is the service whose release fails its health check, if any:
	// the rollout must halt and a fixed release must then roll.
	Bad    string
	Faults []Step
	// Detached stages the releases with `stage --detach`, a plain HTTP
	// server of the root namespace as their origin: no stage process
	// serves, and the hosts take the pieces from the origin as a web seed
	// and from each other.
	Detached bool
	// Operator is the operator's action.
	Operator Operator
}

// Step is one fault: after waiting After (from the staging, or from the end
// of the previous fault), inject Kind on host Host (an index; ignored for
// ZooKeeper faults) and heal it after Hold.
type Step struct {
	Kind  string
	Host  int
	After time.Duration
	Hold  time.Duration
}

// NewSchedule derives schedule index of a run from the run's seed: the same
// seed and index give the same schedule. Schedule i's first fault is of kind
// Kinds[i mod len(Kinds)], so every run of len(Kinds) schedules has each
// kind, every fourth schedule stages a failing release and every sixth, from
// the second, stages detached. The operator acts in three of every four:
// schedule i with i mod 4 = 1 rolls back, 2 orders a canary and promotes
// it, and every other bad release (i mod 8 = 7) is ordered with
// --auto-rollback. The operator's action is drawn from a stream of its
// own, so the faults of a seed and index are those they were before the
// operator acted.
func NewSchedule(seed uint64, index, hosts int, services []string) Schedule {
	s := newSchedule(seed, index, hosts, services)
	op := rand.New(rand.NewPCG(seed^operatorStream, uint64(index)))
	switch {
	case index%8 == 7:
		s.Operator = Operator{Action: OpAutoRollback}
	case index%4 == 1:
		s.Operator = Operator{Action: OpRollback, Service: services[op.IntN(len(services))], After: jitter(op, 0, 8*time.Second)}
	case index%4 == 2:
		s.Operator = Operator{Action: OpCanary, Canary: []string{"1", "2", "34%"}[op.IntN(3)]}
	}
	return s
}

// Regression is schedule index of seed as a regression schedule replays
// it: its faults, without the operator's actions, which came later.
func Regression(seed uint64, index, hosts int, services []string) Schedule {
	return newSchedule(seed, index, hosts, services)
}

// operatorStream sets the operator's random stream apart from the faults'.
const operatorStream = 0x6f70657261746f72

func newSchedule(seed uint64, index, hosts int, services []string) Schedule {
	rng := rand.New(rand.NewPCG(seed, uint64(index)))
	s := Schedule{Seed: seed, Index: index}
	if index%4 == 3 {
		s.Bad = services[rng.IntN(len(services))]
	}
	// Without a draw from rng: the faults of a seed and index stay what
	// they were.
	s.Detached = index%6 == 1
	n := 1 + rng.IntN(2)
	for i := range n {
		kind := Kinds[rng.IntN(len(Kinds))]
		if i == 0 {
			kind = Kinds[index%len(Kinds)]
		}
		st := Step{Kind: kind, Host: rng.IntN(hosts), After: jitter(rng, 0, 4*time.Second)}
		switch kind {
		case Kill:
			st.Hold = jitter(rng, 500*time.Millisecond, 3*time.Second)
		case Partition, Pause:
			st.Hold = SessionTimeout + jitter(rng, time.Second, 3*time.Second)
		case ZKLeader:
			st.Hold = jitter(rng, time.Second, 3*time.Second)
		case ZKQuorum:
			st.Hold = jitter(rng, 2*time.Second, 5*time.Second)
		case Slow:
			st.After = 0 // it is the transfer that should be slow
			st.Hold = jitter(rng, 3*time.Second, 8*time.Second)
		}
		s.Faults = append(s.Faults, st)
	}
	return s
}

// jitter is a random duration in [lo, hi), in whole milliseconds.
func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64((hi-lo)/time.Millisecond)))*time.Millisecond
}

func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule %d (seed %d):", s.Index, s.Seed)
	if s.Bad != "" {
		fmt.Fprintf(&b, " a bad release of %s;", s.Bad)
	}
	if s.Detached {
		b.WriteString(" staged detached, an HTTP origin as web seed;")
	}
	switch op := s.Operator; op.Action {
	case OpRollback:
		fmt.Fprintf(&b, " rollback of %s %s after the order;", op.Service, op.After)
	case OpCanary:
		fmt.Fprintf(&b, " a canary of %s, promoted;", op.Canary)
	case OpAutoRollback:
		fmt.Fprintf(&b, " ordered with --auto-rollback;")
	}
	for _, f := range s.Faults {
		switch f.Kind {
		case ZKLeader, ZKQuorum:
			fmt.Fprintf(&b, " after %s %s for %s;", f.After, f.Kind, f.Hold)
		default:
			fmt.Fprintf(&b, " after %s %s h%d for %s;", f.After, f.Kind, f.Host+1, f.Hold)
		}
	}
	return strings.TrimSuffix(b.String(), ";")
}
