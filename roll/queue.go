package roll

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/go-zookeeper/zk"
)

// The ready queue comes in two forms, and the root's min_protocol says
// which one a data center uses.
//
// Below protocol 2, a ready node is a protected ephemeral-sequential node
// named after its host, "_c_<guid>-<host>-<seq>". A host finds its
// predecessor by listing the queue: at each join, and each time its
// predecessor goes. With N hosts joining at once that is N lists of up to N
// names, and another list of up to N names at every turn.
//
// From protocol 2 on, a ready node is a ticket, "t-<seq>", whose data names
// the host, and /staging/<svc>/queued/<host>, made and removed in the same
// transactions, names the queued hosts for status, and then the host's
// ticket for a restarted agent's Register. The queue directory's
// own data records the ticket that took the last turn (QueueHead.Admitted),
// written in the transaction that takes it.
// Tickets only grow, and every ticket below the admitted one is gone (only
// the front takes turns), so a host's predecessor is the nearest ticket
// below its own, above the admitted one, that still exists. It finds it by
// trying names, one request each, without listing the queue: the ticket just
// below its own almost always exists (the hosts joined in a row) or is the
// admitted one. A ZooKeeper sequence number counts every change of the
// directory's children, deletions too, so a host that joins while turns are
// taken meets gaps: one request per turn taken between its join and its
// predecessor's.

// ticketQueue is the first protocol version whose agents queue by ticket.
const ticketQueue = 2

// ticketPrefix starts the name of every ticket.
const ticketPrefix = "t-"

// QueueHead is the data of a ticket queue's directory,
// /staging/<svc>/ready.
type QueueHead struct {
	// Admitted is the ticket that took the last turn: every ticket up to
	// it has left the queue. -1 (or no data): none yet.
	Admitted int64 `json:"admitted"`
}

func (h QueueHead) validate() error {
	if h.Admitted < -1 {
		return fmt.Errorf("admitted %d is below -1", h.Admitted)
	}
	return nil
}

// Queued is the data of /staging/<svc>/queued/<host>: the host's ticket,
// written just after it is taken (empty until then).
type Queued struct {
	Ticket string `json:"ticket"`
}

func (q Queued) validate() error {
	if _, ok := parseTicket(q.Ticket); !ok {
		return fmt.Errorf("ticket %q is not a ticket's name", q.Ticket)
	}
	return nil
}

// ticketOfQueued reads which ticket session holds for host in svc's queue,
// from the host's queued node.
func (s *Store) ticketOfQueued(svc, host string, session int64) (string, bool) {
	var q Queued
	stat, err := s.getOptional(s.Tree.queued(svc, host), &q)
	if err != nil || stat.EphemeralOwner != session || q.Ticket == "" {
		return "", false
	}
	return s.Tree.readyNode(svc, q.Ticket), true
}

// ticketName is the node name of ticket seq.
func ticketName(seq int64) string { return fmt.Sprintf("%s%010d", ticketPrefix, seq) }

// parseTicket reads the ticket number from a ticket's node name.
func parseTicket(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, ticketPrefix)
	if !ok || len(digits) != 10 {
		return 0, false
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	return seq, err == nil && seq >= 0
}

// isTicket says whether the ready node at p is a ticket.
func isTicket(p string) bool {
	_, ok := parseTicket(path.Base(p))
	return ok
}

// queueHead reads the ticket queue's directory: the admitted ticket, and
// its child version (the next ticket is at least that). ErrLeftQueue: the
// queue is gone.
func (s *Store) queueHead(svc string) (QueueHead, *zk.Stat, error) {
	dir := s.Tree.readyDir(svc)
	data, stat, err := s.conn.Get(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return QueueHead{}, nil, ErrLeftQueue
	}
	if err != nil {
		return QueueHead{}, nil, fmt.Errorf("roll: get %s: %w", dir, err)
	}
	h := QueueHead{Admitted: -1}
	if len(data) > 0 {
		if err := decode(dir, data, &h); err != nil {
			return QueueHead{}, nil, err
		}
	}
	return h, stat, nil
}

// joinTicket takes a ticket in svc's ready queue for r.Host. The ticket
// this store took last for that host and svc, in this session, goes first: after a connection loss
// the session, and the node, may live on, and the host would wait behind
// itself.
func (s *Store) joinTicket(svc string, r Ready) (string, error) {
	data, err := encode(r)
	if err != nil {
		return "", err
	}
	if err := s.dropLastTicket(svc, r.Host); err != nil {
		return "", fmt.Errorf("roll: join the ready queue of %s: remove the earlier ticket: %w", svc, err)
	}
	_, before, err := s.queueHead(svc)
	if err != nil {
		return "", fmt.Errorf("roll: join the ready queue of %s: %w", svc, err)
	}
	take := func() ([]zk.MultiResponse, error) {
		return s.conn.Multi(
			&zk.CreateRequest{Path: s.Tree.readyNode(svc, ticketPrefix), Data: data, Acl: s.acls.of(s.Tree.readyNode(svc, ticketPrefix)), Flags: zk.FlagEphemeral | zk.FlagSequence},
			&zk.CreateRequest{Path: s.Tree.queued(svc, r.Host), Acl: s.acls.of(s.Tree.queued(svc, r.Host)), Flags: zk.FlagEphemeral},
		)
	}
	res, err := take()
	if errors.Is(err, zk.ErrNoNode) {
		// Staged before the ticket queue: no queued directory yet.
		if _, err := s.conn.Create(s.Tree.queuedDir(svc), nil, 0, s.acls.of(s.Tree.queuedDir(svc))); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return "", fmt.Errorf("roll: join the ready queue of %s: %w", svc, err)
		}
		res, err = take()
	}
	var p string
	switch {
	case err == nil:
		p = res[0].String
	case lostAnswer(err):
		// Whether the join happened is not known until the ticket is
		// found or not: until then the next join looks for it first.
		s.setLastTicket(svc, r.Host, lastTicket{session: s.conn.SessionID(), from: before.Cversion, unknown: true})
		p, err = s.findTicket(svc, before.Cversion)
		if err == nil && p == "" {
			err = zk.ErrConnectionClosed // it did not happen
		}
	case errors.Is(err, zk.ErrNodeExists):
		err = fmt.Errorf("%w: %s is queued by another session, which ends soon", err, r.Host)
	}
	if err != nil {
		return "", fmt.Errorf("roll: join the ready queue of %s: %w", svc, err)
	}
	s.setLastTicket(svc, r.Host, lastTicket{session: s.conn.SessionID(), path: p})
	// The queued node names the ticket for the Register of an agent of
	// this machine restarted before this session ends. Without it that
	// ticket waits for the session's end, or for the host to find it.
	if q, err := encode(Queued{Ticket: path.Base(p)}); err == nil {
		_, _ = s.conn.Set(s.Tree.queued(svc, r.Host), q, -1)
	}
	return p, nil
}

// leaveTicket removes a ticket and its host's queued node, if this session
// holds them.
func (s *Store) leaveTicket(ticket string) error {
	data, stat, err := s.conn.Get(ticket)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil
	case err != nil:
		return fmt.Errorf("roll: get %s: %w", ticket, err)
	}
	var r Ready
	if decode(ticket, data, &r) == nil {
		svc := path.Base(path.Dir(path.Dir(ticket)))
		if err := s.deleteOwned(s.Tree.queued(svc, r.Host), stat.EphemeralOwner); err != nil {
			return err
		}
	}
	return s.deleteOwned(ticket, stat.EphemeralOwner)
}

// dropLastTicket removes the ticket this store took last for host in svc,
// and the host's queued node, if this session holds them: after a
// connection loss the session, and the nodes, may live on, and the host
// would wait behind itself. A join whose answer was lost and whose ticket
// was not found then is looked for again.
func (s *Store) dropLastTicket(svc, host string) error {
	last, ok := s.lastTicket(svc, host)
	session := s.conn.SessionID()
	if !ok || last.session != session || (last.path == "" && !last.unknown) {
		// None in this session (a queued node is made only with a
		// ticket this store records), or of an earlier one: gone with it.
		return nil
	}
	if last.unknown {
		p, err := s.findTicket(svc, last.from)
		if err != nil {
			return err
		}
		last.path = p
	}
	for _, p := range []string{last.path, s.Tree.queued(svc, host)} {
		if p == "" {
			continue
		}
		if err := s.deleteOwned(p, session); err != nil {
			return err
		}
	}
	s.setLastTicket(svc, host, lastTicket{session: session})
	return nil
}

// findTicket finds the ticket a create whose answer was lost may have made:
// its number lies between the directory's child version before the create
// and now, and this session owns it; "" if there is none (the create did
// not happen).
func (s *Store) findTicket(svc string, from int32) (string, error) {
	dir := s.Tree.readyDir(svc)
	if _, err := s.conn.Sync(dir); err != nil {
		return "", err
	}
	_, now, err := s.queueHead(svc)
	if err != nil {
		return "", err
	}
	for seq := int64(from); seq < int64(now.Cversion); seq++ {
		p := s.Tree.readyNode(svc, ticketName(seq))
		ok, stat, err := s.conn.Exists(p)
		if err != nil {
			return "", fmt.Errorf("roll: exists %s: %w", p, err)
		}
		if ok && stat.EphemeralOwner == s.conn.SessionID() {
			return p, nil
		}
	}
	return "", nil
}

// awaitTicket returns once host's ticket at readyPath is the front of svc's
// ready queue. It watches only its predecessor, and reads the queue's head
// when the predecessor goes, to tell a turn taken from a host that left.
func (s *Store) awaitTicket(ctx context.Context, svc, host, readyPath string) error {
	mine, _ := parseTicket(path.Base(readyPath))
	head, _, err := s.queueHead(svc)
	if err != nil {
		return err
	}
	below := mine - 1
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if below <= head.Admitted {
			return nil
		}
		p := s.Tree.readyNode(svc, ticketName(below))
		resync := s.resyncs.next()
		// A data watch on a ticket that does not exist is not set: the
		// gaps between tickets leave no watches behind.
		data, stat, ch, err := s.conn.GetW(p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			below--
			continue
		case err != nil:
			return fmt.Errorf("roll: watch the predecessor %s: %w", p, err)
		case ticketOf(p, data) == host:
			// A ticket of this host ahead of its own: a join of this
			// session whose answer was lost, or one of an earlier session
			// of this machine (Register made the name this machine's, and
			// cleared that session's other nodes; a ticket does not name
			// its host, so it is found here). It goes; the host would
			// wait behind itself.
			if err := s.deleteOwned(p, stat.EphemeralOwner); err != nil {
				return err
			}
			continue
		}
		if s.log != nil {
			s.log.Debug("waiting behind a ticket", "service", svc, "ticket", path.Base(readyPath), "predecessor", path.Base(p), "of", ticketOf(p, data), "session", fmt.Sprintf("%#x", stat.EphemeralOwner))
		}
		if err := waitAnyOrTimeout(ctx, s.orphanLook()+clock.Jitter(s.orphanLook()/4), ch, resync); err != nil {
			return err
		}
		if !fired(ch) && !fired(resync) {
			// A long wait: is the predecessor's host still waiting on it?
			if err := s.dropOrphan(svc, p, data, stat); err != nil {
				return err
			}
			continue
		}
		// The predecessor is gone (its ticket is never used again), or
		// the connection came back to the session (see resyncs) and it
		// is looked at again. Gone: did it take its turn, or leave? And
		// is this host still queued? The turn's state is read only after
		// this look at admitted, never with it: reads made together with
		// it may come before the take that makes this host the front (the
		// chaos checker saw db's quorum broken when they did).
		var ok bool
		err = parallel(
			func() (err error) { head, _, err = s.queueHead(svc); return err },
			s.exists(readyPath, &ok))
		if err != nil {
			return err
		}
		if !ok {
			return ErrLeftQueue
		}
		if fired(ch) {
			below--
		}
	}
}

// orphanLookEvery is how long a host waits on its predecessor's ticket
// before it checks that the ticket's host still waits on it (see
// dropOrphan): a rare check, so that the hosts in a long queue add little.
const orphanLookEvery = time.Minute

func (s *Store) orphanLook() time.Duration {
	if s.orphanEvery > 0 {
		return s.orphanEvery
	}
	return orphanLookEvery
}

// dropOrphan removes the predecessor ticket p (data and stat as read) if
// its host has since queued with another ticket: the queued node names a
// host's live ticket, and a host holds one. Such an orphan is left by a
// join whose answer was lost and that the host could not find again; it
// would hold every host behind it for as long as the host's session
// lives. The chaos harness saw one after a quorum loss: a join committed
// while the host was told the servers were unreachable.
func (s *Store) dropOrphan(svc, p string, data []byte, stat *zk.Stat) error {
	h := ticketOf(p, data)
	if h == "" {
		return nil
	}
	var q Queued
	_, err := s.getOptional(s.Tree.queued(svc, h), &q)
	switch {
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		return nil
	case err != nil:
		return err
	}
	if q.Ticket == "" || q.Ticket == path.Base(p) {
		return nil
	}
	if s.log != nil {
		s.log.Warn("removing a ticket its host left behind", "service", svc, "ticket", path.Base(p), "of", h, "queued_with", q.Ticket)
	}
	return s.deleteOwned(p, stat.EphemeralOwner)
}

// fired reports whether a watch has fired, without waiting.
func fired(ch <-chan zk.Event) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// queuedHosts names the hosts in svc's ready queue, in no order, from two
// lists: the named nodes of the queue's older form, and the queued
// directory.
func (s *Store) queuedHosts(r *reader, svc string) ([]string, error) {
	names, err := r.children(s.Tree.readyDir(svc), false)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, e := range sortReady(names) {
		hosts = append(hosts, e.Host)
	}
	queued, err := r.children(s.Tree.queuedDir(svc), false)
	if err != nil {
		return nil, err
	}
	return append(hosts, queued...), nil
}

// ticketMemo remembers the ticket a store took last, per service and host.
type ticketMemo struct {
	mu   sync.Mutex
	last map[[2]string]lastTicket
}

// lastTicket is the ticket a store took last for a host, in session; or,
// when a connection loss swallowed the join's answer (unknown), where to
// look for it: from the queue's child version before the join.
type lastTicket struct {
	session int64
	path    string
	from    int32
	unknown bool
}

func (s *Store) lastTicket(svc, host string) (lastTicket, bool) {
	s.tickets.mu.Lock()
	defer s.tickets.mu.Unlock()
	t, ok := s.tickets.last[[2]string{svc, host}]
	return t, ok
}

func (s *Store) setLastTicket(svc, host string, t lastTicket) {
	s.tickets.mu.Lock()
	defer s.tickets.mu.Unlock()
	if s.tickets.last == nil {
		s.tickets.last = map[[2]string]lastTicket{}
	}
	s.tickets.last[[2]string{svc, host}] = t
}

// ticketOf is the host a ticket's data names ("" if none).
func ticketOf(p string, data []byte) string {
	var r Ready
	if decode(p, data, &r) != nil {
		return ""
	}
	return r.Host
}

// ticketQueue lists a ticket queue in ticket order, reading each ticket for
// its host: N requests, for status's full view only.
func (s *Store) ticketQueue(svc string, names []string) ([]ReadyEntry, error) {
	var q []ReadyEntry
	for _, name := range names {
		seq, ok := parseTicket(name)
		if !ok {
			continue
		}
		var r Ready
		_, err := s.getOptional(s.Tree.readyNode(svc, name), &r)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // it took its turn, or left, meanwhile
		case err != nil:
			return nil, err
		}
		q = append(q, ReadyEntry{Name: name, Host: r.Host, Seq: seq})
	}
	slices.SortFunc(q, func(a, b ReadyEntry) int { return int(a.Seq - b.Seq) })
	return q, nil
}
