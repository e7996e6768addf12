package roll

import (
	"errors"
	"fmt"
	"sort"
	"strings"
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
