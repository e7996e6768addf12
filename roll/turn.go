package roll

import (
	"fmt"
	"time"
)

// TurnState is what one host sees when it asks for its upgrade turn for one
// service. The caller reads it from ZooKeeper; Decide only judges it.
type TurnState struct {
	Host    string
	Policy  Service
	Members []string // /members/<svc>: the quorum's denominator
	Online  []string // /current/<svc>: serving and healthy
	// Expired lists the members offline for longer than the service's
	// member_ttl: a percentage quorum is taken of the other members.
	Expired []string
	// InTurn lists the hosts of the service holding a turn (mid-upgrade).
	// Host itself is not yet in turn; if listed, it is ignored.
	InTurn     []string
	ReadyFront bool   // Host is first in the ready queue among hosts not in turn
	HeadStep   bool   // the service is in the head step of the deploy queue
	DepsDone   bool   // every service it depends on has finished its step
	Paused     bool   // an operator paused the service's deploy
	Halted     string // non-empty: the recorded failure that halted the service
	// Protocol is the protocol version Host's agent speaks; MinProtocol
	// the lowest the data center lets take turns (0: any).
	Protocol, MinProtocol int
	// Window, non-empty, says that no maintenance window of the service
	// is open, and when the next opens; windowWait is how long to wait
	// before looking again (until it opens, at most windowPoll).
	Window     string
	windowWait time.Duration

	// The versions of the control nodes read, which the take of the turn
	// checks (see Store.takeTurn), and the service's control itself (a
	// canary's take counts its turn in it).
	controlVersion, deployVersion int32
	stagingVersion                int32 // of the staged manifest, read at the take
	control                       Control
	// What else was read, to tell whether it changed before a watch was
	// set (see Store.watchBlocker).
	rootVersion int32
	stepNames   []string
	queued      bool  // the service is in a step of the deploy queue
	viewVersion int32 // of the fleet view read (-1: none)
	// front holds the counts read instead of Members and Online, which are
	// then left empty (see Store.turnState); nil: decide on the lists.
	front *frontCounts
}

// Verdict is Decide's answer: Go, or why not, in words for status.
type Verdict struct {
	Go   bool
	Wait string

	on blocker // the condition that holds the host: what to watch
}

// blocker is the first condition of Decide a host does not meet.
type blocker int

const (
	onNothing blocker = iota
	onProtocol
	onControl // paused or halted
	onStep    // not in the head step, or a dependency's step before it
	onFront
	onParallel
	onQuorum
	onWindow
)

// Decide says whether the host may take its turn now. It may only if its
// agent speaks the protocol the data center requires, the service is
// neither paused nor halted, its step heads the deploy queue,
// its dependencies are done, the host is at the front of the ready queue,
// fewer than max_parallel hosts are in turn, and after the host leaves at
// least quorum other members stay online (quorum 0: the service may be
// fully down; a percentage is taken of the members that have not expired).
// Wait gives the first unmet condition, in that order.
//
// A state the store read on counts (the front of a queue, see
// Store.turnState) is judged on them; if the store did not look up how
// many hosts in turn are still in /current, all of them are taken to be:
// the safe side.
func Decide(s TurnState) Verdict {
	if s.front != nil {
		k := s.front.inTurnOnline
		if k < 0 {
			k = s.inTurnOthers()
		}
		return decideCounts(s.countsAt(k))
	}
	c := turnCounts{
		Policy: s.Policy, Protocol: s.Protocol, MinProtocol: s.MinProtocol, Paused: s.Paused, Halted: s.Halted,
		HeadStep: s.HeadStep, DepsDone: s.DepsDone, ReadyFront: s.ReadyFront, Window: s.Window,
	}
	inTurn := map[string]bool{}
	for _, h := range s.InTurn {
		if h != s.Host {
			inTurn[h] = true
		}
	}
	// A turn is a held lock whether or not its holder is still a member, so
	// every holder counts against max_parallel.
	c.InTurn = len(inTurn)

	// Quorum invariant: only members count, a host in turn is not serving
	// whatever current says, and Host itself is about to leave. A member
	// that has expired is not counted, unless it is back online.
	members := map[string]bool{}
	for _, h := range s.Members {
		members[h] = true
	}
	online := map[string]bool{}
	for _, h := range s.Online {
		if members[h] && !inTurn[h] {
			online[h] = true
		}
	}
	for _, h := range s.Expired {
		if members[h] && !online[h] {
			delete(members, h)
			c.Expired++
		}
	}
	c.Members, c.Online = len(members), len(online)
	c.HostOnline, c.HostMember = online[s.Host], members[s.Host]
	return decideCounts(c)
}

// turnCounts is a TurnState reduced to what Decide judges: the sets
// counted. Status judges the front of a ready queue on counts alone (see
// Store.Summary).
type turnCounts struct {
	Policy                         Service
	Protocol, MinProtocol          int
	Paused                         bool
	Halted                         string
	HeadStep, DepsDone, ReadyFront bool
	Window                         string // outside every maintenance window: why
	InTurn                         int    // hosts in turn, the host itself left out
	Members                        int    // members that have not expired
	Online                         int    // of them, online and not in turn
	Expired                        int    // members left out for member_ttl
	HostOnline, HostMember         bool
}

func decideCounts(s turnCounts) Verdict {
	switch {
	case s.Protocol < s.MinProtocol:
		return Verdict{Wait: fmt.Sprintf("this agent speaks protocol %d, the data center requires %d: upgrade dcroll on this host", s.Protocol, s.MinProtocol), on: onProtocol}
	case s.Paused:
		return Verdict{Wait: "paused", on: onControl}
	case s.Halted != "":
		return Verdict{Wait: "halted: " + s.Halted, on: onControl}
	case !s.HeadStep:
		return Verdict{Wait: "not in the head deploy step", on: onStep}
	case !s.DepsDone:
		return Verdict{Wait: "waiting for a dependency", on: onStep}
	case !s.ReadyFront:
		return Verdict{Wait: "not at the front of the ready queue", on: onFront}
	case s.Window != "":
		return Verdict{Wait: s.Window, on: onWindow}
	}
	// A policy without max_parallel (never seeded so) gets the seed
	// default of 1.
	maxParallel := max(s.Policy.MaxParallel, 1)
	if s.InTurn >= maxParallel {
		return Verdict{Wait: fmt.Sprintf("max_parallel %d reached", maxParallel), on: onParallel}
	}
	stay := s.Online
	if s.HostOnline {
		stay--
	}
	need := s.Policy.Quorum.Need(s.Members)
	if stay < need {
		wait := fmt.Sprintf("waiting for quorum: %d online of %d members, quorum %d", s.Online, s.Members, need)
		if s.Expired > 0 {
			wait += fmt.Sprintf(" (%d more offline for longer than member_ttl, not counted)", s.Expired)
		}
		if s.HostMember && need >= s.Members {
			// Waiting cannot help: the host itself leaves during its turn.
			wait += "; it cannot be met while a member upgrades: lower it, or seed quorum = 0 if the service may be fully down during a turn"
		}
		return Verdict{Wait: wait, on: onQuorum}
	}
	return Verdict{Go: true}
}
