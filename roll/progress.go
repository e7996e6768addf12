package roll

import (
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"
)

// Progress is how far the online members of a service are with a staged
// release, as `dcroll stage` shows it.
type Progress struct {
	// Online counts the online members; Ready those of them that hold the
	// release (queued or in turn) or run it.
	Online, Ready int
	// NotReady names the online members without the release, sorted, when
	// the names were read (StageNames, or a count without a fleet view).
	NotReady []string
	// Agents holds the agents of the first few of NotReady (absent: down).
	Agents map[string]Host
	// Named says NotReady and Agents were read.
	Named bool
}

// StagedZxid is the transaction that last wrote svc's manifest, 0 when
// nothing is staged: one small request that tells whether the manifest
// changed, without reading it.
func (s *Store) StagedZxid(svc string) (int64, error) {
	ok, stat, err := s.conn.Exists(s.Tree.Staging(svc))
	if err != nil {
		return 0, fmt.Errorf("roll: read %s: %w", s.Tree.Staging(svc), err)
	}
	if !ok {
		return 0, nil
	}
	return stat.Mzxid, nil
}

// StageCounts counts how far the online members of svc are with version,
// from the fleet view and the numbers of members, queued hosts and turns:
// five small requests whatever the fleet's size. The view lags /current by
// about a second, so the counts may too. Without a view it reads every
// host, as StageNames does.
func (s *Store) StageCounts(svc, version string, limit int) (Progress, error) {
	var p Progress
	r := &reader{s: s}
	members, err := r.count(s.Tree.Members(svc))
	if err != nil {
		return p, err
	}
	var v FleetView
	err = r.decode(s.Tree.Fleet(svc), &v, false)
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		return s.StageNames(svc, version, limit)
	case err != nil:
		return p, err
	}
	queued, err := r.count(s.Tree.readyDir(svc))
	if err != nil {
		return p, err
	}
	turns, err := r.count(s.Tree.turnsDir(svc))
	if err != nil {
		return p, err
	}
	p.Online = max(min(members-len(v.Gone), v.Online), 0)
	p.Ready = min(v.Versions[version]+queued+turns, p.Online)
	return p, nil
}

// StageNames is StageCounts by name: it lists /members, /current, the ready
// queue and the turns of svc (four requests whose answers grow with the
// fleet), takes the hosts' versions from the fleet view's named hosts
// (reading every /current node only when the view leaves some unnamed),
// and reads the agents of the first limit hosts without the release.
func (s *Store) StageNames(svc, version string, limit int) (Progress, error) {
	p := Progress{Named: true, Agents: map[string]Host{}}
	r := &reader{s: s}
	members, err := s.Members(svc)
	if err != nil {
		return p, err
	}
	holding := map[string]bool{}
	queue, err := s.queuedHosts(r, svc)
	if err != nil {
		return p, err
	}
	for _, h := range queue {
		holding[h] = true
	}
	turns, err := r.children(s.Tree.turnsDir(svc), false)
	if err != nil {
		return p, err
	}
	for _, h := range turns {
		holding[h] = true
	}
	byHost, err := s.versionsOf(r, svc)
	if err != nil {
		return p, err
	}
	for _, h := range members {
		ver, online := byHost[h]
		if !online {
			continue
		}
		p.Online++
		if holding[h] || ver == version {
			p.Ready++
		} else {
			p.NotReady = append(p.NotReady, h)
		}
	}
	for _, h := range p.NotReady[:min(limit, len(p.NotReady))] {
		var a Host
		_, err := s.get(s.Tree.Host(h), &a)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue
		case err != nil:
			return p, err
		}
		p.Agents[h] = a
	}
	return p, nil
}

// versionsOf gives every online host's version: from the fleet view's
// named hosts and the list of /current where the view names every host
// off the common version, else from every /current node.
func (s *Store) versionsOf(r *reader, svc string) (map[string]string, error) {
	var v FleetView
	err := r.decode(s.Tree.Fleet(svc), &v, false)
	switch {
	case err == nil:
		byHost, ok, err := r.versionsByHost(svc, fleetFacts{view: v})
		if err != nil || ok {
			return byHost, err
		}
	case !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, ErrBadNode):
		return nil, err
	}
	cur, err := s.CurrentOf(svc)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(cur))
	for h, c := range cur {
		out[h] = c.Version
	}
	return out, nil
}
