package roll

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrBadOrder is wrapped by every error about a deploy order.
var ErrBadOrder = errors.New("roll: bad deploy order")

// AutoSteps derives the deploy queue's steps for the staged services from
// their dependencies: a service goes in the first step after every staged
// service it depends on, directly or through services that are not staged.
// Services that do not depend on each other share a step, in name order.
// No staged services give no steps.
func (c Catalog) AutoSteps(staged []string) ([][]string, error) {
	if cyc := c.cycle(); cyc != nil {
		return nil, fmt.Errorf("%w: dependency cycle: %s", ErrBadCatalog, strings.Join(cyc, " -> "))
	}
	isStaged := map[string]bool{}
	for _, name := range staged {
		if _, ok := c[name]; !ok {
			return nil, fmt.Errorf("%w: service %q is not in the catalog", ErrBadOrder, name)
		}
		if isStaged[name] {
			return nil, fmt.Errorf("%w: service %q is listed twice", ErrBadOrder, name)
		}
		isStaged[name] = true
	}

	// level is the step index: one past the deepest staged dependency. The
	// catalog has no cycle, so the recursion ends.
	level := map[string]int{}
	var levelOf func(string) int
	levelOf = func(name string) int {
		if l, ok := level[name]; ok {
			return l
		}
		l := 0
		for _, d := range c.dependencies(name) {
			if isStaged[d.name] {
				l = max(l, levelOf(d.name)+1)
			}
		}
		level[name] = l
		return l
	}
	var steps [][]string
	for _, name := range staged {
		l := levelOf(name)
		for len(steps) <= l {
			steps = append(steps, nil)
		}
		steps[l] = append(steps[l], name)
	}
	// Every level below a used one is used too (a service at level l has a
	// staged dependency at l-1), so no step is empty.
	for _, step := range steps {
		sort.Strings(step)
	}
	return steps, nil
}

// ValidateSteps checks an operator's deploy order, one step per element,
// before anything is written: every service is in the catalog, has a staged
// release and appears once, no step is empty, and no service comes before or
// with a staged service it depends on. staged holds the services that have a
// release under staging. A dependency staged but left out of steps is not an
// error: an earlier order may already have queued it.
func (c Catalog) ValidateSteps(steps [][]string, staged map[string]bool) error {
	if len(steps) == 0 {
		return fmt.Errorf("%w: no services given; name at least one", ErrBadOrder)
	}
	stepOf := map[string]int{}
	for i, step := range steps {
		if len(step) == 0 {
			return fmt.Errorf("%w: step %d is empty", ErrBadOrder, i+1)
		}
		for _, name := range step {
			if _, ok := c[name]; !ok {
				return fmt.Errorf("%w: service %q is not in the catalog", ErrBadOrder, name)
			}
			if !staged[name] {
				return fmt.Errorf("%w: service %q has nothing staged; stage a release of it first", ErrBadOrder, name)
			}
			if j, ok := stepOf[name]; ok {
				if j == i {
					return fmt.Errorf("%w: service %q is listed twice in step %d", ErrBadOrder, name, i+1)
				}
				return fmt.Errorf("%w: service %q is listed twice, in steps %d and %d", ErrBadOrder, name, j+1, i+1)
			}
			stepOf[name] = i
		}
	}
	for i, step := range steps {
		for _, name := range step {
			for _, d := range c.dependencies(name) {
				j, ok := stepOf[d.name]
				if !ok || j < i {
					continue
				}
				via := ""
				if len(d.via) > 0 {
					via = fmt.Sprintf(" (through %s)", quoteAll(d.via))
				}
				if j == i {
					return fmt.Errorf("%w: %q depends on %q%s, which is in the same step; put %q in an earlier step",
						ErrBadOrder, name, d.name, via, d.name)
				}
				return fmt.Errorf("%w: %q depends on %q%s, which comes later; put %q in an earlier step",
					ErrBadOrder, name, d.name, via, d.name)
			}
		}
	}
	return nil
}

// dependency is a service that another depends on, and the services between
// them (empty for a direct dependency).
type dependency struct {
	name string
	via  []string
}

// dependencies lists every service name depends on, directly or
// transitively, each once with its shortest path, nearest first and then in
// name order. It ends on a cycle, and tolerates dependencies missing from
// the catalog.
func (c Catalog) dependencies(name string) []dependency {
	seen := map[string]bool{name: true}
	var out []dependency
	queue := []dependency{{name: name}}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		deps := append([]string(nil), c[cur.name].DependsOn...)
		sort.Strings(deps)
		var via []string
		if cur.name != name {
			via = append(append([]string(nil), cur.via...), cur.name)
		}
		for _, d := range deps {
			if seen[d] {
				continue
			}
			seen[d] = true
			dep := dependency{name: d, via: via}
			out = append(out, dep)
			queue = append(queue, dep)
		}
	}
	return out
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// ErrNothingStaged means an order found no staged release to queue.
var ErrNothingStaged = errors.New("roll: nothing is staged")

// ErrAllQueued means an order derived from the dependencies found every
// staged service queued already.
var ErrAllQueued = errors.New("roll: every staged service is queued already")

// ErrNothingToOrder means every service of an order has rolled out already:
// queuing it would do nothing.
var ErrNothingToOrder = errors.New("roll: nothing to order")

// ErrOrderUnknown means an order's transaction was sent but its answer was
// lost, and reading the queue back failed too: it may or may not be queued.
var ErrOrderUnknown = errors.New("roll: the order may or may not be queued")

// orderAttempts bounds how often Order checks again after another order,
// an abort or a pause changed the queue between its check and its write.
const orderAttempts = 10

// Order checks steps against the catalog, the staged releases and the
// deploy queue, and appends them to the queue; nil steps means every staged
// service not yet queued, in steps derived from the dependencies. It returns
// the steps it queued. The check and the append are one transaction that
// carries the queue's version, so of two orders at the same instant only
// one can pass the "already queued" check: the other checks again and is
// refused. An order whose answer a connection loss swallowed is looked up,
// not sent twice.
func (s *Store) Order(steps [][]string) ([][]string, error) {
	return s.OrderWith(steps, OrderOptions{})
}

// OrderOptions are what an order may ask of its steps beyond their order.
type OrderOptions struct {
	// AutoRollback: a release of the order that halts is rolled back at
	// once.
	AutoRollback bool
	// CanaryHosts or CanaryPercent (of the members) make each service of
	// the order a canary: that many turns, then a pause until promote.
	CanaryHosts, CanaryPercent int
	// Now lets the order's services take turns outside their maintenance
	// windows.
	Now bool
}

// OrderWith is Order with options, which every step of the order carries.
func (s *Store) OrderWith(steps [][]string, opts OrderOptions) ([][]string, error) {
	for attempt := 1; ; attempt++ {
		queued, ops, err := s.checkOrder(steps)
		if err != nil {
			return nil, err
		}
		if opts.CanaryHosts > 0 || opts.CanaryPercent > 0 {
			canary, _, err := s.canaryOps(queued, opts.CanaryHosts, opts.CanaryPercent)
			if err != nil {
				return nil, err
			}
			ops = append(ops, canary...)
		}
		id := rand.Text()
		err = s.commitSteps(queued, Step{Order: id, AutoRollback: opts.AutoRollback, Now: opts.Now}, ops)
		if errors.Is(err, zk.ErrBadVersion) && attempt < orderAttempts {
			continue
		}
		if err == nil {
			s.logged(ActStepStarted, s.noteStepStarted())
		}
		return queued, err
	}
}

// checkOrder reads what an order is checked against and checks it. It
// returns the steps to queue and the version check of the queue that their
// append must carry.
func (s *Store) checkOrder(steps [][]string) ([][]string, []any, error) {
	// The queue's version first: whatever changes the queue after this read
	// makes the append fail.
	ops, err := s.bumpDeploy()
	if err != nil {
		return nil, nil, err
	}
	services, err := s.Services()
	if err != nil {
		return nil, nil, err
	}
	catalog := Catalog(services)
	stagedList, err := s.StagedServices()
	if err != nil {
		return nil, nil, err
	}
	staged := map[string]bool{}
	for _, svc := range stagedList {
		staged[svc] = true
	}
	queue, err := s.Steps()
	if err != nil {
		return nil, nil, err
	}
	queuedIn := map[string]int{} // service -> its step's position, from 1
	for i, st := range queue {
		for _, svc := range st.Services {
			queuedIn[svc] = i + 1
		}
	}
	if steps == nil {
		if len(stagedList) == 0 {
			return nil, nil, fmt.Errorf("%w; run `dcroll stage SERVICE VERSION PATH` first", ErrNothingStaged)
		}
		var todo []string
		for _, svc := range stagedList {
			if _, ok := queuedIn[svc]; !ok {
				todo = append(todo, svc)
			}
		}
		if len(todo) == 0 {
			return nil, nil, ErrAllQueued
		}
		if steps, err = catalog.AutoSteps(todo); err != nil {
			return nil, nil, err
		}
	}
	if err := catalog.ValidateSteps(steps, staged); err != nil {
		return nil, nil, err
	}
	if err := s.CheckUnqueuedDependencies(catalog, steps); err != nil {
		return nil, nil, err
	}
	for _, step := range steps {
		for _, svc := range step {
			if i, ok := queuedIn[svc]; ok {
				return nil, nil, fmt.Errorf("%w: service %q is already queued, in step %d of %d (%s); `dcroll abort` clears the queue",
					ErrBadOrder, svc, i, len(queue), queue[i-1].Name)
			}
		}
	}
	if err := s.checkNotAllDone(steps); err != nil {
		return nil, nil, err
	}
	return steps, ops, nil
}

// checkNotAllDone refuses an order whose every service runs its staged
// release on every online host already: its steps would leave the queue as
// soon as they entered it.
func (s *Store) checkNotAllDone(steps [][]string) error {
	var names []string
	for _, step := range steps {
		for _, svc := range step {
			done, err := s.serviceDone(svc)
			if err != nil || !done {
				return err
			}
			names = append(names, svc)
		}
	}
	return fmt.Errorf("%w: the staged release of %s runs on every online host already", ErrNothingToOrder, strings.Join(names, ", "))
}

// bumpDeploy returns the operation that rewrites the deploy queue's node
// with what it holds now, over the version just read: in a transaction it
// makes the transaction fail if anything that goes through it (an order,
// an abort, a pause) changed the queue since.
func (s *Store) bumpDeploy() ([]any, error) {
	data, stat, err := s.conn.Get(s.Tree.Deploy())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, s.CheckSeeded()
	}
	if err != nil {
		return nil, fmt.Errorf("roll: get %s: %w", s.Tree.Deploy(), err)
	}
	return []any{&zk.SetDataRequest{Path: s.Tree.Deploy(), Data: data, Version: stat.Version}}, nil
}

// appendSteps appends steps, over the queue's version as it is now.
func (s *Store) appendSteps(steps [][]string, id string) ([][]string, error) {
	for {
		ops, err := s.bumpDeploy()
		if err != nil {
			return nil, err
		}
		err = s.commitSteps(steps, Step{Order: id}, ops)
		if errors.Is(err, zk.ErrBadVersion) {
			continue
		}
		return steps, err
	}
}

// commitSteps appends steps, each a copy of tmpl (which carries the order's
// id), in one transaction
// with ops. When the answer is lost to a connection loss, the queue is read
// back: the order may have committed.
func (s *Store) commitSteps(steps [][]string, tmpl Step, ops []any) error {
	id := tmpl.Order
	for _, svcs := range steps {
		st := tmpl
		st.Services, st.Ordered = svcs, time.Now().UTC()
		data, err := encode(st)
		if err != nil {
			return err
		}
		ops = append(ops, &zk.CreateRequest{Path: s.Tree.step("step-"), Data: data, Acl: s.acls.of(s.Tree.step("step-")), Flags: zk.FlagSequence})
	}
	_, err := s.conn.Multi(ops...)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrBadVersion):
		return err
	case !lostAnswer(err):
		return fmt.Errorf("roll: append to %s: %w", s.Tree.Deploy(), err)
	}
	queue, rerr := s.Steps()
	if rerr != nil {
		return fmt.Errorf("%w (%v, then %v): `dcroll status` shows the queue", ErrOrderUnknown, err, rerr)
	}
	if slices.ContainsFunc(queue, func(e StepEntry) bool { return e.Order == id }) {
		return nil
	}
	return fmt.Errorf("roll: append to %s: %w", s.Tree.Deploy(), err)
}

// lostAnswer reports whether err leaves it open whether the request took
// effect: the connection went while the request was under way.
func lostAnswer(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, zk.ErrClosing)
}
