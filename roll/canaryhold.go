package roll

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
)

// A service whose policy has canary_hold ends its canary pause by itself:
// once the canaries have been healthy for that long, the rest of its hosts
// roll, as after `dcroll promote`. The canaries are healthy while no turn
// of the service is held, it is not halted, and at least as many hosts as
// the canary took turns serve the staged release in /current (a host whose
// health checks fail leaves /current).
//
// One host ends the pauses: the elected advancer (RunAdvancer), which
// RunCanaryHold follows; the others wait. It times the hold on its own
// clock from the moment it sees the canaries healthy, and a new advancer
// starts the hold again: a failover can make the pause longer, never
// shorter. The promote is a write of /roll/<svc> over the version read
// when the hold began: a pause, resume, halt, rollback, abort or promote
// meanwhile changes that version, the write fails, and the hold is judged
// again from the start.

// ErrBadCanaryHold is wrapped by the error of a bad canary_hold.
var ErrBadCanaryHold = errors.New("roll: bad canary_hold")

// canaryHoldMax bounds canary_hold: a longer hold is taken for a mistake
// (a unit left out); promote by hand instead.
const canaryHoldMax = 7 * 24 * time.Hour

func validCanaryHold(d Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("%w %s: negative (0 or absent: the canary waits for `dcroll promote`)", ErrBadCanaryHold, d)
	case time.Duration(d) > canaryHoldMax:
		return fmt.Errorf("%w %s: longer than %s; promote by hand with `dcroll promote` instead", ErrBadCanaryHold, d, canaryHoldMax)
	}
	return nil
}

// AutoPromoteDetail starts the detail of the history event of a promote
// that canary_hold made.
const AutoPromoteDetail = "automatic (canary_hold)"

// heldCanary is a canary pause that RunCanaryHold times.
type heldCanary struct {
	version int32     // /roll/<svc>'s version when the hold began
	since   time.Time // when it began, on this host's clock
}

// RunCanaryHold ends the canary pauses of services with canary_hold while
// this session is the elected advancer. It returns when ctx ends (with
// its error) or a request fails; the caller runs it again.
func (s *Store) RunCanaryHold(ctx context.Context) error {
	held := map[string]heldCanary{}
	for {
		ok, stat, advancer, err := s.conn.ExistsW(s.Tree.advancerPath())
		if err != nil {
			return fmt.Errorf("roll: watch %s: %w", s.Tree.advancerPath(), err)
		}
		if !ok || stat.EphemeralOwner != s.conn.SessionID() {
			clear(held)
			if err := waitAny(ctx, advancer); err != nil {
				return err
			}
			continue
		}
		next, watches, err := s.holdCanaries(held, time.Now())
		if err != nil {
			return err
		}
		if err := waitAnyOrTimeout(ctx, next, append(watches, advancer)...); err != nil {
			return err
		}
	}
}

// holdCanaries looks at every service with canary_hold at now: it starts
// the hold of a canary found healthy, ends one found otherwise, and
// promotes one held long enough. It returns how long until the next hold
// ends (0: none runs) and the watches on what would change its view.
func (s *Store) holdCanaries(held map[string]heldCanary, now time.Time) (time.Duration, []<-chan zk.Event, error) {
	services, err := s.Services()
	if err != nil {
		return 0, nil, err
	}
	var next time.Duration
	var watches []<-chan zk.Event
	for _, svc := range slices.Sorted(maps.Keys(services)) {
		// Every service's control is watched, canary_hold or not: a seed
		// that sets canary_hold is seen at the next order --canary, which
		// writes the control.
		data, stat, ch, err := s.conn.GetW(s.Tree.Roll(svc))
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("roll: get %s: %w", s.Tree.Roll(svc), err)
		}
		watches = append(watches, ch)
		hold := time.Duration(services[svc].CanaryHold)
		if hold <= 0 {
			delete(held, svc)
			continue
		}
		var c Control
		if len(data) > 0 {
			if err := decode(s.Tree.Roll(svc), data, &c); err != nil {
				delete(held, svc)
				continue // a bad control holds the service anyway
			}
		}
		if c.Canary == nil || !c.Paused || c.Reason != CanaryWait || c.Halted != nil {
			delete(held, svc)
			continue
		}
		healthy, more, err := s.canariesHealthy(svc, c.Canary.Taken)
		if err != nil {
			return 0, nil, err
		}
		watches = append(watches, more...)
		h, ok := held[svc]
		if !healthy || ok && h.version != stat.Version {
			delete(held, svc)
			if !healthy {
				continue
			}
			ok = false
		}
		if !ok {
			h = heldCanary{version: stat.Version, since: now}
			held[svc] = h
		}
		if left := hold - now.Sub(h.since); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		promoted, err := s.promoteHeld(svc, c, stat.Version, hold)
		if err != nil {
			return 0, nil, err
		}
		delete(held, svc)
		if !promoted {
			next = time.Millisecond // changed meanwhile: look again
		}
	}
	return next, watches, nil
}

// canariesHealthy reports whether svc's canaries are healthy: no turn is
// held and at least taken hosts serve the staged release in /current. It
// returns watches on the turns and /current.
func (s *Store) canariesHealthy(svc string, taken int) (bool, []<-chan zk.Event, error) {
	turns, tch, err := s.childrenW(s.Tree.turnsDir(svc), true)
	if err != nil {
		return false, nil, err
	}
	_, cch, err := s.childrenW(s.Tree.CurrentDir(svc), true)
	if err != nil {
		return false, nil, err
	}
	watches := []<-chan zk.Event{tch, cch}
	if len(turns) > 0 {
		return false, watches, nil
	}
	m, err := s.Manifest(svc)
	if errors.Is(err, ErrNotStaged) {
		return false, watches, nil
	}
	if err != nil {
		return false, nil, err
	}
	cur, err := s.CurrentOf(svc)
	if err != nil {
		return false, nil, err
	}
	serving := 0
	for _, c := range cur {
		if c.Version == m.Version {
			serving++
		}
	}
	return serving >= max(taken, 1), watches, nil
}

// promoteHeld ends svc's canary pause, over version, and records it. It
// reports false when the control changed meanwhile.
func (s *Store) promoteHeld(svc string, c Control, version int32, hold time.Duration) (bool, error) {
	was := *c.Canary
	c.Paused, c.Reason, c.Canary = false, "", nil
	data, err := encode(c)
	if err != nil {
		return false, err
	}
	_, err = s.conn.Set(s.Tree.Roll(svc), data, version)
	if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("roll: set %s: %w", s.Tree.Roll(svc), err)
	}
	s.logged(ActPromote, s.Record(HistoryEvent{Action: ActPromote, Services: []string{svc},
		Detail: fmt.Sprintf("%s: the canary's %d of %d hosts healthy for %s; the rest of the hosts roll", AutoPromoteDetail, was.Taken, was.Hosts, hold)}))
	if s.log != nil {
		s.log.Info("canary promoted: healthy for canary_hold", "service", svc, "canary_hold", hold.String())
	}
	return true, nil
}
