package roll

import (
	"maps"
	"slices"
	"time"
)

// Events of a deploy, as `dcroll status --watch --json` prints them, one
// JSON object a line. They are told apart in two readings of the summary
// (Store.WatchSummary), so they cost what the summary costs: a few
// requests per service and per change, whatever the fleet's size. What
// began and ended between two readings shows only in its result (a turn
// shorter than the interval shows as the versions' counts changing).

// The kinds of events.
const (
	EventStaged      = "staged"       // a release was staged: Service, Version
	EventUnstaged    = "unstaged"     // the staged release went (abort): Service, Version
	EventStepQueued  = "step_queued"  // a deploy step was ordered: Step, Services
	EventStepRolling = "step_rolling" // a step heads the queue: its services roll
	EventStepDone    = "step_done"    // a step left the queue: Step, Services
	EventTurnTaken   = "turn_taken"   // Host took a turn of Service, to Version
	EventHostHealthy = "host_healthy" // Host ended its turn healthy on Version
	EventRollback    = "rollback"     // Host's switch to Version failed and went back: Reason
	EventHalt        = "halt"         // Service halted: Host, Version, Reason
	EventResume      = "resume"       // Service's halt was lifted
	EventPaused      = "paused"       // Service (or, without one, the deploy) was paused
	EventResumed     = "resumed"      // ...and resumed
	EventVersions    = "versions"     // the counts of Service's online hosts per version changed: Versions, Online
	EventRolledOut   = "rolled_out"   // every online host of Service runs the staged Version
)

// Event is one thing that happened in a data center's deploy. Fields are
// only ever added.
type Event struct {
	Time     time.Time      `json:"time"`
	Event    string         `json:"event"`
	Service  string         `json:"service,omitempty"`
	Host     string         `json:"host,omitempty"`
	Version  string         `json:"version,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Step     string         `json:"step,omitempty"`
	Services []string       `json:"services,omitempty"`
	Versions map[string]int `json:"versions,omitempty"`
	Online   *int           `json:"online,omitempty"`
}

// SummaryEvents tells what happened between two readings of the summary,
// prev (nil: none yet, so nothing happened) and cur, in a stable order:
// the deploy queue's changes, then each service's in name order.
func SummaryEvents(prev, cur *FleetSummary) []Event {
	if prev == nil || cur == nil {
		return nil
	}
	at := cur.Time
	var out []Event
	add := func(e Event) {
		e.Time = at
		out = append(out, e)
	}

	// The deploy queue.
	had := map[string]bool{}
	for _, st := range prev.Deploy.Steps {
		had[st.Name] = true
	}
	has := map[string]bool{}
	for _, st := range cur.Deploy.Steps {
		has[st.Name] = true
	}
	for _, st := range prev.Deploy.Steps {
		if !has[st.Name] {
			add(Event{Event: EventStepDone, Step: st.Name, Services: st.Services})
		}
	}
	for _, st := range cur.Deploy.Steps {
		if !had[st.Name] {
			add(Event{Event: EventStepQueued, Step: st.Name, Services: st.Services})
		}
	}
	if len(cur.Deploy.Steps) > 0 {
		head := cur.Deploy.Steps[0]
		if len(prev.Deploy.Steps) == 0 || prev.Deploy.Steps[0].Name != head.Name {
			add(Event{Event: EventStepRolling, Step: head.Name, Services: head.Services})
		}
	}
	if prev.Deploy.Paused != cur.Deploy.Paused {
		add(Event{Event: map[bool]string{true: EventPaused, false: EventResumed}[cur.Deploy.Paused]})
	}

	before := map[string]ServiceSummary{}
	for _, s := range prev.Services {
		before[s.Name] = s
	}
	for _, s := range cur.Services {
		p, ok := before[s.Name]
		if !ok {
			continue // a service seeded meanwhile: nothing happened to it yet
		}
		out = append(out, serviceEvents(p, s, at)...)
	}
	return out
}

// serviceEvents tells what happened to one service between two readings.
func serviceEvents(p, s ServiceSummary, at time.Time) []Event {
	var out []Event
	add := func(e Event) {
		e.Time, e.Service = at, s.Name
		out = append(out, e)
	}
	if p.Staged != s.Staged {
		if p.Staged != "" {
			add(Event{Event: EventUnstaged, Version: p.Staged})
		}
		if s.Staged != "" {
			add(Event{Event: EventStaged, Version: s.Staged})
		}
	}
	if p.Paused != s.Paused {
		add(Event{Event: map[bool]string{true: EventPaused, false: EventResumed}[s.Paused]})
	}
	for _, h := range s.Upgrading {
		if !slices.Contains(p.Upgrading, h) {
			add(Event{Event: EventTurnTaken, Host: h, Version: s.Staged})
		}
	}
	halted := s.Halted != nil && (p.Halted == nil || *p.Halted != *s.Halted)
	for _, h := range p.Upgrading {
		if slices.Contains(s.Upgrading, h) {
			continue
		}
		if halted && s.Halted.Host == h {
			continue // told below, with the reason
		}
		add(Event{Event: EventHostHealthy, Host: h, Version: p.Staged})
	}
	if halted {
		f := s.Halted
		add(Event{Event: EventRollback, Host: f.Host, Version: f.Version, Reason: f.Reason})
		add(Event{Event: EventHalt, Host: f.Host, Version: f.Version, Reason: f.Reason})
	}
	if p.Halted != nil && s.Halted == nil {
		add(Event{Event: EventResume})
	}
	if !maps.Equal(p.Versions, s.Versions) || p.Online != s.Online {
		online := s.Online
		add(Event{Event: EventVersions, Versions: maps.Clone(s.Versions), Online: &online})
	}
	rolledOut := func(x ServiceSummary) bool {
		return x.Staged != "" && len(x.Upgrading) == 0 && x.Online > 0 && x.Versions[x.Staged] == x.Online
	}
	if rolledOut(s) && (!rolledOut(p) || p.Staged != s.Staged) {
		add(Event{Event: EventRolledOut, Version: s.Staged})
	}
	return out
}
