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
// the second, stages detached.
func NewSchedule(seed uint64, index, hosts int, services []string) Schedule {
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
