package roll

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/pelletier/go-toml/v2"

	"github.com/dcroll/dcroll/config"
)

// ErrBadCatalog is wrapped by every error about a seed file.
var ErrBadCatalog = errors.New("roll: bad catalog")

// Catalog is the set of services of a data center and their policies, as a
// seed file describes them.
type Catalog map[string]Service

// seedFile is the TOML layout of a seed file. Quorum is a count or a
// percentage, so it is read loosely and checked by hand.
type seedFile struct {
	Services map[string]struct {
		DependsOn    []string     `toml:"depends_on"`
		Quorum       any          `toml:"quorum"`
		MaxParallel  int          `toml:"max_parallel"`
		Health       HealthPolicy `toml:"health"`
		MemberTTL    *Duration    `toml:"member_ttl"`
		AutoRollback bool         `toml:"auto_rollback"`
		Windows      []string     `toml:"windows"`
		CanaryHold   any          `toml:"canary_hold"`
	} `toml:"services"`
}

// ParseCatalog reads and validates a seed file. name is used in errors.
func ParseCatalog(name string, r io.Reader) (Catalog, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrBadCatalog, name, err)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("%w: %s is larger than 1 MiB", ErrBadCatalog, name)
	}
	var f seedFile
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return nil, fmt.Errorf("%w: %s: unknown key %s", ErrBadCatalog, name, strings.Join(strictKeys(strict), ", "))
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCatalog, name, err)
	}
	if len(f.Services) == 0 {
		return nil, fmt.Errorf("%w: %s lists no services; add a [services.NAME] table", ErrBadCatalog, name)
	}
	// Every problem is reported, not just the first, so that one edit
	// fixes the file.
	c := Catalog{}
	var errs []error
	for _, svcName := range slices.Sorted(maps.Keys(f.Services)) {
		raw := f.Services[svcName]
		svc := Service{DependsOn: raw.DependsOn, MaxParallel: raw.MaxParallel, Health: raw.Health, MemberTTL: raw.MemberTTL, AutoRollback: raw.AutoRollback, Windows: raw.Windows}
		c[svcName] = svc // for the dependency checks, even when bad
		var err error
		if svc.CanaryHold, err = parseCanaryHold(raw.CanaryHold); err != nil {
			err = fmt.Errorf("service %q: %v", svcName, err)
		} else if raw.Quorum == nil {
			err = fmt.Errorf(`service %q: quorum is missing (a count like 2 or a percentage like "60%%")`, svcName)
		} else if err = svc.Quorum.UnmarshalTOML(raw.Quorum); err != nil {
			err = fmt.Errorf("service %q: %v", svcName, err)
		} else {
			svc.applyDefaults()
			c[svcName] = svc
			err = c.validateService(svcName)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %v", ErrBadCatalog, name, err))
		}
	}
	if err := c.validateGraph(); err != nil {
		errs = append(errs, prefixEach(name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// parseCanaryHold reads canary_hold as the seed file gives it: a duration
// in a string.
func parseCanaryHold(v any) (Duration, error) {
	if v == nil {
		return 0, nil
	}
	text, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("%w %v: want a duration in quotes, like \"30m\"", ErrBadCanaryHold, v)
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fmt.Errorf("%w %q: want a number and a unit, like \"30m\" or \"1h30m\"", ErrBadCanaryHold, text)
	}
	return Duration(d), validCanaryHold(Duration(d))
}

// prefixEach puts "name: " before each error err joins.
func prefixEach(name string, err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	for _, e := range joined.Unwrap() {
		errs = append(errs, fmt.Errorf("%s: %w", name, e))
	}
	return errors.Join(errs...)
}

func strictKeys(e *toml.StrictMissingError) []string {
	var keys []string
	for _, d := range e.Errors {
		keys = append(keys, strings.Join(d.Key(), "."))
	}
	return keys
}

// Validate checks every policy, that every dependency is a service of the
// catalog and that the dependencies have no cycle.
func (c Catalog) Validate() error {
	var errs []error
	for _, name := range c.Names() {
		if err := c.validateService(name); err != nil {
			errs = append(errs, fmt.Errorf("%w: %v", ErrBadCatalog, err))
		}
	}
	return errors.Join(append(errs, c.validateGraph())...)
}

// validateService checks the name and policy of one service.
func (c Catalog) validateService(name string) error {
	if !config.ValidName(name) {
		return fmt.Errorf("service name %q: use letters, digits, '.', '_', '-'", name)
	}
	if err := c[name].validate(); err != nil {
		return fmt.Errorf("service %q: %v", name, err)
	}
	return nil
}

// validateGraph checks that every dependency is another service of the
// catalog and that the dependencies have no cycle.
func (c Catalog) validateGraph() error {
	var errs []error
	for _, name := range c.Names() {
		for _, d := range c[name].DependsOn {
			if d == name {
				errs = append(errs, fmt.Errorf("%w: service %q depends on itself", ErrBadCatalog, name))
			} else if _, ok := c[d]; !ok {
				errs = append(errs, fmt.Errorf("%w: service %q depends on %q, which is not in the catalog", ErrBadCatalog, name, d))
			}
		}
	}
	if cycle := c.cycle(); len(cycle) > 2 { // a service on itself is reported above
		errs = append(errs, fmt.Errorf("%w: dependency cycle: %s", ErrBadCatalog, strings.Join(cycle, " -> ")))
	}
	return errors.Join(errs...)
}

// Names lists the services in name order.
func (c Catalog) Names() []string { return slices.Sorted(maps.Keys(c)) }

// cycle returns one dependency cycle as a path that ends where it starts,
// or nil. The walk is in name order, so the answer is stable.
func (c Catalog) cycle() []string {
	const (
		unvisited = iota
		onPath
		done
	)
	mark := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		mark[n] = onPath
		stack = append(stack, n)
		deps := append([]string(nil), c[n].DependsOn...)
		sort.Strings(deps)
		for _, d := range deps {
			switch mark[d] {
			case onPath:
				for i, s := range stack {
					if s == d {
						return append(append([]string(nil), stack[i:]...), d)
					}
				}
			case unvisited:
				if cyc := visit(d); cyc != nil {
					return cyc
				}
			}
		}
		stack = stack[:len(stack)-1]
		mark[n] = done
		return nil
	}
	for _, n := range c.Names() {
		if mark[n] == unvisited {
			if cyc := visit(n); cyc != nil {
				return cyc
			}
		}
	}
	return nil
}

// Change is one write that seeding needs.
type Change struct {
	Op   string // "create", "update" or "acl"
	Path string
	Old  string // the data now, for updates; the ACL now, for acl
	New  string

	version int32    // the data's version, or for acl the ACL's
	acl     []zk.ACL // for acl: the one to set
}

func (ch Change) String() string {
	switch {
	case ch.Op == "update":
		return fmt.Sprintf("update %s\n    was: %s\n    now: %s", ch.Path, ch.Old, ch.New)
	case ch.Op == "acl":
		return fmt.Sprintf("acl %s\n    was: %s\n    now: %s", ch.Path, ch.Old, ch.New)
	case ch.New != "":
		return fmt.Sprintf("create %s %s", ch.Path, ch.New)
	}
	return "create " + ch.Path
}

// Plan is what seeding a catalog would change, and what it leaves alone.
type Plan struct {
	Changes []Change
	// Unchanged counts nodes that already hold what the catalog says.
	Unchanged int
	// Extra lists services in ZooKeeper that the catalog does not name. Seed
	// never removes a service: hosts may still run it.
	Extra []string
}

// PlanSeed compares the tree with the catalog. It only reads.
func (s *Store) PlanSeed(c Catalog) (*Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Plan{}
	want := func(path string, data []byte) error {
		old, stat, err := s.conn.Get(path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			p.Changes = append(p.Changes, Change{Op: "create", Path: path, New: string(data)})
		case err != nil:
			return fmt.Errorf("roll: read %s: %w", path, err)
		case data == nil || bytes.Equal(old, data):
			p.Unchanged++
		default:
			p.Changes = append(p.Changes, Change{Op: "update", Path: path, Old: string(old), New: string(data), version: stat.Version})
		}
		return nil
	}
	// The root's ancestors, the root, and its fixed children. A new root
	// requires this dcroll's protocol of the agents that take turns: a new
	// data center has no older agents. An existing root keeps its minimum
	// (seed --min-protocol changes it).
	parts := strings.Split(strings.TrimPrefix(s.Tree.Root, "/"), "/")
	for i := range parts[:len(parts)-1] {
		if err := want("/"+path.Join(parts[:i+1]...), nil); err != nil {
			return nil, err
		}
	}
	switch ok, _, err := s.conn.Exists(s.Tree.Root); {
	case err != nil:
		return nil, fmt.Errorf("roll: read %s: %w", s.Tree.Root, err)
	case ok:
		p.Unchanged++
	default:
		data, err := encode(Root{MinProtocol: s.protocol})
		if err != nil {
			return nil, err
		}
		p.Changes = append(p.Changes, Change{Op: "create", Path: s.Tree.Root, New: string(data)})
	}
	for _, top := range topLevel {
		if err := want(s.Tree.join(top), nil); err != nil {
			return nil, err
		}
	}
	for _, name := range c.Names() {
		data, err := encode(c[name])
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", name, err)
		}
		for _, n := range []struct {
			path string
			data []byte
		}{
			{s.Tree.Service(name), data},
			{s.Tree.Members(name), nil},
			{s.Tree.CurrentDir(name), nil},
			{s.Tree.Roll(name), nil},
			{s.Tree.turnsDir(name), nil},
		} {
			if err := want(n.path, n.data); err != nil {
				return nil, err
			}
		}
	}
	existing, _, err := s.conn.Children(s.Tree.Services())
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Services(), err)
	}
	for _, name := range existing {
		if _, ok := c[name]; !ok {
			p.Extra = append(p.Extra, name)
		}
	}
	sort.Strings(p.Extra)
	if err := s.planACLs(p); err != nil {
		return nil, err
	}
	return p, nil
}

// ErrConcurrentChange means the tree changed between planning and applying.
var ErrConcurrentChange = errors.New("roll: the tree changed while seeding; run seed again")

// ApplySeed makes every change of the plan's data in one ZooKeeper
// transaction: all of them happen or none. An update only applies over the
// version that was planned against. Then it sets the ACLs the plan
// repairs, each over the ACL version planned against (ZooKeeper's
// transactions cannot set an ACL).
func (s *Store) ApplySeed(p *Plan) error {
	if len(p.Changes) == 0 {
		return nil
	}
	var ops []any
	for _, ch := range p.Changes {
		switch ch.Op {
		case "create":
			var data []byte
			if ch.New != "" {
				data = []byte(ch.New)
			}
			ops = append(ops, &zk.CreateRequest{Path: ch.Path, Data: data, Acl: s.acls.of(ch.Path)})
		case "update":
			ops = append(ops, &zk.SetDataRequest{Path: ch.Path, Data: []byte(ch.New), Version: ch.version})
		}
	}
	if len(ops) > 0 {
		_, err := s.conn.Multi(ops...)
		if errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
			return ErrConcurrentChange
		}
		if err != nil {
			return fmt.Errorf("roll: seed %s: %w", s.Tree.Root, err)
		}
	}
	return s.applyACLs(p)
}
