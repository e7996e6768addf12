package roll

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/go-zookeeper/zk"
)

// get reads and decodes one node.
func (s *Store) get(path string, v node) (*zk.Stat, error) {
	data, stat, err := s.conn.Get(path)
	if err != nil {
		return nil, fmt.Errorf("roll: get %s: %w", path, err)
	}
	return stat, decode(path, data, v)
}

// CheckSeeded returns ErrNotSeeded, with what to do, when the root is missing.
func (s *Store) CheckSeeded() error {
	ok, _, err := s.conn.Exists(s.Tree.Services())
	if err != nil {
		return fmt.Errorf("roll: read %s: %w", s.Tree.Services(), err)
	}
	if !ok {
		return fmt.Errorf("%w: %s does not exist; run `dcroll seed FILE` first%s", ErrNotSeeded, s.Tree.Services(), s.seededRoots())
	}
	return nil
}

// seededRoots names the top-level roots of the ensemble that are seeded, for
// an operator who mistyped --root. It reads the top level once, and only
// when the root is missing.
func (s *Store) seededRoots() string {
	names, _, err := s.conn.Children("/")
	if err != nil {
		return ""
	}
	var roots []string
	for _, n := range slices.Sorted(slices.Values(names)) {
		if ok, _, err := s.conn.Exists(path.Join("/", n, "services")); err == nil && ok {
			roots = append(roots, "/"+n)
		}
	}
	if len(roots) == 0 {
		return "; no root of this ensemble is seeded"
	}
	return ", or use one of the seeded roots: --root " + strings.Join(roots, ", --root ")
}

// Services reads every service's policy.
func (s *Store) Services() (map[string]Service, error) {
	names, _, err := s.conn.Children(s.Tree.Services())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, s.CheckSeeded()
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Services(), err)
	}
	out := make(map[string]Service, len(names))
	for _, name := range names {
		var svc Service
		if _, err := s.get(s.Tree.Service(name), &svc); err != nil {
			return nil, err
		}
		out[name] = svc
	}
	return out, nil
}

// Members lists the hosts known to run svc. A child whose name is not a
// valid host name is skipped (Skipped): it counts toward no quorum.
func (s *Store) Members(svc string) ([]string, error) {
	hosts, _, err := s.conn.Children(s.Tree.Members(svc))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Members(svc), err)
	}
	hosts = s.validHosts(s.Tree.Members(svc), hosts)
	sort.Strings(hosts)
	return hosts, nil
}

// EnsureMember records that host runs svc. It is persistent: a member that
// is not current counts as offline, the quorum's denominator.
func (s *Store) EnsureMember(svc, host string, m Member) error {
	data, err := encode(m)
	if err != nil {
		return err
	}
	path := s.Tree.Member(svc, host)
	_, err = s.conn.Create(path, data, 0, s.acls.of(path))
	switch {
	case err == nil, errors.Is(err, zk.ErrNodeExists):
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("roll: service %q is not in the catalog (%s is missing): add it to the seed file and run `dcroll seed`", svc, s.Tree.Members(svc))
	}
	return fmt.Errorf("roll: create %s: %w", path, err)
}

// RegisterHost writes the host's presence node, once Register has created
// it in this session (or, for tools and tests, creates it).
func (s *Store) RegisterHost(name string, h Host) error {
	h.Protocol = s.protocol
	data, err := encode(h)
	if err != nil {
		return err
	}
	return s.ensureEphemeral(s.Tree.Host(name), data)
}

// SetCurrent says that host serves svc healthily at a version.
func (s *Store) SetCurrent(svc, host string, c Current) error {
	data, err := encode(c)
	if err != nil {
		return err
	}
	err = s.ensureEphemeral(s.Tree.Current(svc, host), data)
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("roll: service %q is not in the catalog (%s is missing): add it to the seed file and run `dcroll seed`", svc, s.Tree.CurrentDir(svc))
	}
	return err
}

// ClearCurrent takes host out of svc's current set.
func (s *Store) ClearCurrent(svc, host string) error {
	return s.deleteIfPresent(s.Tree.Current(svc, host))
}

// Deregister removes the host's presence node.
func (s *Store) Deregister(host string) error {
	return s.deleteIfPresent(s.Tree.Host(host))
}

func (s *Store) deleteIfPresent(path string) error {
	err := s.conn.Delete(path, -1)
	if err == nil || errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return fmt.Errorf("roll: delete %s: %w", path, err)
}

// ErrHeldElsewhere means an ephemeral node this session would write is held
// by another session.
var ErrHeldElsewhere = errors.New("roll: held by another ZooKeeper session")

// ensureEphemeral makes path an ephemeral node of this session holding data.
// A node of another session is left alone: Register has cleared the nodes
// of this machine's earlier sessions before anything else is written, so
// it is another machine's, or one of this machine's that the agent's
// retries outlive.
func (s *Store) ensureEphemeral(path string, data []byte) error {
	for attempt := 0; attempt < 3; attempt++ {
		_, err := s.conn.Create(path, data, zk.FlagEphemeral, s.acls.of(path))
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("roll: create %s: %w", path, err)
		}
		_, stat, err := s.conn.Get(path)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("roll: get %s: %w", path, err)
		}
		if stat.EphemeralOwner != s.conn.SessionID() {
			return fmt.Errorf("%w: %s (session %#x); it goes when that session ends", ErrHeldElsewhere, path, stat.EphemeralOwner)
		}
		_, err = s.conn.Set(path, data, stat.Version)
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("roll: set %s: %w", path, err)
		}
	}
	return fmt.Errorf("roll: create %s: node keeps changing under us", path)
}

// CurrentOf reads svc's current set: host -> what it serves. Hosts whose
// node vanishes while being read are left out, and so are, recorded in
// Skipped, a child with bad data or a name that is not a host name: one
// bad node must not keep every agent from reading the fleet.
func (s *Store) CurrentOf(svc string) (map[string]Current, error) {
	cur, _, err := s.currentOf(svc, false)
	return cur, err
}

// WatchCurrent reads svc's current set and leaves a watch that fires on the
// next change of its membership.
func (s *Store) WatchCurrent(svc string) (map[string]Current, <-chan struct{}, error) {
	resync := s.resyncs.next()
	cur, ch, err := s.currentOf(svc, true)
	if err != nil {
		return nil, nil, err
	}
	return cur, watch(ch, resync), nil
}

func (s *Store) currentOf(svc string, watch bool) (map[string]Current, <-chan zk.Event, error) {
	dir := s.Tree.CurrentDir(svc)
	hosts, _, ch, err := s.list(dir, watch)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil, fmt.Errorf("roll: service %q is not in the catalog (%s is missing)", svc, dir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("roll: list %s: %w", dir, err)
	}
	hosts = s.validHosts(dir, hosts)
	out := make(map[string]Current, len(hosts))
	errs := make([]error, len(hosts))
	vals := make([]Current, len(hosts))
	// The reads are pipelined on the one connection, a few at a time.
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, errs[i] = s.get(s.Tree.Current(svc, h), &vals[i])
		}()
	}
	wg.Wait()
	bad := map[string]string{}
	for i, h := range hosts {
		switch {
		case errs[i] == nil:
			out[h] = vals[i]
		case errors.Is(errs[i], zk.ErrNoNode):
		case errors.Is(errs[i], ErrBadNode):
			bad[s.Tree.Current(svc, h)] = errs[i].Error()
		default:
			return nil, nil, errs[i]
		}
	}
	s.skipBad(dir, bad)
	return out, ch, nil
}

// Hosts reads every registered agent's presence node. A node with bad data
// or a name that is not a host name is left out and recorded in Skipped.
func (s *Store) Hosts() (map[string]Host, error) {
	names, _, err := s.conn.Children(s.Tree.Hosts())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, s.CheckSeeded()
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Hosts(), err)
	}
	names = s.validHosts(s.Tree.Hosts(), names)
	out := make(map[string]Host, len(names))
	bad := map[string]string{}
	for _, name := range names {
		var h Host
		_, err := s.get(s.Tree.Host(name), &h)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if errors.Is(err, ErrBadNode) {
			bad[s.Tree.Host(name)] = err.Error()
			continue
		}
		if err != nil {
			return nil, err
		}
		out[name] = h
	}
	s.skipBad(s.Tree.Hosts(), bad)
	return out, nil
}

// OnlineHosts lists the hosts in svc's current set, without reading what
// each serves: one request.
func (s *Store) OnlineHosts(svc string) ([]string, error) {
	hosts, _, err := s.conn.Children(s.Tree.CurrentDir(svc))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, fmt.Errorf("roll: service %q is not in the catalog (%s is missing)", svc, s.Tree.CurrentDir(svc))
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.CurrentDir(svc), err)
	}
	hosts = s.validHosts(s.Tree.CurrentDir(svc), hosts)
	sort.Strings(hosts)
	return hosts, nil
}

// RootExists reports whether the data center's root node exists, seeded or
// not.
func (s *Store) RootExists() (bool, error) {
	ok, _, err := s.conn.Exists(s.Tree.Root)
	if err != nil {
		return false, fmt.Errorf("roll: read %s: %w", s.Tree.Root, err)
	}
	return ok, nil
}

// RemoveRoot deletes the data center's root and everything below it: for a
// throwaway data center, such as the demo's. Nodes that vanish meanwhile
// are no error; a node created meanwhile makes it fail (try again).
func (s *Store) RemoveRoot() error { return s.removeTree(s.Tree.Root) }

func (s *Store) removeTree(p string) error {
	children, _, err := s.conn.Children(p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("roll: list %s: %w", p, err)
	}
	for _, c := range children {
		if err := s.removeTree(path.Join(p, c)); err != nil {
			return err
		}
	}
	return s.deleteIfPresent(p)
}

// ErrProtocolTooOld means this agent speaks a protocol version below the
// minimum the data center's root allows to take turns.
var ErrProtocolTooOld = errors.New("roll: protocol version too old to take turns")

// MinProtocol reads the lowest protocol version that may take turns.
func (s *Store) MinProtocol() (int, error) {
	var r Root
	_, err := s.getOptional(s.Tree.Root, &r)
	return r.MinProtocol, err
}

// SetMinProtocol sets the lowest protocol version that may take turns:
// raise it once every agent speaks the new version, before relying on what
// it adds. Agents below it leave the ready queues and say why.
func (s *Store) SetMinProtocol(v int) error {
	if v < 0 || v > s.protocol {
		return fmt.Errorf("roll: min_protocol %d: want 0..%d, the version this dcroll speaks", v, s.protocol)
	}
	data, err := encode(Root{MinProtocol: v})
	if err != nil {
		return err
	}
	if _, err := s.conn.Set(s.Tree.Root, data, -1); err != nil {
		return fmt.Errorf("roll: set %s: %w", s.Tree.Root, err)
	}
	return nil
}

// protocolTooOld says why this agent may not take turns under min, or nil.
func (s *Store) protocolTooOld(min int) error {
	if s.protocol >= min {
		return nil
	}
	return fmt.Errorf("%w: this agent speaks protocol %d and %s requires %d; upgrade dcroll on this host",
		ErrProtocolTooOld, s.protocol, s.Tree.Root, min)
}
