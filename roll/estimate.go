package roll

import (
	"errors"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
)

// ServiceEstimate is what a dry run of an order says of one service: how
// many hosts take a turn, in how many rounds, and how long that may take.
type ServiceEstimate struct {
	Service string `json:"service"`
	Step    int    `json:"step"` // from 1
	Members int    `json:"members"`
	// Turns counts the members that do not run the staged release yet:
	// each takes a turn.
	Turns int `json:"turns"`
	// Parallel is how many turns run at once: max_parallel, or fewer when
	// the quorum leaves less room. 0: the quorum can never be met.
	Parallel int `json:"parallel"`
	Rounds   int `json:"rounds"`
	// Round is one round's duration, measured from the history's finished
	// steps of the service (their median), or, when none is kept, the
	// health policy's min_healthy, the least a switch takes.
	Round    Duration `json:"round"`
	Measured bool     `json:"measured"` // Round comes from the history
	Estimate Duration `json:"estimate"`
}

// EstimateSteps estimates each service of steps, as a dry run of an order
// shows it. It writes nothing. It reads the policy, the member count, the
// fleet view (hosts on the staged version) and the manifest of each
// service, and the history once.
func (s *Store) EstimateSteps(steps [][]string) ([]ServiceEstimate, error) {
	history, err := s.History("", 0)
	if err != nil {
		return nil, err
	}
	var out []ServiceEstimate
	for i, step := range steps {
		for _, svc := range step {
			e, err := s.estimate(svc, history)
			if err != nil {
				return nil, err
			}
			e.Step = i + 1
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *Store) estimate(svc string, history []HistoryEvent) (ServiceEstimate, error) {
	e := ServiceEstimate{Service: svc}
	var pol Service
	if _, err := s.get(s.Tree.Service(svc), &pol); err != nil {
		return e, err
	}
	ok, stat, err := s.conn.Exists(s.Tree.Members(svc))
	if err != nil {
		return e, err
	}
	if ok {
		e.Members = int(stat.NumChildren)
	}
	e.Turns = e.Members
	if m, err := s.Manifest(svc); err == nil {
		var v FleetView
		_, verr := s.get(s.Tree.Fleet(svc), &v)
		switch {
		case verr == nil:
			e.Turns = max(e.Members-v.Versions[m.Version], 0)
		case !errors.Is(verr, zk.ErrNoNode) && !errors.Is(verr, ErrBadNode):
			return e, verr
		}
	}
	// The quorum leaves room for members - need hosts at once.
	e.Parallel = min(max(pol.MaxParallel, 1), max(e.Members-pol.Quorum.Need(e.Members), 0))
	if e.Turns > 0 && e.Parallel > 0 {
		e.Rounds = (e.Turns + e.Parallel - 1) / e.Parallel
	}
	e.Round, e.Measured = measuredRound(svc, history)
	if !e.Measured {
		e.Round = pol.Health.MinHealthy
	}
	e.Estimate = Duration(time.Duration(e.Round) * time.Duration(e.Rounds))
	return e, nil
}

// measuredRound is the median duration of one round of turns of svc in the
// finished steps the history keeps: a step's time over its rounds.
func measuredRound(svc string, history []HistoryEvent) (Duration, bool) {
	var rounds []time.Duration
	for _, e := range history {
		if e.Action != ActStepFinished || e.Took <= 0 || e.Turns <= 0 || !e.Concerns(svc) {
			continue
		}
		n := (e.Turns + max(e.MaxParallel, 1) - 1) / max(e.MaxParallel, 1)
		rounds = append(rounds, time.Duration(e.Took)/time.Duration(n))
		if len(rounds) == 5 {
			break // the newest five
		}
	}
	if len(rounds) == 0 {
		return 0, false
	}
	slices.Sort(rounds)
	return Duration(rounds[len(rounds)/2].Round(time.Second)), true
}

// CheckOrder checks steps as Order would (nil: every staged service not
// yet queued, in steps derived from the dependencies) and returns the
// steps it would queue, writing nothing: a dry run.
func (s *Store) CheckOrder(steps [][]string) ([][]string, error) {
	queued, _, err := s.checkOrder(steps)
	return queued, err
}

// progress is how far the head step is, from the services' counts in fs
// and the step's start in the history's head (one read, not watched: the
// head changes with every event, and the counts that move the estimate
// are watched already). Nil when no step rolls.
func (r *reader) progress(fs *FleetSummary, steps []StepEntry, now time.Time) (*StepProgress, error) {
	if len(steps) == 0 {
		return nil, nil
	}
	p := &StepProgress{}
	for _, ss := range fs.Services {
		if slices.Contains(steps[0].Services, ss.Name) && ss.Staged != "" {
			p.Done += ss.Versions[ss.Staged]
			p.Online += ss.Online
		}
	}
	var head HistoryHead
	switch err := r.decode(r.s.Tree.History(), &head, false); {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		return p, nil
	case err != nil:
		return nil, err
	}
	if head.Step != steps[0].Name || head.StepStarted.IsZero() {
		return p, nil
	}
	p.Started = head.StepStarted
	if p.Done > 0 && p.Online > p.Done {
		elapsed := now.Sub(p.Started)
		p.Left = Duration((elapsed * time.Duration(p.Online-p.Done) / time.Duration(p.Done)).Round(time.Second))
	}
	return p, nil
}
