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

	"github.com/dcroll/dcroll/internal/clock"
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
//
// A host behind others watches only its predecessor in the queue. At the
// front, which it stays until it leaves the queue (sequence numbers only
// grow), it reads the turn's state without watches and, if Decide lets it
// go, takes the turn at once. If not, it watches only what holds it (the
// inputs of the first condition Decide found unmet) and its own ready
// node: ZooKeeper cannot remove a watch, and a watch left on a node that
// changes with every turn would wake a host that has moved on.
func (s *Store) AwaitTurn(ctx context.Context, svc, host, readyPath string, t Turn) error {
	if err := s.awaitFront(ctx, svc, host, readyPath); err != nil {
		return err
	}
	var waiting string // the reason last logged
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		resync := s.resyncs.next()
		st, err := s.turnState(svc, host)
		if err != nil {
			return err
		}
		if err := s.protocolTooOld(st.MinProtocol); err != nil {
			// Leave the queue rather than stand in front of the others.
			return err
		}
		if isTicket(readyPath) != (st.MinProtocol >= ticketQueue) {
			// min_protocol crossed the ticket queue: queue again in the
			// form the data center now uses.
			return ErrLeftQueue
		}
		v, err := s.decide(svc, &st)
		if err != nil {
			return err
		}
		if v.Go {
			// The turn starts now, not when the host began to wait: a
			// long wait in the queue is not a long turn.
			t.Started = time.Now().UTC()
			// The release the host is ready with must still be the staged
			// one: a host that fetched a release an operator replaced
			// meanwhile, and joined after the replace emptied the queue,
			// is ready with the old one. The take checks the manifest's
			// version, so a replace between this read and the take fails
			// it too.
			if st.stagingVersion, err = s.stagedVersion(svc, t.To); err != nil {
				return err
			}
			err = s.takeTurn(svc, host, readyPath, t, st)
			if errors.Is(err, errStaleTurn) || errors.Is(err, errControlChanged) {
				continue
			}
			return err
		}
		if v.Wait != waiting && s.log != nil {
			// Once per reason: the front host's wait is what an operator
			// asks about when a deploy stands still.
			s.log.Info("at the front of the ready queue, waiting", "service", svc, "reason", v.Wait)
			waiting = v.Wait
		}
		var (
			watches []<-chan zk.Event
			changed bool
			queued  bool
			mine    <-chan zk.Event
		)
		err = parallel(
			func() (err error) { watches, changed, err = s.watchBlocker(svc, st, v.on); return err },
			func() (err error) {
				if queued, _, mine, err = s.conn.ExistsW(readyPath); err != nil {
					return fmt.Errorf("roll: watch %s: %w", readyPath, err)
				}
				return nil
			})
		if err != nil {
			return err
		}
		if !queued {
			return ErrLeftQueue
		}
		if changed {
			continue // it changed between the read and the watch
		}
		if err := waitAnyOrTimeout(ctx, recheck(v.on, st), append(watches, mine, resync)...); err != nil {
			return err
		}
	}
}

// awaitFront returns once the host's ready node is the first of the queue.
func (s *Store) awaitFront(ctx context.Context, svc, host, readyPath string) error {
	if isTicket(readyPath) {
		return s.awaitTicket(ctx, svc, host, readyPath)
	}
	readyName := path.Base(readyPath)
	dir := s.Tree.readyDir(svc)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		resync := s.resyncs.next()
		names, _, err := s.conn.Children(dir)
		if errors.Is(err, zk.ErrNoNode) {
			return ErrLeftQueue
		}
		if err != nil {
			return fmt.Errorf("roll: list %s: %w", dir, err)
		}
		queue := sortReady(names)
		idx := slices.IndexFunc(queue, func(e ReadyEntry) bool { return e.Name == readyName })
		switch {
		case idx < 0:
			return ErrLeftQueue
		case idx == 0:
			return nil
		}
		ok, _, ch, err := s.conn.ExistsW(s.Tree.readyNode(svc, queue[idx-1].Name))
		if err != nil {
			return fmt.Errorf("roll: watch the predecessor: %w", err)
		}
		if ok {
			if err := waitAny(ctx, ch, resync); err != nil {
				return err
			}
		}
	}
}

// watchBlocker watches what may release a host that Decide held on b: the
// nodes that condition reads. changed reports that what it watches is no
// longer what st read: the caller decides again instead of waiting.
func (s *Store) watchBlocker(svc string, st TurnState, b blocker) (watches []<-chan zk.Event, changed bool, err error) {
	children := func(dir string, had []string) error {
		names, ch, err := s.childrenW(dir, true)
		if err != nil {
			return err
		}
		watches = append(watches, ch)
		changed = changed || !sameSet(names, had)
		return nil
	}
	version := func(p string, had int32) error {
		_, stat, ch, err := s.conn.GetW(p)
		if err != nil {
			return fmt.Errorf("roll: watch %s: %w", p, err)
		}
		watches = append(watches, ch)
		changed = changed || stat.Version != had
		return nil
	}
	switch b {
	case onProtocol:
		err = version(s.Tree.Root, st.rootVersion)
	case onControl, onWindow:
		// A window opens on the clock (see recheck); a pause or an
		// abort meanwhile is seen at once.
		if err = version(s.Tree.Roll(svc), st.controlVersion); err == nil {
			err = version(s.Tree.Deploy(), st.deployVersion)
		}
	case onStep:
		if err = children(s.Tree.Deploy(), st.stepNames); err == nil && !st.queued {
			// A straggler waits for most online hosts to run the release,
			// judged on the fleet view.
			err = s.watchView(svc, st.viewVersion, &watches, &changed)
		}
	case onParallel:
		err = children(s.Tree.turnsDir(svc), st.InTurn)
	case onQuorum:
		// What releases a host held on quorum is a host back online: one
		// whose turn ends (it enters /current again before it releases the
		// turn, and the turns are watched), or one that boots or comes back
		// (the fleet view follows /current a second later, and is watched:
		// a watch on /current's children would cost its whole list, the
		// size of the fleet, at every change). A member forgotten or
		// expired releases it too: recheck.
		if err = children(s.Tree.turnsDir(svc), st.InTurn); err == nil {
			if st.front != nil {
				// An exists watch fires on a change of the data too, and
				// costs no bytes of it. Not compared with what was read: a
				// view written between the counts and this watch is of
				// changes the counts saw (the advancer looks a second after
				// a change).
				var ch <-chan zk.Event
				if _, _, ch, err = s.conn.ExistsW(s.Tree.Fleet(svc)); err != nil {
					err = fmt.Errorf("roll: watch %s: %w", s.Tree.Fleet(svc), err)
				}
				watches = append(watches, ch)
			} else {
				err = children(s.Tree.CurrentDir(svc), st.Online)
			}
		}
	}
	return watches, changed, err
}

// watchView watches svc's fleet view (its creation, if there is none yet),
// and notes whether its version is no longer had (-1: none).
func (s *Store) watchView(svc string, had int32, watches *[]<-chan zk.Event, changed *bool) error {
	p := s.Tree.Fleet(svc)
	_, stat, ch, err := s.conn.GetW(p)
	if errors.Is(err, zk.ErrNoNode) {
		var ok bool
		ok, _, ch, err = s.conn.ExistsW(p)
		if err == nil && ok {
			*changed = true // created meanwhile
		}
		stat = &zk.Stat{Version: -1}
	}
	if err != nil {
		return fmt.Errorf("roll: watch %s: %w", p, err)
	}
	*watches = append(*watches, ch)
	*changed = *changed || stat.Version != had
	return nil
}

// quorumRecheck is how often a host held on quorum decides again with
// nothing watched changing: a member forgotten, or expiring, can release
// it too.
const quorumRecheck = time.Minute

// recheck is how long a host held on b waits for a watch before it decides
// again anyway (0: as long as it takes).
func recheck(b blocker, st TurnState) time.Duration {
	if b == onWindow {
		// Looked at again when the window opens, and at least every
		// minute: the clock may be set meanwhile.
		return st.windowWait + clock.Jitter(st.windowWait/10)
	}
	if b == onQuorum && st.hasOffline() {
		return quorumRecheck + clock.Jitter(quorumRecheck/4)
	}
	return 0
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
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
	ops := []any{
		// The root too: the form of the queue follows its min_protocol,
		// and a turn is taken only in the form the root names.
		&zk.CheckVersionRequest{Path: s.Tree.Root, Version: st.rootVersion},
		s.canaryCount(svc, st),
		&zk.CheckVersionRequest{Path: s.Tree.Deploy(), Version: st.deployVersion},
		&zk.CheckVersionRequest{Path: s.Tree.Staging(svc), Version: st.stagingVersion},
	}
	if seq, ok := parseTicket(path.Base(readyPath)); ok {
		head, err := encode(QueueHead{Admitted: seq})
		if err != nil {
			return err
		}
		ops = append(ops,
			&zk.SetDataRequest{Path: s.Tree.readyDir(svc), Data: head, Version: -1},
			&zk.DeleteRequest{Path: s.Tree.queued(svc, host), Version: -1})
	}
	ops = append(ops,
		&zk.DeleteRequest{Path: readyPath, Version: -1},
		&zk.CreateRequest{Path: turn, Data: data, Acl: s.acls.of(turn), Flags: zk.FlagEphemeral},
	)
	_, err = s.conn.Multi(ops...)
	switch {
	case err == nil:
		if isTicket(readyPath) {
			s.setLastTicket(svc, host, lastTicket{session: s.conn.SessionID()}) // the take removed it
		}
		return nil
	case errors.Is(err, zk.ErrBadVersion):
		return errControlChanged
	case errors.Is(err, zk.ErrNoNode):
		return ErrLeftQueue
	case errors.Is(err, zk.ErrNodeExists):
		// A turn this session holds while it waits for one is stale: its
		// take committed, but a connection loss swallowed the answer.
		// Release it, and take the turn afresh, with this decision's
		// checks. (An earlier session's turn is gone: Register cleared
		// it. Another session's is left alone.)
		_, stat, gerr := s.conn.Get(turn)
		switch {
		case errors.Is(gerr, zk.ErrNoNode):
		case gerr != nil:
			return fmt.Errorf("roll: get %s: %w", turn, gerr)
		case stat.EphemeralOwner != s.conn.SessionID():
			return fmt.Errorf("%w: %s (session %#x); it goes when that session ends", ErrHeldElsewhere, turn, stat.EphemeralOwner)
		default:
			if derr := s.conn.Delete(turn, stat.Version); derr != nil && !errors.Is(derr, zk.ErrNoNode) {
				return fmt.Errorf("roll: replace stale %s: %w", turn, derr)
			}
		}
		return errStaleTurn
	}
	return fmt.Errorf("roll: take the turn of %s: %w", svc, err)
}

// ErrReplaced means the release a host is ready with is no longer the
// staged one: it leaves the queue, and joins again with the staged one.
var ErrReplaced = fmt.Errorf("%w: the release it is ready with was replaced or unstaged", ErrLeftQueue)

// stagedVersion returns the version of svc's staging node when it holds
// version: one read of the manifest, at the take of a turn.
func (s *Store) stagedVersion(svc, version string) (int32, error) {
	var m Manifest
	stat, err := s.get(s.Tree.Staging(svc), &m)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return 0, ErrReplaced
	case err != nil:
		return 0, err
	case m.Version != version:
		return 0, fmt.Errorf("%w (%s %s is staged, not %s)", ErrReplaced, svc, m.Version, version)
	}
	return stat.Version, nil
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
		s.logged(ActHalt, s.recordHalt(svc, failure))
		s.autoRollback(svc, failure)
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
		if err != nil || !ok || head.bad {
			return removed, err // a bad step waits for the operator
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
			s.logged(ActStepFinished, s.noteStepFinished(head))
			s.logged(ActStepStarted, s.noteStepStarted())
		}
	}
}

func (s *Store) serviceDone(svc string) (bool, error) {
	// The cheap checks first, by counts (a list of the ready queue would
	// be the size of the fleet): most calls happen mid-rollout.
	for _, dir := range []string{s.Tree.readyDir(svc), s.Tree.turnsDir(svc)} {
		ok, stat, err := s.conn.Exists(dir)
		if err != nil {
			return false, fmt.Errorf("roll: read %s: %w", dir, err)
		}
		if ok && stat.NumChildren > 0 {
			return false, nil
		}
	}
	m, err := s.Manifest(svc)
	if errors.Is(err, ErrNotStaged) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return s.rolledOut(svc, m.Version)
}

// TurnStateOf reads what the front of svc's ready queue would see, for
// status, and the verdict for that host.
func (s *Store) TurnStateOf(svc, host string) (TurnState, Verdict, error) {
	st, err := s.turnState(svc, host)
	if err != nil {
		return st, Verdict{}, err
	}
	v, err := s.decide(svc, &st)
	return st, v, err
}

// turnState reads everything Decide needs for host at the front of svc's
// ready queue, all at once (see parallel). It costs a constant number of
// requests, and of bytes, whatever the fleet's size: the service's policy
// and its dependencies', the deploy queue, the control nodes, and of the
// fleet only child counts (see frontCounts) and the list of the turns.
func (s *Store) turnState(svc, host string) (TurnState, error) {
	st := TurnState{Host: host, ReadyFront: true, Protocol: s.protocol, viewVersion: -1}
	// A host joins a ready queue only as a member: Register claims its
	// memberships first (HostMember only words a wait).
	f := &frontCounts{hostMember: true, inTurnOnline: -1, expired: -1}
	var (
		services Catalog
		steps    []StepEntry
		root     Root
		ctl      Control
		dctl     DeployControl
	)
	versioned := func(p string, v node, version *int32) func() error {
		return func() error {
			stat, err := s.getOptional(p, v)
			if err == nil {
				*version = stat.Version
			}
			return err
		}
	}
	reads := []func() error{
		func() (err error) { services, err = s.policies(svc); return err },
		func() (err error) { steps, _, err = s.stepsW(false); return err },
		versioned(s.Tree.Root, &root, &st.rootVersion),
		versioned(s.Tree.Roll(svc), &ctl, &st.controlVersion),
		versioned(s.Tree.Deploy(), &dctl, &st.deployVersion),
	}
	if s.countFront {
		reads = append(reads,
			s.countChildren(s.Tree.Members(svc), &f.members),
			s.countChildren(s.Tree.CurrentDir(svc), &f.current),
			s.exists(s.Tree.Current(svc, host), &f.hostOnline),
			func() (err error) { st.InTurn, _, err = s.childrenW(s.Tree.turnsDir(svc), false); return err })
	}
	err := parallel(reads...)
	if err != nil {
		return st, err
	}
	st.Policy = services[svc]
	st.MinProtocol = root.MinProtocol
	st.Paused, st.control = ctl.Paused || dctl.Paused, ctl
	if ctl.Halted != nil {
		st.Halted = ctl.Halted.String()
	}

	if len(steps) > 0 {
		st.HeadStep = slices.Contains(steps[0].Services, svc)
	}
	for _, e := range steps {
		st.stepNames = append(st.stepNames, e.Name)
	}
	st.queued = slices.ContainsFunc(steps, func(e StepEntry) bool { return slices.Contains(e.Services, svc) })
	if !st.queued {
		// A straggler: a host that got the release after its service's step
		// was done (it was down, or slow to fetch). It may catch up, under
		// the same quorum and max_parallel, once most online hosts run the
		// staged release; before any order, most do not.
		caughtUp, view, err := s.mostRunStaged(svc)
		if err != nil {
			return st, err
		}
		st.HeadStep, st.viewVersion = caughtUp, view
	}
	st.DepsDone = depsDone(services, svc, steps)
	if len(steps) == 0 || !steps[0].Now || !st.HeadStep {
		var opens time.Time
		now := s.now()
		if st.Window, opens = outsideWindows(st.Policy.Windows, now); st.Window != "" {
			st.windowWait = min(max(opens.Sub(now), time.Second), s.windowPoll())
		}
	}

	if s.countFront && f.current <= f.members {
		st.front = f
		return st, nil
	}
	// Without countFront, or when more hosts serve than are members (a
	// child of /current that is no member's: the protocol writes none; a
	// hand-made node, say), decide on the lists, which leave it out.
	if st.Members, err = s.Members(svc); err != nil {
		return st, err
	}
	if st.Online, _, err = s.childrenW(s.Tree.CurrentDir(svc), false); err != nil {
		return st, err
	}
	// The turns last, after /current, as ever: a host leaves /current
	// only in a turn it holds.
	if st.InTurn, _, err = s.childrenW(s.Tree.turnsDir(svc), false); err != nil {
		return st, err
	}
	return st, nil
}

// decide is Decide on st, reading which members have expired (into st)
// only when that could change the verdict: the host is held on a
// percentage quorum while a member is offline. Hosts in turn are offline
// all through a rollout, so reading it each time would cost a request a
// turn.
func (s *Store) decide(svc string, st *TurnState) (Verdict, error) {
	if st.front != nil {
		return s.decideFront(svc, st)
	}
	v := Decide(*st)
	if v.on != onQuorum || st.Policy.Quorum.Percent == 0 {
		return v, nil
	}
	var err error
	if st.Expired, err = s.expired(st.Policy, svc, st.Members, st.Online); err != nil || len(st.Expired) == 0 {
		return v, err
	}
	return Decide(*st), nil
}

// policies reads the policy of svc and of every service it depends on,
// directly or not: one read each, where the whole catalog would cost one a
// service.
func (s *Store) policies(svc string) (Catalog, error) {
	c := Catalog{}
	queue := []string{svc}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if _, ok := c[name]; ok {
			continue
		}
		var pol Service
		_, err := s.get(s.Tree.Service(name), &pol)
		if errors.Is(err, zk.ErrNoNode) {
			if err := s.CheckSeeded(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("roll: service %q is not in the catalog", name)
		}
		if err != nil {
			return nil, err
		}
		c[name] = pol
		queue = append(queue, pol.DependsOn...)
	}
	return c, nil
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

// childrenW lists p's children; a missing p has none (and, with watch, is
// watched for creation).
func (s *Store) childrenW(p string, watch bool) ([]string, <-chan zk.Event, error) {
	names, _, ch, err := s.list(p, watch)
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

// list lists p's children, with a watch on them if watch is set: the one
// request under every list of roll.
func (s *Store) list(p string, watch bool) ([]string, *zk.Stat, <-chan zk.Event, error) {
	if watch {
		return s.conn.ChildrenW(p)
	}
	names, stat, err := s.conn.Children(p)
	return names, stat, nil, err
}

// waitAny waits until one of chans fires or ctx ends.
func waitAny(ctx context.Context, chans ...<-chan zk.Event) error {
	return waitAnyOrTimeout(ctx, 0, chans...)
}

// waitAnyOrTimeout waits until one of chans fires, or d passes (0: never),
// or ctx ends; only the end of ctx is an error.
func waitAnyOrTimeout(ctx context.Context, d time.Duration, chans ...<-chan zk.Event) error {
	cases := make([]reflect.SelectCase, 0, len(chans)+2)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.C)})
	}
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
		resync := s.resyncs.next()
		_, err := s.conn.Create(s.Tree.advancerPath(), []byte(host), zk.FlagEphemeral, s.acls.of(s.Tree.advancerPath()))
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
				if err := waitAny(ctx, ch, resync); err != nil {
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
		resync := s.resyncs.next()
		if _, err := s.AdvanceSteps(); err != nil {
			return err
		}
		head, ok, ch, err := s.headStep(true)
		if err != nil {
			return err
		}
		watches := []<-chan zk.Event{ch, resync}
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
		// A rollout changes these nodes several times a turn; the host that
		// finishes a turn advances the queue itself, so the advancer, the
		// backstop, looks once a settle, not once a change.
		if !clock.Sleep(ctx, fleetSettle) {
			return ctx.Err()
		}
	}
}

// mostRunStaged reports whether most online hosts of svc run its staged
// release.
//
// It also returns the version of the fleet view it read (-1: none), which
// a straggler held on it watches (see watchBlocker).
func (s *Store) mostRunStaged(svc string) (bool, int32, error) {
	m, err := s.Manifest(svc)
	if errors.Is(err, ErrNotStaged) {
		return false, -1, nil
	}
	if err != nil {
		return false, -1, err
	}
	// The fleet view, one read, not every host's node. It lags /current
	// by about a second, and that is safe: this decides only whether a
	// straggler may catch up without a step, never how many hosts may be
	// down. Quorum, max_parallel, the dependencies and the front of the
	// queue are judged on the exact counts (turnState), and the take checks
	// the control nodes; the majority changes only through turns those
	// rules allowed. A stale count lets a straggler go a moment early or
	// late. (Advancing the deploy queue needs exactness: rolledOut reads
	// /current itself.)
	v, version, err := s.fleetView(svc)
	if err != nil {
		return false, -1, err
	}
	n := v.Versions[m.Version]
	return n > 0 && 2*n > v.Online, version, nil
}
