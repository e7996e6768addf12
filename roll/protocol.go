package roll

import (
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
)

// The upgrade turn, as one host runs it for one service:
//
//  1. The host has the staged release verified on disk: JoinReady puts it
//     in /staging/<svc>/ready, in arrival order.
//  2. AwaitTurn: a host that is not at the front of the ready queue watches
//     only its predecessor's node (the ZooKeeper lock recipe), so a change
//     wakes one host, not all. The front host reads what Decide needs
//     (deploy queue, control, members, current, turns), with watches, and
//     waits on those until Decide says go.
//  3. Taking the turn is one transaction: delete the host's ready node and
//     create its ephemeral /roll/<svc>/turns/<host>. Only the front host
//     ever takes a turn, and the next host becomes front only once that
//     transaction has committed, so every decision sees every turn before
//     it: the check and the take are atomic across hosts.
//  4. The host switches (outside this package), then FinishTurn releases
//     the turn, records a failure (halting the service) if there was one,
//     and advances the deploy queue if the head step is done.
//
// A host that dies mid-switch loses its session, and with it its turn.

// ErrLeftQueue means the host's ready node is gone: the staging was
// replaced or aborted, or the session expired. Join again if still needed.
var ErrLeftQueue = errors.New("roll: no longer in the ready queue")

// AwaitTurn blocks until host, queued at readyPath, takes its turn for svc,
// which t describes, or ctx ends, or the host leaves the queue.
func (s *Store) AwaitTurn(ctx context.Context, svc, host, readyPath string, t Turn) error {
	readyName := path.Base(readyPath)
	dir := s.Tree.readyDir(svc)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, _, err := s.conn.Children(dir)
		if errors.Is(err, zk.ErrNoNode) {
			return ErrLeftQueue
		}
		if err != nil {
			return fmt.Errorf("roll: list %s: %w", dir, err)
		}
		queue := sortReady(names)
		idx := slices.IndexFunc(queue, func(e ReadyEntry) bool { return e.Name == readyName })
		if idx < 0 {
			return ErrLeftQueue
		}
		if idx > 0 {
			ok, _, ch, err := s.conn.ExistsW(s.Tree.readyNode(svc, queue[idx-1].Name))
			if err != nil {
				return fmt.Errorf("roll: watch the predecessor: %w", err)
			}
			if ok {
				if err := waitAny(ctx, ch); err != nil {
					return err
				}
			}
			continue
		}

		st, watches, err := s.turnState(svc, host, true)
		if err != nil {
			return err
		}
		if err := s.protocolTooOld(st.MinProtocol); err != nil {
			// Leave the queue rather than stand in front of the others.
			return err
		}
		if !Decide(st).Go {
			ok, _, ch, err := s.conn.ExistsW(readyPath)
			if err != nil {
				return fmt.Errorf("roll: watch %s: %w", readyPath, err)
			}
			if !ok {
				return ErrLeftQueue
			}
			if err := waitAny(ctx, append(watches, ch)...); err != nil {
				return err
			}
			continue
		}
		err = s.takeTurn(svc, host, readyPath, t, st)
		if errors.Is(err, errStaleTurn) || errors.Is(err, errControlChanged) {
			continue
		}
		return err
	}
}

var (
	errStaleTurn      = errors.New("roll: stale turn replaced")
	errControlChanged = errors.New("roll: paused, halted or resumed meanwhile")
)

// takeTurn takes the turn that Decide granted on st. The transaction also
// checks that the service's and the deploy's control nodes are as st read
// them: the reads behind a decision are not one snapshot, and a halt
// recorded between them (the failing host writes it just before it
// releases its turn) must not be missed.
func (s *Store) takeTurn(svc, host, readyPath string, t Turn, st TurnState) error {
	data, err := encode(t)
	if err != nil {
		return err
	}
	turn := s.Tree.Turn(svc, host)
	_, err = s.conn.Multi(
		&zk.CheckVersionRequest{Path: s.Tree.Roll(svc), Version: st.controlVersion},
		&zk.CheckVersionRequest{Path: s.Tree.Deploy(), Version: st.deployVersion},
		&zk.DeleteRequest{Path: readyPath, Version: -1},
		&zk.CreateRequest{Path: turn, Data: data, Acl: s.acl, Flags: zk.FlagEphemeral},
	)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrBadVersion):
		return errControlChanged
	case errors.Is(err, zk.ErrNoNode):
		return ErrLeftQueue
	case errors.Is(err, zk.ErrNodeExists):
		// A turn this host holds while it waits for one is stale: one of
		// an earlier session (an agent restarted before its old session
		// expired), or one of this session whose take committed but whose
		// answer a connection loss swallowed. Release it, and take the
		// turn afresh, with this decision's checks.
		_, stat, gerr := s.conn.Get(turn)
		if gerr == nil {
			if derr := s.conn.Delete(turn, stat.Version); derr != nil && !errors.Is(derr, zk.ErrNoNode) {
				return fmt.Errorf("roll: replace stale %s: %w", turn, derr)
			}
		}
		return errStaleTurn
	}
	return fmt.Errorf("roll: take the turn of %s: %w", svc, err)
}

// FinishTurn ends host's turn for svc. A non-nil failure halts the
// service's deploy with it, before the turn is released, so that no other
// host takes a turn in between, unless the failed release is no longer the
// staged one: an operator who replaced a bad release (and resumed) must not
// be halted again by a turn on it that was still under way. A success
// advances the deploy queue if the head step is now done.
func (s *Store) FinishTurn(svc, host string, failure *Failure) error {
	if failure != nil {
		m, err := s.Manifest(svc)
		switch {
		case errors.Is(err, ErrNotStaged):
			failure = nil // unstaged meanwhile: nothing to halt
		case err != nil:
			return err
		case m.Version != failure.Version:
			failure = nil
		}
	}
	if failure != nil {
		if err := s.UpdateControl(svc, func(c *Control) { c.Halted = failure }); err != nil {
			return err
		}
	}
	if err := s.deleteIfPresent(s.Tree.Turn(svc, host)); err != nil {
		return err
	}
	if failure != nil {
		return nil
	}
	_, err := s.AdvanceSteps()
	return err
}

// AdvanceSteps removes the head step of the deploy queue while it is done,
// and returns how many steps it removed. Any host may call it at any time:
// the removal carries the step's version, so it happens exactly once.
//
// A step is done when, for each of its services, nothing is staged any more
// or nobody is queued or in turn and every online host runs the staged
// version (and at least one host is online).
func (s *Store) AdvanceSteps() (int, error) {
	removed := 0
	for {
		head, ok, _, err := s.headStep(false)
		if err != nil || !ok {
			return removed, err
		}
		for _, svc := range head.Services {
			done, err := s.serviceDone(svc)
			if err != nil || !done {
				return removed, err
			}
		}
		err = s.conn.Delete(s.Tree.step(head.Name), head.version)
		if err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
			return removed, fmt.Errorf("roll: remove %s: %w", head.Name, err)
		}
		if err == nil {
			removed++
		}
	}
}

func (s *Store) serviceDone(svc string) (bool, error) {
	m, err := s.Manifest(svc)
	if errors.Is(err, ErrNotStaged) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	// The cheap checks first: most calls happen mid-rollout.
	queue, err := s.ReadyQueue(svc)
	if err != nil || len(queue) > 0 {
		return false, err
	}
	turns, _, err := s.conn.Children(s.Tree.turnsDir(svc))
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return false, fmt.Errorf("roll: list %s: %w", s.Tree.turnsDir(svc), err)
	}
	if len(turns) > 0 {
		return false, nil
	}
	return s.rolledOut(svc, m.Version)
}

// TurnStateOf reads what the front of svc's ready queue would see, for
// status: the verdict for the host that is next.
func (s *Store) TurnStateOf(svc, host string) (TurnState, error) {
	st, _, err := s.turnState(svc, host, false)
	if err != nil {
		return st, err
	}
	st.ReadyFront = true
	return st, nil
}

// turnState reads everything Decide needs for host at the front of svc's
// ready queue; with watch, it also returns watches that fire when any of it
// changes. It costs a constant number of requests: lists, not per-host
// reads.
func (s *Store) turnState(svc, host string, watch bool) (TurnState, []<-chan zk.Event, error) {
	st := TurnState{Host: host, ReadyFront: true, Protocol: s.protocol}
	var watches []<-chan zk.Event
	add := func(ch <-chan zk.Event) {
		if ch != nil {
			watches = append(watches, ch)
		}
	}
	services, err := s.Services()
	if err != nil {
		return st, nil, err
	}
	policy, ok := services[svc]
	if !ok {
		return st, nil, fmt.Errorf("roll: service %q is not in the catalog", svc)
	}
	st.Policy = policy

	steps, ch, err := s.stepsW(watch)
	if err != nil {
		return st, nil, err
	}
	add(ch)
	if len(steps) > 0 {
		st.HeadStep = slices.Contains(steps[0].Services, svc)
	}
	queued := slices.ContainsFunc(steps, func(e StepEntry) bool { return slices.Contains(e.Services, svc) })
	if !queued {
		// A straggler: a host that got the release after its service's step
		// was done (it was down, or slow to fetch). It may catch up, under
		// the same quorum and max_parallel, once most online hosts run the
		// staged release; before any order, most do not.
		caughtUp, err := s.mostRunStaged(svc)
		if err != nil {
			return st, nil, err
		}
		st.HeadStep = caughtUp
	}
	deps := map[string]bool{}
	for _, d := range Catalog(services).dependencies(svc) {
		deps[d.name] = true
	}
	st.DepsDone = true
	for _, step := range steps {
		for _, other := range step.Services {
			if deps[other] {
				st.DepsDone = false
			}
		}
	}

	var root Root
	data, _, ch, err := s.getW(s.Tree.Root, watch)
	if err != nil {
		return st, nil, err
	}
	add(ch)
	if len(data) > 0 {
		if err := decode(s.Tree.Root, data, &root); err != nil {
			return st, nil, err
		}
	}
	st.MinProtocol = root.MinProtocol

	var ctl Control
	var dctl DeployControl
	for _, n := range []struct {
		path    string
		v       node
		version *int32
	}{{s.Tree.Roll(svc), &ctl, &st.controlVersion}, {s.Tree.Deploy(), &dctl, &st.deployVersion}} {
		data, stat, ch, err := s.getW(n.path, watch)
		if err != nil {
			return st, nil, err
		}
		*n.version = stat.Version
		add(ch)
		if len(data) > 0 {
			if err := decode(n.path, data, n.v); err != nil {
				return st, nil, err
			}
		}
	}
	st.Paused = ctl.Paused || dctl.Paused
	if ctl.Halted != nil {
		st.Halted = ctl.Halted.String()
	}

	if st.Members, err = s.Members(svc); err != nil {
		return st, nil, err
	}
	if st.Online, ch, err = s.childrenW(s.Tree.CurrentDir(svc), watch); err != nil {
		return st, nil, err
	}
	add(ch)
	if st.InTurn, ch, err = s.childrenW(s.Tree.turnsDir(svc), watch); err != nil {
		return st, nil, err
	}
	add(ch)
	if st.Expired, err = s.expired(st.Policy, svc, st.Members, st.Online); err != nil {
		return st, nil, err
	}
	return st, watches, nil
}

// expired lists the members of svc offline for longer than its
// member_ttl, from the fleet view: one read, made only when a member is
// offline.
func (s *Store) expired(pol Service, svc string, members, online []string) ([]string, error) {
	ttl := pol.TTL()
	if ttl <= 0 || !hasOffline(members, online) {
		return nil, nil
	}
	var v FleetView
	_, err := s.get(s.Tree.Fleet(svc), &v)
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		return nil, nil // no expiry without a view; status shows a bad one
	case err != nil:
		return nil, err
	}
	return v.Expired(ttl, time.Now()), nil
}

// hasOffline reports whether a member is not online.
func hasOffline(members, online []string) bool {
	on := make(map[string]bool, len(online))
	for _, h := range online {
		on[h] = true
	}
	return slices.ContainsFunc(members, func(h string) bool { return !on[h] })
}

func (s *Store) getW(p string, watch bool) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	var data []byte
	var stat *zk.Stat
	var ch <-chan zk.Event
	var err error
	if watch {
		data, stat, ch, err = s.conn.GetW(p)
	} else {
		data, stat, err = s.conn.Get(p)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("roll: get %s: %w", p, err)
	}
	return data, stat, ch, nil
}

// childrenW lists p's children; a missing p has none (and, with watch, is
// watched for creation).
func (s *Store) childrenW(p string, watch bool) ([]string, <-chan zk.Event, error) {
	var names []string
	var ch <-chan zk.Event
	var err error
	if watch {
		names, _, ch, err = s.conn.ChildrenW(p)
	} else {
		names, _, err = s.conn.Children(p)
	}
	if errors.Is(err, zk.ErrNoNode) {
		if watch {
			_, _, ch, err = s.conn.ExistsW(p)
			if err != nil {
				return nil, nil, fmt.Errorf("roll: watch %s: %w", p, err)
			}
		}
		return nil, ch, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("roll: list %s: %w", p, err)
	}
	return names, ch, nil
}

// waitAny waits until one of chans fires or ctx ends.
func waitAny(ctx context.Context, chans ...<-chan zk.Event) error {
	cases := make([]reflect.SelectCase, 0, len(chans)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
	for _, ch := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	if i, _, _ := reflect.Select(cases); i == 0 {
		return ctx.Err()
	}
	return nil
}

// advancerPath is the election node of the host that advances the deploy
// queue. Service names start with a letter or digit, so it cannot clash.
func (t Tree) advancerPath() string { return t.join("roll", "_advancer") }

// RunAdvancer takes part in electing the one host that advances the deploy
// queue, and while elected advances it whenever the head step may have
// finished: a change of the head services' ready queues, turns or current
// sets. Turns advance the queue too (FinishTurn), but the last change of a
// step is not always a turn: a queued host can die (its ready node goes at
// its session's expiry), or a host back from an absence can move to the
// new version by itself. It returns when ctx ends or the session fails.
func (s *Store) RunAdvancer(ctx context.Context, host string) error {
	for {
		_, err := s.conn.Create(s.Tree.advancerPath(), []byte(host), zk.FlagEphemeral, s.acl)
		switch {
		case err == nil:
			return s.advance(ctx)
		case errors.Is(err, zk.ErrNodeExists):
			ok, stat, ch, err := s.conn.ExistsW(s.Tree.advancerPath())
			if err != nil {
				return fmt.Errorf("roll: watch %s: %w", s.Tree.advancerPath(), err)
			}
			if ok && stat.EphemeralOwner == s.conn.SessionID() {
				// Elected earlier in this session (a retry after an error).
				return s.advance(ctx)
			}
			if ok {
				if err := waitAny(ctx, ch); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("roll: elect the advancer: %w", err)
		}
	}
}

// fleetSettle is how long the advancer lets /current settle after a change
// before it counts the fleet view again.
const fleetSettle = time.Second

func (s *Store) advance(ctx context.Context) error {
	// The elected host also keeps the fleet views (see summarize).
	sctx, stop := context.WithCancel(ctx)
	summarized := make(chan struct{})
	go func() { defer close(summarized); s.summarize(sctx, fleetSettle) }()
	defer func() { stop(); <-summarized }()
	defer func() {
		// Step down, unless the session already ended and another host holds
		// the node now.
		if _, stat, err := s.conn.Get(s.Tree.advancerPath()); err == nil && stat.EphemeralOwner == s.conn.SessionID() {
			_ = s.conn.Delete(s.Tree.advancerPath(), stat.Version)
		}
	}()
	for {
		if _, err := s.AdvanceSteps(); err != nil {
			return err
		}
		head, ok, ch, err := s.headStep(true)
		if err != nil {
			return err
		}
		watches := []<-chan zk.Event{ch}
		if ok {
			for _, svc := range head.Services {
				for _, dir := range []string{s.Tree.readyDir(svc), s.Tree.turnsDir(svc), s.Tree.CurrentDir(svc)} {
					_, ch, err := s.childrenW(dir, true)
					if err != nil {
						return err
					}
					watches = append(watches, ch)
				}
			}
		}
		if err := waitAny(ctx, watches...); err != nil {
			return err
		}
	}
}

// mostRunStaged reports whether most online hosts of svc run its staged
// release.
func (s *Store) mostRunStaged(svc string) (bool, error) {
	m, err := s.Manifest(svc)
	if errors.Is(err, ErrNotStaged) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The fleet view, not every host's node: a count that lags by a
	// second only delays a straggler's catching up.
	v, err := s.FleetView(svc)
	if err != nil {
		return false, err
	}
	n := v.Versions[m.Version]
	return n > 0 && 2*n > v.Online, nil
}
