package roll

import (
	"reflect"
	"testing"
	"time"
)

func TestSummaryEvents(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	svc := func(mod func(*ServiceSummary)) ServiceSummary {
		s := ServiceSummary{Name: "web", Versions: map[string]int{"v1": 3}, Online: 3, Staged: "v2"}
		mod(&s)
		return s
	}
	sum := func(steps []StepStatus, s ServiceSummary) *FleetSummary {
		return &FleetSummary{Time: at, Deploy: DeployStatus{Steps: steps}, Services: []ServiceSummary{s}}
	}
	step := []StepStatus{{Name: "step-0000000001", Services: []string{"web"}}}
	three := 3
	failure := &Failure{Host: "h2", Version: "v2", Reason: "not healthy", At: at}
	cases := []struct {
		name      string
		prev, cur *FleetSummary
		want      []Event
	}{
		{"first reading", nil, sum(step, svc(func(*ServiceSummary) {})), nil},
		{"nothing changed", sum(step, svc(func(*ServiceSummary) {})), sum(step, svc(func(*ServiceSummary) {})), nil},
		{"ordered",
			sum(nil, svc(func(*ServiceSummary) {})),
			sum(step, svc(func(*ServiceSummary) {})),
			[]Event{
				{Time: at, Event: EventStepQueued, Step: "step-0000000001", Services: []string{"web"}},
				{Time: at, Event: EventStepRolling, Step: "step-0000000001", Services: []string{"web"}},
			}},
		{"a turn taken, another ended healthy",
			sum(step, svc(func(s *ServiceSummary) { s.Upgrading = []string{"h1"} })),
			sum(step, svc(func(s *ServiceSummary) {
				s.Upgrading = []string{"h2"}
				s.Versions = map[string]int{"v1": 2, "v2": 1}
			})),
			[]Event{
				{Time: at, Event: EventTurnTaken, Service: "web", Host: "h2", Version: "v2"},
				{Time: at, Event: EventHostHealthy, Service: "web", Host: "h1", Version: "v2"},
				{Time: at, Event: EventVersions, Service: "web", Versions: map[string]int{"v1": 2, "v2": 1}, Online: &three},
			}},
		{"a switch rolled back halts",
			sum(step, svc(func(s *ServiceSummary) { s.Upgrading = []string{"h2"} })),
			sum(step, svc(func(s *ServiceSummary) { s.Halted = failure })),
			[]Event{
				{Time: at, Event: EventRollback, Service: "web", Host: "h2", Version: "v2", Reason: "not healthy"},
				{Time: at, Event: EventHalt, Service: "web", Host: "h2", Version: "v2", Reason: "not healthy"},
			}},
		{"rolled out, the step done",
			sum(step, svc(func(s *ServiceSummary) {
				s.Upgrading = []string{"h3"}
				s.Versions = map[string]int{"v1": 1, "v2": 2}
			})),
			sum(nil, svc(func(s *ServiceSummary) { s.Versions = map[string]int{"v2": 3} })),
			[]Event{
				{Time: at, Event: EventStepDone, Step: "step-0000000001", Services: []string{"web"}},
				{Time: at, Event: EventHostHealthy, Service: "web", Host: "h3", Version: "v2"},
				{Time: at, Event: EventVersions, Service: "web", Versions: map[string]int{"v2": 3}, Online: &three},
				{Time: at, Event: EventRolledOut, Service: "web", Version: "v2"},
			}},
		{"resumed and unstaged",
			sum(nil, svc(func(s *ServiceSummary) { s.Halted = failure })),
			sum(nil, svc(func(s *ServiceSummary) { s.Staged = "" })),
			[]Event{
				{Time: at, Event: EventUnstaged, Service: "web", Version: "v2"},
				{Time: at, Event: EventResume, Service: "web"},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := SummaryEvents(tc.prev, tc.cur)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
