package roll

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

const neverMet = "it cannot be met while a member upgrades: lower it, or seed quorum = 0 if the service may be fully down during a turn"

func TestDecide(t *testing.T) {
	five := []string{"h1", "h2", "h3", "h4", "h5"}
	// base may go: 5 of 5 online, quorum 3, nobody in turn.
	base := func() TurnState {
		return TurnState{
			Host:       "h1",
			Policy:     Service{Quorum: Quorum{Count: 3}, MaxParallel: 1},
			Members:    five,
			Online:     five,
			ReadyFront: true,
			HeadStep:   true,
			DepsDone:   true,
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*TurnState)
		want   Verdict
	}{
		{"all clear", func(s *TurnState) {}, Verdict{Go: true}},
		{"protocol too old, before all else", func(s *TurnState) { s.Protocol, s.MinProtocol, s.Paused = 1, 2, true },
			Verdict{Wait: "this agent speaks protocol 1, the data center requires 2: upgrade dcroll on this host"}},
		{"protocol at the minimum", func(s *TurnState) { s.Protocol, s.MinProtocol = 2, 2 }, Verdict{Go: true}},

		// Each reason, and the order in which they are reported.
		{"paused", func(s *TurnState) { s.Paused = true }, Verdict{Wait: "paused"}},
		{"paused before halted", func(s *TurnState) { s.Paused, s.Halted = true, "h3: health check failed" }, Verdict{Wait: "paused"}},
		{"halted", func(s *TurnState) { s.Halted = "h3: health check failed"; s.HeadStep = false }, Verdict{Wait: "halted: h3: health check failed"}},
		{"not head step", func(s *TurnState) { s.HeadStep, s.DepsDone, s.ReadyFront = false, false, false }, Verdict{Wait: "not in the head deploy step"}},
		{"dependency", func(s *TurnState) { s.DepsDone, s.ReadyFront = false, false }, Verdict{Wait: "waiting for a dependency"}},
		{"not front", func(s *TurnState) { s.ReadyFront = false; s.InTurn = []string{"h2"} }, Verdict{Wait: "not at the front of the ready queue"}},
		{"max_parallel", func(s *TurnState) { s.InTurn = []string{"h2"}; s.Online = []string{"h1"} }, Verdict{Wait: "max_parallel 1 reached"}},
		{"max_parallel 2", func(s *TurnState) { s.Policy.MaxParallel = 2; s.InTurn = []string{"h2", "h3"} }, Verdict{Wait: "max_parallel 2 reached"}},
		{"max_parallel unset means 1", func(s *TurnState) { s.Policy.MaxParallel = 0; s.InTurn = []string{"h2"} }, Verdict{Wait: "max_parallel 1 reached"}},
		{"a turn held by a non-member still counts", func(s *TurnState) { s.InTurn = []string{"gone"} }, Verdict{Wait: "max_parallel 1 reached"}},
		{"host listed in turn is ignored", func(s *TurnState) { s.InTurn = []string{"h1"} }, Verdict{Go: true}},

		// Quorum arithmetic with a count.
		{"count: 3 online, host among them", func(s *TurnState) { s.Online = []string{"h1", "h2", "h3"} },
			Verdict{Wait: "waiting for quorum: 3 online of 5 members, quorum 3"}},
		{"count: 4 online, 3 stay", func(s *TurnState) { s.Online = []string{"h1", "h2", "h3", "h4"} }, Verdict{Go: true}},
		{"count: host already offline", func(s *TurnState) { s.Online = []string{"h2", "h3", "h4"} }, Verdict{Go: true}},
		{"count: host offline, too few others", func(s *TurnState) { s.Online = []string{"h2", "h3"} },
			Verdict{Wait: "waiting for quorum: 2 online of 5 members, quorum 3"}},
		{"count: nobody online", func(s *TurnState) { s.Online = nil }, Verdict{Wait: "waiting for quorum: 0 online of 5 members, quorum 3"}},
		{"count: quorum of every other member", func(s *TurnState) { s.Policy.Quorum = Quorum{Count: 4} }, Verdict{Go: true}},
		{"count: quorum of every member never goes", func(s *TurnState) { s.Policy.Quorum = Quorum{Count: 5} },
			Verdict{Wait: "waiting for quorum: 5 online of 5 members, quorum 5; " + neverMet}},
		{"single member, quorum 1, waits saying why", func(s *TurnState) {
			s.Members, s.Online, s.Policy.Quorum = []string{"h1"}, []string{"h1"}, Quorum{Count: 1}
		}, Verdict{Wait: "waiting for quorum: 1 online of 1 members, quorum 1; " + neverMet}},
		{"single member, quorum 0, goes", func(s *TurnState) {
			s.Members, s.Online, s.Policy.Quorum = []string{"h1"}, []string{"h1"}, NoQuorum
		}, Verdict{Go: true}},
		{"quorum 0, everyone else offline, goes", func(s *TurnState) { s.Online, s.Policy.Quorum = []string{"h1"}, NoQuorum }, Verdict{Go: true}},
		{"quorum 0 keeps max_parallel", func(s *TurnState) { s.Policy.Quorum = NoQuorum; s.InTurn = []string{"h2"} },
			Verdict{Wait: "max_parallel 1 reached"}},
		{"in turn but still in current is not online", func(s *TurnState) {
			s.Policy.MaxParallel = 2
			s.InTurn = []string{"h2"}
			s.Online = []string{"h1", "h2", "h3", "h4"}
		}, Verdict{Wait: "waiting for quorum: 3 online of 5 members, quorum 3"}},
		{"two in turn, quorum kept", func(s *TurnState) {
			s.Policy.MaxParallel = 3
			s.Policy.Quorum = Quorum{Count: 2}
			s.InTurn = []string{"h2", "h3"}
		}, Verdict{Go: true}},
		{"non-members online are ignored", func(s *TurnState) { s.Online = []string{"h1", "h2", "h3", "x1", "x2", "x3"} },
			Verdict{Wait: "waiting for quorum: 3 online of 5 members, quorum 3"}},
		{"duplicates count once", func(s *TurnState) {
			s.Members = append(slices.Clone(five), "h2", "h3")
			s.Online = []string{"h1", "h2", "h2", "h3", "h3"}
		}, Verdict{Wait: "waiting for quorum: 3 online of 5 members, quorum 3"}},

		// Quorum arithmetic with a percentage of the members, rounded up.
		{"percent: 60% of 5 is 3", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 60}
			s.Online = []string{"h1", "h2", "h3"}
		}, Verdict{Wait: "waiting for quorum: 3 online of 5 members, quorum 3"}},
		{"percent: 50% of 5 rounds up to 3", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 50}
			s.Online = []string{"h1", "h2", "h3"}
		}, Verdict{Wait: "waiting for quorum: 3 online of 5 members, quorum 3"}},
		{"percent: 40% of 5 is 2", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 40}
			s.Online = []string{"h1", "h2", "h3"}
		}, Verdict{Go: true}},
		{"percent: denominator is members, not online", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 50}
			s.Members = []string{"h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"}
			s.Online = []string{"h1", "h2", "h3", "h4", "x1", "x2"}
		}, Verdict{Wait: "waiting for quorum: 4 online of 8 members, quorum 4"}},
		{"percent: 100% never goes", func(s *TurnState) { s.Policy.Quorum = Quorum{Percent: 100} },
			Verdict{Wait: "waiting for quorum: 5 online of 5 members, quorum 5; " + neverMet}},

		// Members offline for longer than member_ttl (expired).
		{"percent: expired members are not counted", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 80} // of 5: 4; of 3: 3
			s.Members = append(slices.Clone(five), "h6", "h7")
			s.Online = []string{"h1", "h2", "h3", "h4", "h5"}
			s.Expired = []string{"h6", "h7"}
		}, Verdict{Go: true}},
		{"percent: the same, not expired yet", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 80} // of 7: 6
			s.Members = append(slices.Clone(five), "h6", "h7")
			s.Online = []string{"h1", "h2", "h3", "h4", "h5"}
		}, Verdict{Wait: "waiting for quorum: 5 online of 7 members, quorum 6"}},
		{"percent: an expired member back online counts", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 100}
			s.Expired = []string{"h5"}
		}, Verdict{Wait: "waiting for quorum: 5 online of 5 members, quorum 5; " + neverMet}},
		{"percent: waiting says how many expired", func(s *TurnState) {
			s.Policy.Quorum = Quorum{Percent: 60}
			s.Online = []string{"h1", "h2", "h3"}
			s.Expired = []string{"h5", "x9"} // x9 is no member
		}, Verdict{Wait: "waiting for quorum: 3 online of 4 members, quorum 3 (1 more offline for longer than member_ttl, not counted)"}},
		{"count: expired members do not lower a count", func(s *TurnState) {
			s.Online = []string{"h1", "h2", "h3"}
			s.Expired = []string{"h4", "h5"}
		}, Verdict{Wait: "waiting for quorum: 3 online of 3 members, quorum 3 (2 more offline for longer than member_ttl, not counted); " + neverMet}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.change(&s)
			if got := Decide(s); got.Go != tc.want.Go || got.Wait != tc.want.Wait {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The property tests below run the turn-taking rules over an in-memory
// fleet. The model plays ZooKeeper: asking (Decide over the model's state)
// and taking the turn are one atomic step, as the lock or multi-op makes
// them. The deploy queue has one step per service, in dependency order.

type modelHost struct {
	name    string
	newVer  bool // runs the staged version
	up      bool // false: down or partitioned by an outside failure
	inTurn  bool
	current bool // its /current node exists (a host in turn may not have left yet)
}

type modelService struct {
	name   string
	policy Service
	dep    *modelService // nil, or the service this one depends on
	hosts  []*modelHost  // the members
	strays []string      // in current but not members: must be ignored
	ready  []string      // the ready queue, in arrival order
	paused bool
	halted string
}

type turnModel struct {
	svcs []*modelService
	head int // the deploy queue's head step: svcs[head] is rolling
}

func drawTurnModel(t *rapid.T) *turnModel {
	m := &turnModel{}
	n := rapid.IntRange(1, 2).Draw(t, "services")
	for i := range n {
		name := string(rune('a' + i))
		size := rapid.IntRange(1, 10).Draw(t, name+".members")
		svc := &modelService{name: name}
		switch {
		case size < 3 || rapid.IntRange(0, 9).Draw(t, name+".no quorum") == 0:
			// A service that may be fully down during a turn.
			svc.policy.Quorum = NoQuorum
		case rapid.Bool().Draw(t, name+".percent"):
			// The largest percentage that still leaves one member free.
			p := rapid.IntRange(1, 100*(size-1)/size).Draw(t, name+".quorum")
			svc.policy.Quorum = Quorum{Percent: p}
		default:
			svc.policy.Quorum = Quorum{Count: rapid.IntRange(1, size-1).Draw(t, name+".quorum")}
		}
		svc.policy.MaxParallel = rapid.IntRange(1, 3).Draw(t, name+".max_parallel")
		if i > 0 {
			svc.dep = m.svcs[i-1]
			svc.policy.DependsOn = []string{svc.dep.name}
		}
		var names []string
		for h := range size {
			hn := fmt.Sprintf("%s%d", name, h+1)
			names = append(names, hn)
			svc.hosts = append(svc.hosts, &modelHost{name: hn, up: true, current: true})
		}
		svc.ready = rapid.Permutation(names).Draw(t, name+".ready")
		for x := range rapid.IntRange(0, 2).Draw(t, name+".strays") {
			svc.strays = append(svc.strays, fmt.Sprintf("%s-stray%d", name, x+1))
		}
		m.svcs = append(m.svcs, svc)
	}
	return m
}

func (s *modelService) host(name string) *modelHost {
	for _, h := range s.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

func (s *modelService) inTurn() []*modelHost {
	var out []*modelHost
	for _, h := range s.hosts {
		if h.inTurn {
			out = append(out, h)
		}
	}
	return out
}

func (s *modelService) allNew() bool {
	for _, h := range s.hosts {
		if !h.newVer {
			return false
		}
	}
	return true
}

func (s *modelService) leaveReady(name string) {
	s.ready = slices.DeleteFunc(s.ready, func(r string) bool { return r == name })
}

func (m *turnModel) index(s *modelService) int { return slices.Index(m.svcs, s) }

// advance moves the deploy queue's head past finished steps: nobody in turn
// and every online member on the staged version.
func (m *turnModel) advance() {
	for m.head < len(m.svcs) {
		s := m.svcs[m.head]
		for _, h := range s.hosts {
			if h.inTurn || (h.up && !h.newVer) {
				return
			}
		}
		m.head++
	}
}

// state is what host h of s would read from ZooKeeper.
func (m *turnModel) state(s *modelService, h *modelHost) TurnState {
	st := TurnState{
		Host:     h.name,
		Policy:   s.policy,
		HeadStep: m.head == m.index(s),
		DepsDone: s.dep == nil || s.dep.allNew(),
		Paused:   s.paused,
		Halted:   s.halted,
	}
	for _, o := range s.hosts {
		st.Members = append(st.Members, o.name)
		if o.up && o.current {
			st.Online = append(st.Online, o.name)
		}
		if o.inTurn {
			st.InTurn = append(st.InTurn, o.name)
		}
	}
	st.Online = append(st.Online, s.strays...)
	for _, r := range s.ready {
		if !s.host(r).inTurn {
			st.ReadyFront = r == h.name
			break
		}
	}
	return st
}

// ask is one host asking for its turn; on Go the turn is taken at once.
// Before taking it, the invariants are checked against the model itself,
// not against what Decide was told.
func (m *turnModel) ask(t *rapid.T, s *modelService, h *modelHost) Verdict {
	v := Decide(m.state(s, h))
	if !v.Go {
		return v
	}
	if s.paused || s.halted != "" {
		t.Fatalf("%s got a turn for %s while paused=%v halted=%q", h.name, s.name, s.paused, s.halted)
	}
	if held := len(s.inTurn()); held >= s.policy.MaxParallel {
		t.Fatalf("%s got a turn for %s with %d already in turn, max_parallel %d", h.name, s.name, held, s.policy.MaxParallel)
	}
	stay := 0
	for _, o := range s.hosts {
		if o != h && o.up && !o.inTurn {
			stay++
		}
	}
	if need := s.policy.Quorum.Need(len(s.hosts)); stay < need {
		t.Fatalf("%s got a turn for %s leaving %d members online, quorum %d", h.name, s.name, stay, need)
	}
	if s.dep != nil {
		for _, o := range s.dep.hosts {
			if !o.newVer {
				t.Fatalf("%s got a turn for %s while %s of %s runs the old version", h.name, s.name, o.name, s.dep.name)
			}
		}
	}
	if m.head != m.index(s) {
		t.Fatalf("%s got a turn for %s, which is not in the head step", h.name, s.name)
	}
	if i := slices.IndexFunc(s.ready, func(r string) bool { return !s.host(r).inTurn }); i < 0 || s.ready[i] != h.name {
		t.Fatalf("%s got a turn for %s but is not at the front of the ready queue %v", h.name, s.name, s.ready)
	}
	h.inTurn = true
	return v
}

// finish ends a turn: healthy on the new version, or failed, switched back
// to the old one with the service halted.
func (m *turnModel) finish(s *modelService, h *modelHost, healthy bool) {
	h.inTurn, h.current = false, true
	if healthy {
		h.newVer = true
		s.leaveReady(h.name)
	} else {
		s.halted = h.name + ": health check failed"
	}
	m.advance()
}

// check holds after every step of the model.
func (m *turnModel) check(t *rapid.T) {
	for _, s := range m.svcs {
		held := s.inTurn()
		if len(held) > s.policy.MaxParallel {
			t.Fatalf("%s: %d hosts in turn, max_parallel %d", s.name, len(held), s.policy.MaxParallel)
		}
		// Outside failures never change who is in turn, so whatever they
		// did, the members dcroll took out leave at least quorum others.
		if free, need := len(s.hosts)-len(held), s.policy.Quorum.Need(len(s.hosts)); free < need {
			t.Fatalf("%s: %d hosts in turn leave %d members, quorum %d", s.name, len(held), free, need)
		}
		if s.dep != nil && len(held) > 0 && !s.dep.allNew() {
			t.Fatalf("%s: a host is in turn before every member of %s runs the new version", s.name, s.dep.name)
		}
	}
}

func TestTurnProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := drawTurnModel(t)
		actions := []string{"ask", "ask front", "ask front", "ask front", "finish", "finish", "fail",
			"leave current", "down", "up", "pause", "clear halt"}
		steps := rapid.IntRange(1, 300).Draw(t, "steps")
		for range steps {
			s := rapid.SampledFrom(m.svcs).Draw(t, "service")
			var in, down, upFree []*modelHost
			for _, h := range s.hosts {
				switch {
				case h.inTurn:
					in = append(in, h)
				case !h.up:
					down = append(down, h)
				default:
					upFree = append(upFree, h)
				}
			}
			switch rapid.SampledFrom(actions).Draw(t, "action") {
			case "ask": // any running host not in turn may ask
				if len(upFree) > 0 {
					m.ask(t, s, rapid.SampledFrom(upFree).Draw(t, "host"))
				}
			case "ask front":
				for _, r := range s.ready {
					if h := s.host(r); !h.inTurn {
						m.ask(t, s, h)
						break
					}
				}
			case "finish", "fail":
				if len(in) > 0 {
					h := rapid.SampledFrom(in).Draw(t, "host")
					m.finish(s, h, rapid.Bool().Draw(t, "healthy"))
				}
			case "leave current":
				for _, h := range in {
					h.current = false
				}
			case "down": // an outside failure; a host in turn is left alone
				if len(upFree) > 0 {
					h := rapid.SampledFrom(upFree).Draw(t, "host")
					h.up = false
					s.leaveReady(h.name)
				}
			case "up": // it starts the most popular version
				if len(down) > 0 {
					h := rapid.SampledFrom(down).Draw(t, "host")
					h.up = true
					if m.head > m.index(s) {
						h.newVer = true
					}
					if !h.newVer {
						s.ready = append(s.ready, h.name)
					}
				}
			case "pause":
				s.paused = !s.paused
			case "clear halt": // an operator decided
				s.halted = ""
			}
			m.advance()
			m.check(t)
		}
	})
}

// With no failures, hosts asking in ready order finish the rollout of every
// service: quorum below the member count always lets the front host go once
// the turns in flight end.
func TestTurnProgressProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := drawTurnModel(t)
		total := 0
		for _, s := range m.svcs {
			total += len(s.hosts)
		}
		// Every round takes a turn or ends one, and each host needs one of each.
		for round := 0; ; round++ {
			if round > 2*total {
				t.Fatalf("no rollout after %d rounds", round)
			}
			done := true
			for _, s := range m.svcs {
				done = done && s.allNew()
			}
			if done {
				return
			}
			took := false
			var waits []string
			for _, s := range m.svcs {
				for _, r := range s.ready {
					if h := s.host(r); !h.inTurn {
						v := m.ask(t, s, h)
						took = took || v.Go
						waits = append(waits, h.name+": "+v.Wait)
						break
					}
				}
			}
			// Take a turn or end one, whichever the draw prefers, as long as
			// something happens.
			var in []*modelHost
			var owner []*modelService
			for _, s := range m.svcs {
				for _, h := range s.inTurn() {
					in = append(in, h)
					owner = append(owner, s)
				}
			}
			if len(in) > 0 && (!took || rapid.Bool().Draw(t, "end a turn too")) {
				i := rapid.IntRange(0, len(in)-1).Draw(t, "which")
				m.finish(owner[i], in[i], true)
			} else if !took {
				t.Fatalf("stuck: nobody in turn and nobody may go: %v", waits)
			}
			m.advance()
			m.check(t)
		}
	})
}
