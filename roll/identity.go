package roll

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/config"
)

// One machine per host name. A host name is held by one machine, named by
// its machine id (internal/machineid): /hosts/<host> says which machine's
// agent holds the name now, and /members/<svc>/<host> which machine it
// belongs to, for good. Two agents that come up with one name (a cloned
// disk image, a typo) would otherwise take each other's nodes: Register
// lets the first keep them and refuses the second, which reports itself
// under /refused. Equal machine ids are one machine, so two agents without
// a machine id are taken for one, as before machine ids were published.

// ErrHostTaken is wrapped by the error of an agent that may not register:
// another machine holds its host name.
var ErrHostTaken = errors.New("roll: host name held by another machine")

// HostTakenError says which machine holds a host name, and where it says so.
type HostTakenError struct {
	Host    string
	Machine string // this agent's machine id; empty: it has none
	Holder  string // the machine id that holds the name; empty: none published
	// Live: the holder's agent holds a session, and Path is its
	// /hosts/<host>. Otherwise Path is a membership that names the holder.
	Live bool
	Path string
}

func (e *HostTakenError) Unwrap() error { return ErrHostTaken }

func (e *HostTakenError) Error() string {
	if e.Live {
		return fmt.Sprintf("roll: host name %q is in use by %s, whose agent is up (%s), and this is %s: "+
			"refusing to take over its nodes; two machines have the name %s: rename one (host.name), "+
			"or give a cloned machine a machine id of its own",
			e.Host, machineName(e.Holder), e.Path, machineName(e.Machine), e.Host)
	}
	return fmt.Sprintf("roll: host name %q belongs to %s (%s), and this is %s: refusing to take it; "+
		"if %s is retired and this machine replaces it, start this agent with --replace, or run `dcroll forget %s`",
		e.Host, machineName(e.Holder), e.Path, machineName(e.Machine), machineName(e.Holder), e.Host)
}

// machineName names a machine by its id in a message.
func machineName(id string) string {
	if id == "" {
		return "a machine without a machine id"
	}
	return "machine " + id
}

// Claim is what an agent registers: its host name, its machine, its
// services.
type Claim struct {
	Host    string
	Machine string // the machine id; empty: none (see machineName)
	// Services are the host's services: it becomes a member of each.
	Services []string
	// Replace takes the name over from a machine whose agent is down, whose
	// memberships still name it: the operator replaced that machine.
	Replace bool
	// Joined is when the host joined, for a membership it creates.
	Joined time.Time
}

// Registration is what Register did besides registering.
type Registration struct {
	// StaleSession is an earlier session of this machine (an agent
	// restarted before that session expired) whose nodes Register
	// cleared, and Cleared those nodes; 0: none.
	StaleSession int64
	Cleared      []string
	// Replaced is the machine whose memberships the claim took over
	// (Claim.Replace); empty: none.
	Replaced string
	// Adopted are the memberships without a machine id (written by an
	// agent that published none) that now name this machine.
	Adopted []string
}

// Register claims c.Host for c.Machine, then writes the host's presence
// node h and its memberships; Host.MachineID is set to c.Machine. An
// agent calls it once per session, before it writes anything else.
//
// A presence node of another session is left alone unless it names this
// machine: that session is this machine's own, left by an agent restarted
// before it expired, and every ephemeral node it holds under the host's
// name is deleted first (its presence, /current, ready nodes and turns,
// the advancer's election). A presence of another machine, or a
// membership that names another machine, is a *HostTakenError, and
// nothing stays written; with c.Replace a membership of another machine is
// taken over, but never a live presence. A membership without a machine
// id is adopted.
func (s *Store) Register(c Claim, h Host) (Registration, error) {
	var reg Registration
	if !config.ValidName(c.Host) {
		return reg, fmt.Errorf("roll: %q is not a valid host name", c.Host)
	}
	h.MachineID, h.Protocol = c.Machine, s.protocol
	data, err := encode(h)
	if err != nil {
		return reg, err
	}
	presence := s.Tree.Host(c.Host)
	for attempt := 0; attempt < 5; attempt++ {
		raw, stat, err := s.conn.Get(presence)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			// Refuse before the presence shows, even for an instant;
			// claimMemberships checks again once it is held.
			if err := s.checkMemberships(c); err != nil {
				return reg, err
			}
			_, err = s.conn.Create(presence, data, zk.FlagEphemeral, s.acls.of(presence))
			if errors.Is(err, zk.ErrNodeExists) {
				continue // another session registered meanwhile: look again
			}
			if errors.Is(err, zk.ErrNoNode) {
				if serr := s.CheckSeeded(); serr != nil {
					return reg, serr
				}
			}
			if err != nil {
				return reg, fmt.Errorf("roll: create %s: %w", presence, err)
			}
		case err != nil:
			return reg, fmt.Errorf("roll: get %s: %w", presence, err)
		case stat.EphemeralOwner == s.conn.SessionID():
			// Registered earlier in this session (a retry).
			if _, err := s.conn.Set(presence, data, -1); err != nil {
				return reg, fmt.Errorf("roll: set %s: %w", presence, err)
			}
		default:
			var held Host
			if err := decode(presence, raw, &held); err != nil {
				return reg, err
			}
			if held.MachineID != c.Machine {
				return reg, &HostTakenError{Host: c.Host, Machine: c.Machine, Holder: held.MachineID, Live: true, Path: presence}
			}
			// This machine's own earlier session.
			cleared, err := s.clearSession(c.Host, stat.EphemeralOwner)
			if err != nil {
				return reg, err
			}
			reg.StaleSession, reg.Cleared = stat.EphemeralOwner, append(reg.Cleared, cleared...)
			continue
		}
		// The presence is this session's: no other agent of this name
		// gets past the lines above while it lives, so the memberships
		// are this agent's to check and write.
		if err := s.claimMemberships(c, &reg); err != nil {
			var taken *HostTakenError
			if errors.As(err, &taken) {
				// Leave no trace of the refused claim.
				if derr := s.deleteOwned(presence, s.conn.SessionID()); derr != nil {
					return reg, errors.Join(err, derr)
				}
			}
			return reg, err
		}
		return reg, nil
	}
	return reg, fmt.Errorf("roll: register %s: %s keeps changing", c.Host, presence)
}

// checkMemberships refuses c if a membership names another machine and c
// does not replace it. It only reads.
func (s *Store) checkMemberships(c Claim) error {
	if c.Replace {
		return nil
	}
	for _, svc := range c.Services {
		var m Member
		_, err := s.get(s.Tree.Member(svc, c.Host), &m)
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case err != nil:
			return err
		case m.MachineID != "" && m.MachineID != c.Machine:
			return &HostTakenError{Host: c.Host, Machine: c.Machine, Holder: m.MachineID, Path: s.Tree.Member(svc, c.Host)}
		}
	}
	return nil
}

// claimMemberships makes each of c's memberships name c.Machine: it creates
// the missing ones, adopts those without a machine id, and takes over those
// of another machine only with c.Replace.
func (s *Store) claimMemberships(c Claim, reg *Registration) error {
	for _, svc := range c.Services {
		path := s.Tree.Member(svc, c.Host)
		for done := false; !done; {
			var m Member
			stat, err := s.get(path, &m)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				data, err := encode(Member{Joined: c.Joined, MachineID: c.Machine})
				if err != nil {
					return err
				}
				_, err = s.conn.Create(path, data, 0, s.acls.of(path))
				switch {
				case errors.Is(err, zk.ErrNodeExists):
					continue // look again
				case errors.Is(err, zk.ErrNoNode):
					return fmt.Errorf("roll: service %q is not in the catalog (%s is missing): add it to the seed file and run `dcroll seed`", svc, s.Tree.Members(svc))
				case err != nil:
					return fmt.Errorf("roll: create %s: %w", path, err)
				}
				done = true
			case err != nil:
				return err
			case m.MachineID == c.Machine:
				done = true
			case m.MachineID != "" && !c.Replace:
				return &HostTakenError{Host: c.Host, Machine: c.Machine, Holder: m.MachineID, Path: path}
			default:
				was := m.MachineID
				if was != "" {
					m.Joined = c.Joined // another machine: it joins now
				}
				m.MachineID = c.Machine
				data, err := encode(m)
				if err != nil {
					return err
				}
				_, err = s.conn.Set(path, data, stat.Version)
				if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
					continue // changed meanwhile: look again
				}
				if err != nil {
					return fmt.Errorf("roll: set %s: %w", path, err)
				}
				if was == "" {
					reg.Adopted = append(reg.Adopted, svc)
				} else {
					reg.Replaced = was
				}
				done = true
			}
		}
	}
	return nil
}

// clearSession deletes every ephemeral node that session holds under
// host's name, the presence last, and returns their paths. Register calls
// it for a session it knows to be this machine's own earlier one.
func (s *Store) clearSession(host string, session int64) ([]string, error) {
	svcs, _, err := s.conn.Children(s.Tree.Services())
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Services(), err)
	}
	slices.Sort(svcs)
	min, err := s.MinProtocol()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, svc := range svcs {
		paths = append(paths, s.Tree.Current(svc, host), s.Tree.Turn(svc, host))
		if min >= ticketQueue {
			// The ticket, from the host's queued node, then that node.
			if t, ok := s.ticketOfQueued(svc, host, session); ok {
				paths = append(paths, t)
			}
			paths = append(paths, s.Tree.queued(svc, host))
			continue
		}
		names, _, err := s.conn.Children(s.Tree.readyDir(svc))
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return nil, fmt.Errorf("roll: list %s: %w", s.Tree.readyDir(svc), err)
		}
		for _, e := range sortReady(names) {
			if e.Host == host {
				paths = append(paths, s.Tree.readyNode(svc, e.Name))
			}
		}
	}
	refused, _, err := s.conn.Children(s.Tree.Refused())
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Refused(), err)
	}
	for _, name := range refused {
		if h, _, ok := strings.Cut(name, "@"); ok && h == host {
			paths = append(paths, s.Tree.join("refused", name))
		}
	}
	paths = append(paths, s.Tree.advancerPath(), s.Tree.Host(host))
	var cleared []string
	for _, p := range paths {
		deleted, err := s.deleteIfOwned(p, session)
		if err != nil {
			return cleared, err
		}
		if deleted {
			cleared = append(cleared, p)
		}
	}
	return cleared, nil
}

// deleteIfOwned deletes the ephemeral node at path if session holds it, and
// says whether it did.
func (s *Store) deleteIfOwned(path string, session int64) (bool, error) {
	for {
		_, stat, err := s.conn.Get(path)
		if errors.Is(err, zk.ErrNoNode) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("roll: get %s: %w", path, err)
		}
		if stat.EphemeralOwner != session {
			return false, nil
		}
		err = s.conn.Delete(path, stat.Version)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, zk.ErrNoNode):
			return false, nil
		case errors.Is(err, zk.ErrBadVersion):
			continue
		}
		return false, fmt.Errorf("roll: delete %s: %w", path, err)
	}
}

// deleteOwned deletes the ephemeral node at path if session holds it.
func (s *Store) deleteOwned(path string, session int64) error {
	_, err := s.deleteIfOwned(path, session)
	return err
}

// Refusal is the data of /refused/<host>@<machine>: the agent of a machine
// that may not register under its host name, as long as its session lives.
type Refusal struct {
	Host    string `json:"host"`
	Machine string `json:"machine_id,omitempty"`
	// Holder is the machine that holds the name (empty: one that publishes
	// no machine id); HolderUp says whether its agent is up.
	Holder   string    `json:"holder_machine_id,omitempty"`
	HolderUp bool      `json:"holder_up"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
}

// MaxRefusalReason is the longest reason a Refusal carries.
const MaxRefusalReason = 2048

func (r Refusal) validate() error {
	if !config.ValidName(r.Host) {
		return fmt.Errorf("host: %q is not a valid host name", r.Host)
	}
	if len(r.Reason) > MaxRefusalReason {
		return fmt.Errorf("reason: %d bytes, more than %d", len(r.Reason), MaxRefusalReason)
	}
	return validMachineID(r.Machine)
}

// RefusalOf is the refusal that err, a *HostTakenError, describes.
func RefusalOf(err *HostTakenError, since time.Time) Refusal {
	reason := err.Error()
	if len(reason) > MaxRefusalReason {
		reason = reason[:MaxRefusalReason-3] + "..."
	}
	return Refusal{Host: err.Host, Machine: err.Machine, Holder: err.Holder, HolderUp: err.Live, Reason: reason, Since: since}
}

// Refused is the parent of the refusals.
func (t Tree) Refused() string { return t.join("refused") }

// refusedNode is the refusal of host's agent on machine.
func (t Tree) refusedNode(host, machine string) string {
	if machine == "" {
		machine = "none"
	}
	return t.join("refused", host+"@"+machine)
}

// ReportRefused publishes r, ephemeral, for status: the name's holder
// cannot see the machine that was refused, nor can the operator, unless
// it says so. The parent /refused is created on first use.
func (s *Store) ReportRefused(r Refusal) error {
	data, err := encode(r)
	if err != nil {
		return err
	}
	path := s.Tree.refusedNode(r.Host, r.Machine)
	for attempt := 0; attempt < 5; attempt++ {
		_, err := s.conn.Create(path, data, zk.FlagEphemeral, s.acls.of(path))
		switch {
		case err == nil:
			return nil
		case errors.Is(err, zk.ErrNoNode):
			_, err := s.conn.Create(s.Tree.Refused(), nil, 0, s.acls.of(s.Tree.Refused()))
			if errors.Is(err, zk.ErrNoNode) {
				if serr := s.CheckSeeded(); serr != nil {
					return serr
				}
			}
			if err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("roll: create %s: %w", s.Tree.Refused(), err)
			}
			continue
		case !errors.Is(err, zk.ErrNodeExists):
			return fmt.Errorf("roll: create %s: %w", path, err)
		}
		_, stat, err := s.conn.Get(path)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("roll: get %s: %w", path, err)
		}
		if stat.EphemeralOwner == s.conn.SessionID() {
			_, err = s.conn.Set(path, data, stat.Version)
		} else {
			// The node names this machine: an earlier session of it.
			err = s.conn.Delete(path, stat.Version)
		}
		if err == nil && stat.EphemeralOwner == s.conn.SessionID() {
			return nil
		}
		if err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
			return fmt.Errorf("roll: write %s: %w", path, err)
		}
	}
	return fmt.Errorf("roll: create %s: it keeps changing", path)
}

// ClearRefused removes the refusal of host on machine, if any, whichever of
// the machine's sessions published it.
func (s *Store) ClearRefused(host, machine string) error {
	return s.deleteIfPresent(s.Tree.refusedNode(host, machine))
}

// Refusals reads every refusal, by host name.
func (s *Store) Refusals() (map[string][]Refusal, error) {
	names, _, err := s.conn.Children(s.Tree.Refused())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Refused(), err)
	}
	slices.Sort(names)
	out := map[string][]Refusal{}
	bad := map[string]string{}
	for _, name := range names {
		var r Refusal
		p := s.Tree.join("refused", name)
		_, err := s.get(p, &r)
		switch {
		case err == nil:
			out[r.Host] = append(out[r.Host], r)
		case errors.Is(err, zk.ErrNoNode):
		case errors.Is(err, ErrBadNode):
			bad[p] = err.Error()
		default:
			return nil, err
		}
	}
	s.skipBad(s.Tree.Refused(), bad)
	return out, nil
}

// validMachineID checks a published machine id: empty, or 32 hex digits.
func validMachineID(id string) error {
	if id == "" {
		return nil
	}
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("machine_id %.40q: want 32 lowercase hex digits", id)
	}
	return nil
}
