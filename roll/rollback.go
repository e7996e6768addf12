package roll

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// A rollback takes services back to the release their fleet ran before the
// staged one: /previous/<svc>, which Stage keeps when it replaces a release
// that had rolled out. It stages that release again (hosts keep it on
// disk, so none is transferred) and queues it in rollback steps at the
// head of the deploy queue, dependents first: the reverse of a rollout.
// Hosts go back through the same turns as any release: quorum,
// max_parallel, health checks, halt on failure. Under [trust] keys, hosts
// run an older release only when signed as a rollback of the version they
// run: `stage --sign-key` signs the staged release's possible rollbacks
// with it (Manifest.Rollbacks), and the rollback stages the previous
// release with that signature (Manifest.Replaces).

// ErrNoPrevious means a service has no earlier release to go back to.
var ErrNoPrevious = errors.New("roll: no earlier release kept")

// ErrBadRollback is wrapped by every refusal of a rollback.
var ErrBadRollback = errors.New("roll: cannot roll back")

// Previous is the parent of the kept earlier releases.
func (t Tree) Previous() string { return t.join("previous") }

// previous is svc's kept earlier release.
func (t Tree) previous(svc string) string { return t.join("previous", svc) }

// PreviousRelease reads the release svc's fleet ran before the staged one.
func (s *Store) PreviousRelease(svc string) (Manifest, error) {
	var m Manifest
	_, err := s.get(s.Tree.previous(svc), &m)
	if errors.Is(err, zk.ErrNoNode) {
		return m, fmt.Errorf("%w for %s", ErrNoPrevious, svc)
	}
	return m, err
}

// keepPreviousOps returns the operations that keep data, a manifest that
// had rolled out, as svc's previous release.
func (s *Store) keepPreviousOps(svc string, data []byte) ([]any, error) {
	ok, _, err := s.conn.Exists(s.Tree.Previous())
	if err != nil {
		return nil, fmt.Errorf("roll: read %s: %w", s.Tree.Previous(), err)
	}
	var ops []any
	if !ok {
		ops = append(ops, &zk.CreateRequest{Path: s.Tree.Previous(), Acl: s.acls.of(s.Tree.Previous())})
	}
	ok, _, err = s.conn.Exists(s.Tree.previous(svc))
	if err != nil {
		return nil, fmt.Errorf("roll: read %s: %w", s.Tree.previous(svc), err)
	}
	if ok {
		return append(ops, &zk.SetDataRequest{Path: s.Tree.previous(svc), Data: data, Version: -1}), nil
	}
	return append(ops, &zk.CreateRequest{Path: s.Tree.previous(svc), Data: data, Acl: s.acls.of(s.Tree.previous(svc))}), nil
}

// RollbackPlan is what a rollback does: which services go back to which
// version, in which steps, and why in that order.
type RollbackPlan struct {
	To    map[string]string // service -> the version it goes back to
	From  map[string]string // service -> the version staged now
	Steps [][]string        // dependents first
	// Dependents explains the order: service -> the services rolled back
	// with it because they depend on it.
	Dependents map[string][]string
	Lifted     map[string]Control // the pauses and halts lifted
}

// Rollback takes svc back to its previous release (to, if given, must be
// that release's version), together with every staged service that depends
// on it and has a previous release too, unless only. In one transaction
// over the deploy queue's version it removes the steps of those services
// from the deploy queue, stages their previous releases again (emptying
// their ready queues), lifts their pauses and halts, and puts the rollback
// steps, dependents first, at the head of the queue, before the steps that
// stay.
func (s *Store) Rollback(svc, to string, only bool) (RollbackPlan, error) {
	for attempt := 1; ; attempt++ {
		plan, ops, err := s.planRollback(svc, to, only)
		if err != nil {
			return plan, err
		}
		_, err = s.conn.Multi(ops...)
		switch {
		case err == nil:
			s.logged(ActStepStarted, s.noteStepStarted())
			return plan, nil
		case (errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists)) && attempt < orderAttempts:
			continue // the queue, a manifest or a ready queue changed meanwhile
		}
		return plan, fmt.Errorf("roll: roll back %s: %w", svc, err)
	}
}

// planRollback reads what a rollback of svc needs and returns its plan and
// the transaction that carries it out.
func (s *Store) planRollback(svc, to string, only bool) (RollbackPlan, []any, error) {
	plan := RollbackPlan{To: map[string]string{}, From: map[string]string{}, Dependents: map[string][]string{}, Lifted: map[string]Control{}}
	ops, err := s.bumpDeploy()
	if err != nil {
		return plan, nil, err
	}
	services, err := s.Services()
	if err != nil {
		return plan, nil, err
	}
	catalog := Catalog(services)
	if _, ok := catalog[svc]; !ok {
		return plan, nil, fmt.Errorf("%w: service %q is not in the catalog (%s)", ErrBadRollback, svc, strings.Join(catalog.Names(), ", "))
	}
	prev, err := s.PreviousRelease(svc)
	if err != nil {
		return plan, nil, fmt.Errorf("%w; stage the release to go back to with `dcroll stage %s VERSION PATH --replace`", err, svc)
	}
	if to != "" && to != prev.Version {
		return plan, nil, fmt.Errorf("%w: %s %s is not kept; the release before the staged one is %s (stage %s with `dcroll stage %s %s PATH --replace`)",
			ErrBadRollback, svc, to, prev.Version, to, svc, to)
	}
	cur, err := s.Manifest(svc)
	if err != nil {
		return plan, nil, fmt.Errorf("%w: %v: nothing to go back from", ErrBadRollback, err)
	}
	if cur.Version == prev.Version {
		return plan, nil, fmt.Errorf("%w: %s %s is staged already: it is being rolled back, or was", ErrBadRollback, svc, prev.Version)
	}
	plan.To[svc], plan.From[svc] = prev.Version, cur.Version
	previous := map[string]Manifest{svc: prev}
	current := map[string]Manifest{svc: cur}
	staged, err := s.StagedServices()
	if err != nil {
		return plan, nil, err
	}
	for _, other := range staged {
		if other == svc || only || !catalog.dependsOn(other, svc) {
			continue
		}
		p, err := s.PreviousRelease(other)
		if errors.Is(err, ErrNoPrevious) {
			continue
		}
		if err != nil {
			return plan, nil, err
		}
		m, err := s.Manifest(other)
		if err != nil || m.Version == p.Version {
			continue // gone meanwhile, or going back already
		}
		previous[other], current[other], plan.To[other], plan.From[other] = p, m, p.Version, m.Version
		plan.Dependents[svc] = append(plan.Dependents[svc], other)
	}
	set := make([]string, 0, len(plan.To))
	for name := range plan.To {
		set = append(set, name)
	}
	slices.Sort(set)
	forward, err := catalog.AutoSteps(set)
	if err != nil {
		return plan, nil, err
	}
	for i := len(forward) - 1; i >= 0; i-- {
		plan.Steps = append(plan.Steps, forward[i])
	}

	// The queue: every step goes, and comes back after the rollback's,
	// without the services rolled back.
	queue, err := s.Steps()
	if err != nil {
		return plan, nil, err
	}
	var keep []Step
	for _, st := range queue {
		ops = append(ops, &zk.DeleteRequest{Path: s.Tree.step(st.Name), Version: -1})
		rest := slices.DeleteFunc(slices.Clone(st.Services), func(name string) bool { _, ok := plan.To[name]; return ok })
		if len(rest) > 0 {
			st.Step.Services = rest
			keep = append(keep, st.Step)
		}
	}
	id := rand.Text()
	now := time.Now().UTC()
	for _, step := range plan.Steps {
		data, err := encode(Step{Services: step, Ordered: now, Order: id, Rollback: true})
		if err != nil {
			return plan, nil, err
		}
		ops = append(ops, &zk.CreateRequest{Path: s.Tree.step("step-"), Data: data, Acl: s.acls.of(s.Tree.step("step-")), Flags: zk.FlagSequence})
	}
	for _, st := range keep {
		data, err := encode(st)
		if err != nil {
			return plan, nil, err
		}
		ops = append(ops, &zk.CreateRequest{Path: s.Tree.step("step-"), Data: data, Acl: s.acls.of(s.Tree.step("step-")), Flags: zk.FlagSequence})
	}

	for _, name := range set {
		data, err := encode(asRollbackOf(previous[name], current[name]))
		if err != nil {
			return plan, nil, err
		}
		stageOps, err := s.replaceOps(name, data)
		if err != nil {
			return plan, nil, err
		}
		ops = append(ops, stageOps...)
		var ctl Control
		stat, err := s.getOptional(s.Tree.Roll(name), &ctl)
		if err != nil {
			return plan, nil, err
		}
		if ctl.Paused || ctl.Halted != nil || ctl.Canary != nil {
			plan.Lifted[name] = ctl
			data, err := encode(Control{})
			if err != nil {
				return plan, nil, err
			}
			ops = append(ops, &zk.SetDataRequest{Path: s.Tree.Roll(name), Data: data, Version: stat.Version})
		}
	}
	return plan, ops, nil
}

// replaceOps returns the operations that stage data as svc's release in
// place of the staged one, over its version, and empty its ready queue.
func (s *Store) replaceOps(svc string, data []byte) ([]any, error) {
	path := s.Tree.Staging(svc)
	_, stat, err := s.conn.Get(path)
	if err != nil {
		return nil, fmt.Errorf("roll: read %s: %w", path, err)
	}
	ops := []any{&zk.SetDataRequest{Path: path, Data: data, Version: stat.Version}}
	for _, dir := range []struct {
		path string
		node func(string, string) string
	}{{s.Tree.readyDir(svc), s.Tree.readyNode}, {s.Tree.queuedDir(svc), s.Tree.queued}} {
		names, _, err := s.conn.Children(dir.path)
		if errors.Is(err, zk.ErrNoNode) {
			ops = append(ops, &zk.CreateRequest{Path: dir.path, Acl: s.acls.of(dir.path)})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("roll: list %s: %w", dir.path, err)
		}
		for _, n := range names {
			ops = append(ops, &zk.DeleteRequest{Path: dir.node(svc, n), Version: -1})
		}
	}
	return ops, nil
}

// dependsOn reports whether name depends on dep, directly or not.
func (c Catalog) dependsOn(name, dep string) bool {
	return slices.ContainsFunc(c.dependencies(name), func(d dependency) bool { return d.name == dep })
}

// depsDone reports whether no service that svc depends on holds it back:
// none is in a step of the deploy queue. A service in a rollback step at
// the head goes back whatever its dependencies do: the rollback put the
// services that depend on it in the steps before.
func depsDone(services Catalog, svc string, steps []StepEntry) bool {
	if len(steps) > 0 && steps[0].Rollback && slices.Contains(steps[0].Services, svc) {
		return true
	}
	deps := map[string]bool{}
	for _, d := range services.dependencies(svc) {
		deps[d.name] = true
	}
	for _, step := range steps {
		if slices.ContainsFunc(step.Services, func(other string) bool { return deps[other] }) {
			return false
		}
	}
	return true
}

// autoRollback rolls svc back after failure halted it, when its policy or
// the deploy step that holds it asks for that. The rollback is recorded in
// the history, and so is one that cannot be made (the service then stays
// halted, as without it).
func (s *Store) autoRollback(svc string, failure *Failure) {
	var pol Service
	if _, err := s.get(s.Tree.Service(svc), &pol); err != nil {
		s.logged(ActRollback, err)
		return
	}
	auto := pol.AutoRollback
	if head, ok, _, err := s.headStep(false); err == nil && ok && slices.Contains(head.Services, svc) {
		auto = auto || head.AutoRollback
	}
	if !auto {
		return
	}
	plan, err := s.Rollback(svc, "", false)
	e := HistoryEvent{Action: ActRollback, Services: []string{svc}, Version: failure.Version,
		Detail: "automatic, after the halt: " + failure.String()}
	if err != nil {
		e.Outcome = "failed: " + err.Error()
	} else {
		e.Services, e.Detail = plan.Services(), e.Detail+"; "+plan.Explain()
	}
	s.logged(ActRollback, s.Record(e))
	if err != nil && s.log != nil {
		s.log.Error("cannot roll back automatically; the service stays halted", "service", svc, "error", err)
	}
}

// Services lists the services a rollback takes back, in its order.
func (p RollbackPlan) Services() []string {
	var out []string
	for _, st := range p.Steps {
		out = append(out, st...)
	}
	return out
}

// Explain says what the rollback does, in one line: each service's versions
// and the order of the steps.
func (p RollbackPlan) Explain() string {
	var parts []string
	for _, st := range p.Steps {
		var names []string
		for _, name := range st {
			names = append(names, fmt.Sprintf("%s %s -> %s", name, p.From[name], p.To[name]))
		}
		parts = append(parts, strings.Join(names, ", "))
	}
	return strings.Join(parts, " then ")
}
