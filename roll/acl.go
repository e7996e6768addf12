package roll

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/config"
)

// aclPolicy gives each node of the tree its ACL. With the open and digest
// ACLs every node has the same one. With roles, the operator may do
// anything anywhere, and the agent role gets only what the protocol needs
// of it at that place in the tree (agentRights). Both roles compute the same
// ACL for a path, so a node has it whoever creates it, and seed can repair
// it.
type aclPolicy struct {
	root string
	all  []zk.ACL // open and digest: every node's ACL
	// operator and agent are the roles' identities (Perms unused).
	operator, agent zk.ACL
}

// ZooKeeper's permissions, as the agent role gets them.
const (
	permR    = zk.PermRead
	permRW   = zk.PermRead | zk.PermWrite
	permRCD  = zk.PermRead | zk.PermCreate | zk.PermDelete
	permRC   = zk.PermRead | zk.PermCreate
	permRWC  = zk.PermRead | zk.PermWrite | zk.PermCreate
	permRD   = zk.PermRead | zk.PermDelete
	permRWCD = zk.PermRead | zk.PermWrite | zk.PermCreate | zk.PermDelete
)

// agentRights are the agent role's permissions by path under the root, the
// first matching pattern winning; any other node it may only read. CREATE
// and DELETE on a node are over its children: ZooKeeper checks them on the
// parent, for any child, so an agent that may create its own /hosts/<h>
// may create any host's, and one that may remove its own ticket may remove
// any. docs/PROTOCOL.md ("Roles") says what that leaves a compromised agent.
var agentRights = []struct {
	pattern string
	perms   int32
}{
	{"hosts", permRCD},            // its presence node: created, removed at exit
	{"hosts/*", permRW},           // ... and updated
	{"members/*", permRCD},        // its membership, once per service
	{"members/*/*", permRW},       // machine_id set on an older member
	{"current/*", permRCD},        // serving and healthy, or not
	{"current/*/*", permRW},       //
	{"staging/*", permRC},         // the queued directory of an older stage
	{"staging/*/ready", permRWCD}, // tickets join and leave; the take sets the head
	{"staging/*/ready/*", permRW},
	{"staging/*/queued", permRCD},
	{"staging/*/queued/*", permRW},
	{"deploy", permRD},         // the advancer removes a finished step
	{"roll", permRCD},          // the advancer's election
	{"roll/_advancer", permRW}, //
	{"roll/*", permRW},         // a failed switch halts the service
	{"roll/*/turns", permRCD},  // its turn
	{"roll/*/turns/*", permRW}, //
	{"refused", permRCD},       // a machine refused its host name
	{"refused/*", permRW},      //
	{"fleet", permRC},          // the advancer's fleet view
	{"fleet/*", permRW},        //
	{"history", permRWC},       // a halt, a step's start and end: the head and a new slot
	{"history/*", permRW},      // ... or an old slot overwritten
}

func newACLPolicy(cfg config.ZooKeeper, password string) (aclPolicy, error) {
	p := aclPolicy{root: cfg.Root}
	switch cfg.ACL {
	case "open":
		p.all = zk.WorldACL(zk.PermAll)
	case "digest":
		p.all = zk.DigestACL(zk.PermAll, cfg.User, password)
	case "digest+read":
		p.all = append(zk.DigestACL(zk.PermAll, cfg.User, password), zk.WorldACL(zk.PermRead)...)
	case "roles":
		for _, r := range []struct {
			key string
			id  string
			to  *zk.ACL
		}{{"zookeeper.operator_id", cfg.OperatorID, &p.operator}, {"zookeeper.agent_id", cfg.AgentID, &p.agent}} {
			scheme, id, err := config.ParseACLID(r.id)
			if err != nil {
				return p, fmt.Errorf("roll: %s: %w", r.key, err)
			}
			*r.to = zk.ACL{Scheme: scheme, ID: id}
		}
	default:
		return p, fmt.Errorf("roll: unknown ACL %q", cfg.ACL)
	}
	return p, nil
}

// of is the ACL of the node at p.
func (a aclPolicy) of(p string) []zk.ACL {
	if a.all != nil {
		return a.all
	}
	return []zk.ACL{
		{Perms: zk.PermAll, Scheme: a.operator.Scheme, ID: a.operator.ID},
		{Perms: a.agentPerms(p), Scheme: a.agent.Scheme, ID: a.agent.ID},
	}
}

func (a aclPolicy) agentPerms(p string) int32 {
	rel, ok := strings.CutPrefix(p, a.root+"/")
	if !ok {
		return permR // the root and its ancestors
	}
	for _, r := range agentRights {
		if ok, _ := path.Match(r.pattern, rel); ok {
			return r.perms
		}
	}
	return permR
}

// planACLs adds to p an "acl" change for each node under the root whose ACL
// is not the one the policy gives it: a tree made with another ACL (open,
// say) is repaired by the next seed. It reads the ACL of every node of the
// tree, and the list of each that has children.
func (s *Store) planACLs(p *Plan) error {
	var walk func(n string) error
	walk = func(n string) error {
		have, stat, err := s.conn.GetACL(n)
		if errors.Is(err, zk.ErrNoNode) {
			return nil // gone meanwhile: an ephemeral node
		}
		if err != nil {
			return fmt.Errorf("roll: read the ACL of %s: %w%s", n, err, noAuthHint(err))
		}
		if want := s.acls.of(n); !sameACL(have, want) {
			p.Changes = append(p.Changes, Change{Op: "acl", Path: n, Old: formatACL(have), New: formatACL(want), version: stat.Aversion, acl: want})
		}
		if stat.NumChildren == 0 {
			return nil // a leaf, as most nodes are: no list to read
		}
		kids, _, err := s.conn.Children(n)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("roll: list %s: %w%s", n, err, noAuthHint(err))
		}
		slices.Sort(kids)
		for _, k := range kids {
			if err := walk(path.Join(n, k)); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(s.Tree.Root)
}

// applyACLs sets the ACLs the plan changes. A node gone meanwhile (an
// ephemeral one) needs none.
func (s *Store) applyACLs(p *Plan) error {
	for _, ch := range p.Changes {
		if ch.Op != "acl" {
			continue
		}
		_, err := s.conn.SetACL(ch.Path, ch.acl, ch.version)
		switch {
		case err == nil, errors.Is(err, zk.ErrNoNode):
		case errors.Is(err, zk.ErrBadVersion):
			return ErrConcurrentChange
		default:
			return fmt.Errorf("roll: set the ACL of %s: %w%s", ch.Path, err, noAuthHint(err))
		}
	}
	return nil
}

func noAuthHint(err error) string {
	if errors.Is(err, zk.ErrNoAuth) {
		return " (seed needs a credential that may read the tree and change its ACLs: the operator's)"
	}
	return ""
}

func sameACL(a, b []zk.ACL) bool {
	key := func(acl []zk.ACL) []string {
		var out []string
		for _, e := range acl {
			out = append(out, fmt.Sprintf("%s:%s:%d", e.Scheme, e.ID, e.Perms))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// formatACL prints an ACL as ZooKeeper's getAcl does: scheme:id:cdrwa.
func formatACL(acl []zk.ACL) string {
	var parts []string
	for _, e := range acl {
		perms := ""
		for _, p := range []struct {
			bit    int32
			letter string
		}{{zk.PermCreate, "c"}, {zk.PermDelete, "d"}, {zk.PermRead, "r"}, {zk.PermWrite, "w"}, {zk.PermAdmin, "a"}} {
			if e.Perms&p.bit != 0 {
				perms += p.letter
			}
		}
		parts = append(parts, e.Scheme+":"+e.ID+":"+perms)
	}
	return strings.Join(parts, ", ")
}
