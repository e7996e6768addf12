package roll

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"
)

// A canary deploy rolls a few hosts of a service and then pauses it until
// the operator promotes it (or rolls it back). `order --canary N` writes
// the count into the service's control node, /roll/<svc>, in the order's
// transaction; every take of a turn carries that node's version already,
// and during a canary it sets the node instead, one turn more, and the
// take of the last canary turn also pauses the service. So the count is
// exact under any interleaving, at no extra request.

// ErrNoCanary means a promote found no canary deploy of the service.
var ErrNoCanary = errors.New("roll: no canary to promote")

// ErrBadCanary is wrapped by every error about a canary's size.
var ErrBadCanary = errors.New("roll: bad canary")

// ParseCanary reads a canary's size: a count of hosts ("2") or a share of
// the members ("10%").
func ParseCanary(s string) (count, percent int, err error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100 {
			return 0, 0, fmt.Errorf("%w: %q: want a count of hosts like 2, or a percentage from 1%% to 100%%", ErrBadCanary, s)
		}
		return 0, n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("%w: %q: want a count of hosts like 2, or a percentage from 1%% to 100%%", ErrBadCanary, s)
	}
	return n, 0, nil
}

// canaryCount is the operation of a take that stands for the service's
// control: a check of its version, or, during a canary, the count of one
// more turn over that version, pausing the service at the last.
func (s *Store) canaryCount(svc string, st TurnState) any {
	c := st.control
	if c.Canary == nil {
		return &zk.CheckVersionRequest{Path: s.Tree.Roll(svc), Version: st.controlVersion}
	}
	canary := *c.Canary
	canary.Taken++
	c.Canary = &canary
	if canary.Taken >= canary.Hosts {
		c.Paused, c.Reason = true, CanaryWait
	}
	data, err := encode(c)
	if err != nil {
		// A control that cannot be written cannot be counted: the take
		// fails on a version no node has, and is tried again.
		return &zk.CheckVersionRequest{Path: s.Tree.Roll(svc), Version: -2}
	}
	return &zk.SetDataRequest{Path: s.Tree.Roll(svc), Data: data, Version: st.controlVersion}
}

// canaryOps returns the operations that start a canary of each service of
// steps: count hosts, or percent of its members (at least one).
func (s *Store) canaryOps(steps [][]string, count, percent int) ([]any, map[string]int, error) {
	var ops []any
	sizes := map[string]int{}
	for _, step := range steps {
		for _, svc := range step {
			n := count
			if percent > 0 {
				ok, stat, err := s.conn.Exists(s.Tree.Members(svc))
				if err != nil {
					return nil, nil, fmt.Errorf("roll: read %s: %w", s.Tree.Members(svc), err)
				}
				members := 0
				if ok {
					members = int(stat.NumChildren)
				}
				n = max((members*percent+99)/100, 1)
			}
			var c Control
			stat, err := s.getOptional(s.Tree.Roll(svc), &c)
			if err != nil {
				return nil, nil, err
			}
			c.Canary, c.Reason = &Canary{Hosts: n}, ""
			data, err := encode(c)
			if err != nil {
				return nil, nil, err
			}
			ops = append(ops, &zk.SetDataRequest{Path: s.Tree.Roll(svc), Data: data, Version: stat.Version})
			sizes[svc] = n
		}
	}
	return ops, sizes, nil
}

// Promote ends svc's canary: the pause it made is lifted and the rest of
// the hosts roll. It returns the canary it ended.
func (s *Store) Promote(svc string) (Canary, error) {
	c, err := s.Control(svc)
	if err != nil {
		return Canary{}, err
	}
	if c.Canary == nil {
		return Canary{}, fmt.Errorf("%w: %s is not in a canary deploy (`dcroll order --canary N %s` starts one)", ErrNoCanary, svc, svc)
	}
	var was Canary
	err = s.UpdateControl(svc, func(c *Control) {
		if c.Canary != nil {
			was = *c.Canary
		}
		if c.Reason == CanaryWait {
			c.Paused, c.Reason = false, ""
		}
		c.Canary = nil
	})
	return was, err
}
