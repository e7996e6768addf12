package roll

import (
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/config"
)

// ErrHostUp means a host's agent holds its presence node: it cannot be
// forgotten while it runs, as it would register again.
var ErrHostUp = errors.New("roll: the host's agent is up")

// Forget removes a retired host's memberships, so that it no longer counts
// in any service's quorum, and returns the services it was a member of. It
// is refused while the host's agent is up: the transaction creates the
// host's presence node and deletes it again, so an agent registered at that
// instant makes the whole of it fail.
func (s *Store) Forget(host string) ([]string, error) {
	if !config.ValidName(host) {
		return nil, fmt.Errorf("roll: %q is not a valid host name", host)
	}
	for {
		services, err := s.Services()
		if err != nil {
			return nil, err
		}
		presence := s.Tree.Host(host)
		ops := []any{&zk.CreateRequest{Path: presence, Acl: s.acls.of(presence)}}
		var member []string
		for _, svc := range Catalog(services).Names() {
			ok, _, err := s.conn.Exists(s.Tree.Member(svc, host))
			if err != nil {
				return nil, fmt.Errorf("roll: read %s: %w", s.Tree.Member(svc, host), err)
			}
			if ok {
				member = append(member, svc)
				ops = append(ops, &zk.DeleteRequest{Path: s.Tree.Member(svc, host), Version: -1})
			}
		}
		ops = append(ops, &zk.DeleteRequest{Path: presence, Version: -1})
		_, err = s.conn.Multi(ops...)
		switch {
		case err == nil:
			return member, nil
		case errors.Is(err, zk.ErrNodeExists):
			return nil, fmt.Errorf("%w: %s exists; stop dcroll on %s first (or wait for its session to expire), or it registers again", ErrHostUp, presence, host)
		case errors.Is(err, zk.ErrNoNode):
			continue // a membership went meanwhile: look again
		}
		return nil, fmt.Errorf("roll: forget %s: %w", host, err)
	}
}
