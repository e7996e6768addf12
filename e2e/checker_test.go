package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// The checker's own tests: fabricated histories, each with one thing wrong
// or one thing that looks wrong but is not, so the checker is shown to fail
// when it must and only then.

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// model: one service, 4 hosts, quorum 3 (so one host at a time may go),
// max_parallel 1; and a dependent service.
func testModel() Model {
	return Model{
		Policies: roll.Catalog{
			"db":  {Quorum: roll.Quorum{Count: 3}, MaxParallel: 1},
			"web": {Quorum: roll.Quorum{Count: 1}, MaxParallel: 2, DependsOn: []string{"db"}},
		},
		Hosts:     []string{"h1", "h2", "h3", "h4"},
		Detection: 3 * time.Second,
	}
}

// healthy is a history in which every host serves version 1 of both
// services from the start, and ZooKeeper lists them all.
func healthy() History {
	h := History{Start: at(0), Staged: map[string]map[string]string{
		"db": {"1": "d1", "2": "d2"}, "web": {"1": "w1"},
	}}
	for _, host := range []string{"h1", "h2", "h3", "h4"} {
		h.Probes = append(h.Probes,
			Probe{At: at(0), Host: host, Service: "db", OK: true, Version: "1", Digest: "d1"},
			Probe{At: at(0), Host: host, Service: "web", OK: true, Version: "1", Digest: "w1"})
	}
	h.Samples = append(h.Samples, sample(0, nil, nil, "h1", "h2", "h3", "h4"))
	return h
}

func sample(ms int, turns map[string][]string, steps [][]string, current ...string) Sample {
	if turns == nil {
		turns = map[string][]string{}
	}
	return Sample{At: at(ms), Turns: turns, Steps: steps,
		Current: map[string][]string{"db": current, "web": current}, Halted: map[string]string{}}
}

func down(ms int, host, svc string) Probe {
	return Probe{At: at(ms), Host: host, Service: svc}
}

func up(ms int, host, svc, version, digest string) Probe {
	return Probe{At: at(ms), Host: host, Service: svc, OK: true, Version: version, Digest: digest}
}

func wantViolations(t *testing.T, vs []Violation, invariants ...string) {
	t.Helper()
	var got []string
	for _, v := range vs {
		got = append(got, v.Invariant)
	}
	if strings.Join(got, ",") != strings.Join(invariants, ",") {
		t.Errorf("violations %v, want invariants %v", vs, invariants)
	}
}

func TestCheckAcceptsASequentialRollout(t *testing.T) {
	h := healthy()
	for i, host := range []string{"h1", "h2", "h3", "h4"} {
		ms := 1000 * (i + 1)
		h.Probes = append(h.Probes, down(ms, host, "db"), up(ms+500, host, "db", "2", "d2"))
		h.Samples = append(h.Samples, sample(ms, map[string][]string{"db": {host}}, [][]string{{"db"}}, "h1", "h2", "h3", "h4"))
	}
	wantViolations(t, Check(testModel(), h))
}

func TestCheckFindsTwoHostsDownAtOnce(t *testing.T) {
	h := healthy()
	h.Probes = append(h.Probes, down(1000, "h1", "db"), down(1200, "h2", "db"), up(1500, "h1", "db", "2", "d2"))
	// Two out of service with quorum 3 of 4: quorum and max_parallel.
	wantViolations(t, Check(testModel(), h), "max_parallel", "quorum", "quorum")
}

func TestCheckExcusesAFaultDcrollCouldNotKnowYet(t *testing.T) {
	h := healthy()
	// h2 is killed just before dcroll takes h1: dcroll still counted it.
	h.Faults = append(h.Faults, Fault{Kind: Kill, Host: "h2", Start: at(900), Healed: at(3000)})
	h.Probes = append(h.Probes, down(950, "h2", "db"), down(1000, "h1", "db"), up(1500, "h1", "db", "2", "d2"))
	wantViolations(t, Check(testModel(), h))
}

func TestCheckBlamesATakedownAfterAKnownFault(t *testing.T) {
	h := healthy()
	// h2 died long before: dcroll must have seen it gone and waited.
	h.Faults = append(h.Faults, Fault{Kind: Kill, Host: "h2", Start: at(900)})
	h.Probes = append(h.Probes, down(950, "h2", "db"), down(6000, "h1", "db"), up(6500, "h1", "db", "2", "d2"))
	wantViolations(t, Check(testModel(), h), "quorum")
}

func TestCheckFaultWindowEndsWhenTheHostIsBack(t *testing.T) {
	h := healthy()
	h.Faults = append(h.Faults, Fault{Kind: Partition, Host: "h2", Start: at(900), Healed: at(2000)})
	h.Probes = append(h.Probes, down(950, "h2", "db"), up(2100, "h2", "db", "1", "d1"))
	// Back at 2.1 s; later dcroll takes h2 and h3 at once.
	h.Probes = append(h.Probes, down(5000, "h2", "db"), down(5000, "h3", "db"))
	wantViolations(t, Check(testModel(), h), "max_parallel", "quorum", "quorum")
}

func TestCheckFindsATurnBeforeTheDependencyFinished(t *testing.T) {
	h := healthy()
	h.Samples = append(h.Samples, sample(1000, map[string][]string{"web": {"h1"}}, [][]string{{"db"}, {"web"}}, "h1", "h2", "h3", "h4"))
	wantViolations(t, Check(testModel(), h), "order")
}

func TestCheckFindsTooManyTurns(t *testing.T) {
	h := healthy()
	h.Samples = append(h.Samples, sample(1000, map[string][]string{"db": {"h1", "h2"}}, [][]string{{"db"}}, "h1", "h2", "h3", "h4"))
	wantViolations(t, Check(testModel(), h), "max_parallel")
}

func TestCheckFindsBytesThatWereNeverStaged(t *testing.T) {
	h := healthy()
	h.Probes = append(h.Probes, down(1000, "h1", "db"), up(1500, "h1", "db", "2", "tampered"))
	wantViolations(t, Check(testModel(), h), "integrity")
	h = healthy()
	h.Probes = append(h.Probes, down(1000, "h1", "db"), up(1500, "h1", "db", "7", "d7"))
	wantViolations(t, Check(testModel(), h), "integrity")
}

func TestCheckIgnoresOutsideFailuresBelowQuorum(t *testing.T) {
	h := healthy()
	// Two hosts partitioned: below quorum, but dcroll took nobody out.
	for _, host := range []string{"h1", "h2"} {
		h.Faults = append(h.Faults, Fault{Kind: Partition, Host: host, Start: at(900)})
		h.Probes = append(h.Probes, down(1000, host, "db"))
	}
	wantViolations(t, Check(testModel(), h))
}

func noAnswer(ms int, host, svc string) Probe {
	return Probe{At: at(ms), Host: host, Service: svc, NoAnswer: true}
}

func TestCheckSilenceOutsideAFaultIsNotAnOutage(t *testing.T) {
	h := healthy()
	// h2 answers nothing for a while (this machine was busy) while dcroll
	// takes h1: h2's last answer, 200, stands.
	h.Probes = append(h.Probes, noAnswer(900, "h2", "db"), down(1000, "h1", "db"), up(1500, "h1", "db", "2", "d2"), up(1600, "h2", "db", "1", "d1"))
	wantViolations(t, Check(testModel(), h))
}

func TestCheckSilenceOfAPartitionedHostIsAnOutage(t *testing.T) {
	h := healthy()
	// h2 is cut off long enough for dcroll to know, and silent: it does not
	// count as serving when dcroll takes h1 and h3 at once.
	h.Faults = append(h.Faults, Fault{Kind: Partition, Host: "h2", Start: at(900)})
	h.Probes = append(h.Probes, noAnswer(950, "h2", "db"), down(6000, "h1", "db"))
	wantViolations(t, Check(testModel(), h), "quorum")
}

func TestCheckARestartedHostIsTheFaultsUntilItsOldSessionIsGone(t *testing.T) {
	h := healthy()
	// h2 is killed and restarted at once: it boots its cached release,
	// serves, and /current still lists it under its old session; then it
	// moves to the fleet's version (down again) while dcroll has h1 out.
	h.Faults = append(h.Faults, Fault{Kind: Kill, Host: "h2", Start: at(1000), Healed: at(1500)})
	h.Probes = append(h.Probes,
		down(1010, "h2", "db"), down(1200, "h1", "db"),
		up(1600, "h2", "db", "1", "d1"), down(1700, "h2", "db"), up(2700, "h2", "db", "2", "d2"),
		up(3000, "h1", "db", "2", "d2"))
	wantViolations(t, Check(testModel(), h))
	// Once its old session is gone, h2 is dcroll's again: the same move
	// 6 s after the kill, with h1 out, breaks quorum 3 of 4.
	h = healthy()
	h.Faults = append(h.Faults, Fault{Kind: Kill, Host: "h2", Start: at(1000), Healed: at(1500)})
	h.Probes = append(h.Probes,
		down(1010, "h2", "db"), up(1600, "h2", "db", "1", "d1"),
		down(7000, "h1", "db"), down(7100, "h2", "db"))
	wantViolations(t, Check(testModel(), h), "max_parallel", "quorum", "quorum")
}

// rollback is a history of a rollback of db and web, which depends on it,
// from 2 back to 1, done right: web's rollback step first, then db's, one
// host at a time. mutate may change the samples before they are returned.
func rollback() History {
	h := healthy()
	h.Staged["web"]["2"] = "w2"
	all := []string{"h1", "h2", "h3", "h4"}
	both := [][]string{{"web"}, {"db"}}
	rb := func(ms int, turns map[string][]string, steps [][]string) Sample {
		s := sample(ms, turns, steps, all...)
		for range steps {
			s.Rollback = append(s.Rollback, true)
		}
		return s
	}
	h.Samples = append(h.Samples, rb(1000, nil, both))
	for i, host := range all {
		ms := 1200 + 400*i
		h.Samples = append(h.Samples, rb(ms, map[string][]string{"web": {host}}, both), rb(ms+200, nil, both))
	}
	h.Samples = append(h.Samples, rb(3000, nil, [][]string{{"db"}}))
	for i, host := range all {
		ms := 3200 + 1000*i
		h.Samples = append(h.Samples, rb(ms, map[string][]string{"db": {host}}, [][]string{{"db"}}), rb(ms+600, nil, [][]string{{"db"}}))
		h.Probes = append(h.Probes, down(ms+50, host, "db"), up(ms+500, host, "db", "1", "d1"))
	}
	h.Samples = append(h.Samples, sample(7500, nil, nil, all...))
	return h
}

func TestCheckAcceptsARollbackInReverseOrder(t *testing.T) {
	wantViolations(t, Check(testModel(), rollback()))
}

func TestCheckFindsARollbackInForwardOrder(t *testing.T) {
	h := rollback()
	// The same rollback, but db's first turn is taken while web's rollback
	// step is still at the head.
	for i, s := range h.Samples {
		if s.At.Equal(at(1600)) {
			h.Samples[i].Turns = map[string][]string{"web": {"h2"}, "db": {"h1"}}
		}
	}
	wantViolations(t, Check(testModel(), h), "rollback_order")
}

func TestCheckARollbackTurnSeenWithTheRollbackMayPredateIt(t *testing.T) {
	h := rollback()
	// db's turn is listed with the rollback's first sample and the next:
	// it may have been taken for release 2 just before the rollback.
	h.Samples[1].Turns = map[string][]string{"db": {"h1"}}
	h.Samples[2].Turns = map[string][]string{"web": {"h1"}, "db": {"h1"}}
	wantViolations(t, Check(testModel(), h))
	// Listed once more after a sample without it, it is the rollback's.
	h.Samples[4].Turns = map[string][]string{"web": {"h2"}, "db": {"h1"}}
	wantViolations(t, Check(testModel(), h), "rollback_order")
}

func TestCheckForwardOrderIsNotBlamedForARollbackAtTheHead(t *testing.T) {
	h := rollback()
	// Without the rollback marks, web's turns before db's step ends break
	// the order of a rollout.
	for i := range h.Samples {
		h.Samples[i].Rollback = nil
	}
	wantViolations(t, Check(testModel(), h), "order", "order", "order", "order")
}
