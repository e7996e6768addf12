package e2e

import (
	"reflect"
	"testing"
)

func TestScheduleIsReproducibleFromItsSeed(t *testing.T) {
	a := NewSchedule(42, 7, 6, Services)
	b := NewSchedule(42, 7, 6, Services)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed and index, different schedules:\n%s\n%s", a, b)
	}
	if c := NewSchedule(43, 7, 6, Services); reflect.DeepEqual(a, c) {
		t.Errorf("another seed gave the same schedule %s", a)
	}
}

func TestSchedulesCoverEveryFault(t *testing.T) {
	seen := map[string]int{}
	for i := range len(Kinds) * 4 {
		s := NewSchedule(1, i, 6, Services)
		if s.Bad != "" {
			seen[BadRelease]++
		}
		if len(s.Faults) == 0 {
			t.Fatalf("%s: no fault", s)
		}
		for _, f := range s.Faults {
			seen[f.Kind]++
			if f.Host < 0 || f.Host >= 6 {
				t.Errorf("%s: host %d out of range", s, f.Host)
			}
			if (f.Kind == Partition || f.Kind == Pause) && f.Hold <= SessionTimeout {
				t.Errorf("%s: %s held %s, not past the session timeout %s", s, f.Kind, f.Hold, SessionTimeout)
			}
		}
	}
	for _, k := range append(Kinds, BadRelease) {
		if seen[k] == 0 {
			t.Errorf("no %s in %d schedules: %v", k, len(Kinds)*4, seen)
		}
	}
}

func TestSchedulesHaveTheOperatorsActions(t *testing.T) {
	seen := map[string]int{}
	for i := range 16 {
		s := NewSchedule(1, i, 6, Services)
		seen[s.Operator.Action]++
		if s.Operator.Action == OpAutoRollback && s.Bad == "" {
			t.Errorf("%s: --auto-rollback without a bad release", s)
		}
		if s.Operator.Action == OpRollback && (s.Operator.Service == "" || s.Bad != "") {
			t.Errorf("%s: a rollback of no service, or of a bad release", s)
		}
	}
	for _, op := range Ops {
		if seen[op] == 0 {
			t.Errorf("no %s in 16 schedules: %v", op, seen)
		}
	}
}

// The operator's actions came after the faults: a seed and index give the
// faults they gave before, so that the regression schedules replay as
// recorded (run without the operator, see Regression).
func TestTheOperatorDoesNotChangeTheFaults(t *testing.T) {
	s := NewSchedule(1796222965759410514, 5, 6, Services)
	if s.Operator.Action != OpRollback {
		t.Errorf("schedule 5: operator %+v, want a rollback", s.Operator)
	}
	// As the run that found the bug recorded it.
	const want = "schedule 5 (seed 1796222965759410514): after 0s slow h6 for 7.435s; after 0s slow h5 for 7.888s"
	if got := Regression(1796222965759410514, 5, 6, Services).String(); got != want {
		t.Errorf("the regression schedule is %q, want %q", got, want)
	}
}
