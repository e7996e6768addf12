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
