package roll

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/clock"
)

// ErrNotSeeded means the data center's root does not exist yet.
var ErrNotSeeded = errors.New("roll: data center not seeded")

// Store reads and writes one data center's tree. Every znode it creates gets
// its ACL. It holds no state of its own beyond the connection; no
// ZooKeeper type leaves this package.
type Store struct {
	Tree Tree

	conn    conn     // every request of the protocol goes through it
	session *zk.Conn // the session itself: its state, auth, close
	dialer  *reconnectDialer
	ops     *countingConn
	acls    aclPolicy
	// countFront makes the front of a ready queue decide on child counts
	// (see frontCounts) instead of the lists of /members and /current: on
	// in every store dial makes.
	countFront bool
	// protocol is the protocol version this store's agent speaks:
	// ProtocolVersion, except in tests of a mixed fleet.
	protocol int

	// auth is the digest credential, sent once connected.
	auth []byte

	steps   stepCache
	tickets ticketMemo
	// orphanEvery, if set, replaces orphanLookEvery (tests).
	orphanEvery time.Duration
	// resyncs wakes every wait on watches when the connection comes back
	// to a session (see resyncs).
	resyncs resyncs

	// clock is what maintenance windows are judged by: nil, time.Now;
	// tests set it.
	clock func() time.Time

	log   hclog.Logger // nil in tests that build a Store by hand
	skips skips        // children of /current, /members, /hosts left out
}

// conn is the seam between the protocol and ZooKeeper: the requests roll
// makes. A real connection implements it (counting what it sends), and so
// does a test double that injects faults.
type conn interface {
	Get(path string) ([]byte, *zk.Stat, error)
	GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error)
	Children(path string) ([]string, *zk.Stat, error)
	ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error)
	Exists(path string) (bool, *zk.Stat, error)
	ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error)
	Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	CreateProtectedEphemeralSequential(path string, data []byte, acl []zk.ACL) (string, error)
	Set(path string, data []byte, version int32) (*zk.Stat, error)
	Delete(path string, version int32) error
	Multi(ops ...any) ([]zk.MultiResponse, error)
	Sync(path string) (string, error)
	GetACL(path string) ([]zk.ACL, *zk.Stat, error)
	SetACL(path string, acl []zk.ACL, version int32) (*zk.Stat, error)
	SessionID() int64
}

// SessionState is what happened to a store's ZooKeeper session.
type SessionState int

// The session changes a store reports.
const (
	// SessionUp: connected with a session, perhaps a new one (compare IDs).
	SessionUp SessionState = iota + 1
	// SessionDisconnected: the server was lost; the session may live on.
	SessionDisconnected
	// SessionExpired: the session ended, and its ephemeral nodes with it.
	SessionExpired
	// SessionAuthFailed: the ensemble refused the credential.
	SessionAuthFailed
)

// SessionEvent reports a change of the store's session. Events may be
// dropped when nobody reads them in time; Store.Session is the truth.
type SessionEvent struct {
	State  SessionState
	Server string // the server concerned, when known
}

// Session is the store's session as it stands.
type Session struct {
	Up     bool   // connected, with a session
	ID     int64  // the session's ID, when Up
	Server string // the server connected to, when Up
}

// ConnectError is why the last attempt to connect to a server failed, or
// nil when it succeeded: a refused port, a certificate the CA did not
// sign.
func (s *Store) ConnectError() error {
	if s.dialer == nil {
		return nil
	}
	return s.dialer.failure()
}

// Session says whether the store holds a session now, and which.
func (s *Store) Session() Session {
	if s.session.State() != zk.StateHasSession {
		return Session{}
	}
	return Session{Up: true, ID: s.session.SessionID(), Server: s.session.Server()}
}

// The buffers of one ZooKeeper connection. go-zookeeper's defaults, 1.5 MiB
// each way, would cost 30 GB for the 10,000 sessions of a simulated data
// center, and more than a host needs.
const (
	// ReplyBuffer bounds a reply: the largest is a release manifest
	// (MaxManifestData) or the list of a service's /current at 10,000
	// hosts, 10,000 × (4 + the host name) bytes, 680 KB with 64-byte names.
	ReplyBuffer = 1 << 20
	// AgentRequestBuffer bounds what an agent sends: one node of at most
	// MaxNodeData, with its path, in one transaction.
	AgentRequestBuffer = MaxNodeData + 16<<10
	// operatorRequestBuffer bounds what an operator sends: stage writes a
	// manifest.
	operatorRequestBuffer = MaxManifestData + 16<<10
)

// Dial starts connecting to the ensemble named in cfg and returns at once:
// go-zookeeper connects, and reconnects after a loss or a session expiry, in
// the background. The events channel reports session changes; reading it is
// optional (events nobody reads are dropped). Its buffers are sized for an
// agent (see ReplyBuffer).
func Dial(cfg config.ZooKeeper, log hclog.Logger) (*Store, <-chan SessionEvent, error) {
	return dial(cfg, log, AgentRequestBuffer)
}

func dial(cfg config.ZooKeeper, log hclog.Logger, requestBuffer int) (*Store, <-chan SessionEvent, error) {
	acls, auth, err := aclFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	zlog := log.Named("zk").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Debug})
	tlsConfig, err := cfg.ClientTLS()
	if err != nil {
		return nil, nil, fmt.Errorf("roll: %w", err)
	}
	dialer := newReconnectDialer(reconnectSpread(cfg.SessionTimeout))
	if tlsConfig != nil {
		dialer.dialer = tlsDialer(tlsConfig)
	}
	zc, zevents, err := zk.Connect(cfg.Servers, cfg.SessionTimeout, zk.WithLogger(zlog), zk.WithLogInfo(false),
		zk.WithMaxBufferSize(ReplyBuffer), zk.WithMaxConnBufferSize(requestBuffer), zk.WithDialer(dialer.dial))
	if err != nil {
		return nil, nil, fmt.Errorf("roll: connect to %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	counting := &countingConn{Conn: zc}
	s := &Store{Tree: Tree{Root: cfg.Root}, conn: counting, session: zc, dialer: dialer, ops: counting, acls: acls, auth: auth, protocol: ProtocolVersion, log: log.Named("roll"), countFront: true}
	return s, sessionEvents(zevents, &s.resyncs), nil
}

// sessionEvents translates go-zookeeper's events into SessionEvents until
// its channel closes (the store closed), and fires r at each connection to
// a session. It never blocks go-zookeeper.
func sessionEvents(in <-chan zk.Event, r *resyncs) <-chan SessionEvent {
	out := make(chan SessionEvent, 16)
	go func() {
		defer close(out)
		for ev := range in {
			var st SessionState
			switch ev.State {
			case zk.StateHasSession:
				r.fire()
				st = SessionUp
			case zk.StateDisconnected:
				st = SessionDisconnected
			case zk.StateExpired:
				st = SessionExpired
			case zk.StateAuthFailed:
				st = SessionAuthFailed
			default:
				continue
			}
			select {
			case out <- SessionEvent{State: st, Server: ev.Server}:
			default:
			}
		}
	}()
	return out
}

// Authenticate sends the digest credential, if any. It blocks until the
// connection is up or fails, so callers that must not block run it in their
// ZooKeeper goroutine. go-zookeeper resends it after every reconnect.
func (s *Store) Authenticate() error {
	if s.auth == nil {
		return nil
	}
	if err := s.session.AddAuth("digest", s.auth); err != nil {
		return fmt.Errorf("roll: authenticate: %w", err)
	}
	s.auth = nil
	return nil
}

// Close ends the session: every ephemeral node of this store goes at once.
func (s *Store) Close() {
	if s.dialer != nil {
		s.dialer.close() // a reconnect waiting for its turn gives up now
	}
	s.session.Close()
}

// reconnectSpread is the longest a store waits before each connection
// attempt but its first: a random share of one second, as ZooKeeper's own
// client waits, and at most a tenth of the session timeout, so that a
// session can still try every server of a 5-server ensemble in time.
func reconnectSpread(sessionTimeout time.Duration) time.Duration {
	return min(time.Second, sessionTimeout/10)
}

// reconnectDialer dials ZooKeeper servers for go-zookeeper, which retries a
// lost connection at once on the next server: when a server restarts, every
// session it held would land on the others in the same few milliseconds,
// and when the leader restarts, every session of the ensemble would. It
// makes each attempt but the first wait a random time up to spread, so that
// the reconnects of ten thousand hosts spread over that time.
type reconnectDialer struct {
	spread time.Duration
	dialer zk.Dialer
	// wait waits d or until quit is closed, and reports whether d passed.
	wait func(d time.Duration, quit <-chan struct{}) bool

	dialed    atomic.Bool   // the first attempt was made
	quit      chan struct{} // closed by close: the store is closing
	closeOnce sync.Once

	lastErr atomic.Pointer[error] // the last attempt's error; nil after a success
}

func newReconnectDialer(spread time.Duration) *reconnectDialer {
	return &reconnectDialer{spread: spread, dialer: net.DialTimeout, wait: waitOrQuit, quit: make(chan struct{})}
}

// errClosing is what a dial attempt returns once the store is closing.
var errClosing = errors.New("roll: the store is closing")

func (d *reconnectDialer) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	if d.dialed.Swap(true) && !d.wait(clock.Jitter(d.spread), d.quit) {
		return nil, errClosing
	}
	select {
	case <-d.quit:
		return nil, errClosing
	default:
	}
	c, err := d.dialer(network, address, timeout)
	if err != nil {
		d.lastErr.Store(&err)
	} else {
		d.lastErr.Store(nil)
	}
	return c, err
}

// failure is the last connection attempt's error, or nil: what an operator
// needs to see when no session comes (a refused port, a certificate the CA
// did not sign).
func (d *reconnectDialer) failure() error {
	if p := d.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// tlsDialer dials a server's secure client port: the connection it returns
// has done its TLS handshake within timeout and verified the server.
func tlsDialer(cfg *tls.Config) zk.Dialer {
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		d := &tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
		return d.DialContext(ctx, network, address)
	}
}

func (d *reconnectDialer) close() { d.closeOnce.Do(func() { close(d.quit) }) }

func waitOrQuit(d time.Duration, quit <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-quit:
		return false
	}
}

// Ops is the number of requests this store has sent so far, so that tests
// and benchmarks can show what a protocol step costs.
func (s *Store) Ops() int64 { return s.ops.ops.Load() }

func aclFor(cfg config.ZooKeeper) (aclPolicy, []byte, error) {
	var password string
	if cfg.PasswordFile != "" {
		var err error
		if password, err = config.ReadSecret("zookeeper.password_file", cfg.PasswordFile); err != nil {
			return aclPolicy{}, nil, fmt.Errorf("roll: %w", err)
		}
	}
	var auth []byte
	if cfg.User != "" {
		auth = []byte(cfg.User + ":" + password)
	}
	acls, err := newACLPolicy(cfg, password)
	return acls, auth, err
}

// ErrNoSession means ZooKeeper did not give a session in time.
var ErrNoSession = errors.New("roll: no ZooKeeper session")

// awaitSession waits for the first session on events, for at most timeout.
// Operator commands use it; the agent never waits.
func awaitSession(ctx context.Context, events <-chan SessionEvent, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev := <-events:
			switch ev.State {
			case SessionUp:
				return nil
			case SessionAuthFailed:
				return fmt.Errorf("%w: authentication failed", ErrNoSession)
			}
		case <-t.C:
			return fmt.Errorf("%w after %s: is the ensemble up and reachable?", ErrNoSession, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Open dials ZooKeeper and waits up to wait for a session, then
// authenticates: for operator commands, which should fail clearly rather
// than hang when the ensemble is unreachable. The agent uses Dial.
func Open(ctx context.Context, cfg config.ZooKeeper, log hclog.Logger, wait time.Duration) (*Store, error) {
	store, events, err := dial(cfg, log, operatorRequestBuffer)
	if err != nil {
		return nil, err
	}
	if err := awaitSession(ctx, events, wait); err != nil {
		last := store.ConnectError()
		store.Close()
		if last != nil {
			return nil, fmt.Errorf("%w (servers %s; last connection attempt: %v)", err, strings.Join(cfg.Servers, ","), last)
		}
		return nil, fmt.Errorf("%w (servers %s)", err, strings.Join(cfg.Servers, ","))
	}
	if err := store.Authenticate(); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

// resyncs tells the waits on watches that the connection came back to a
// session: a watch set before may have missed a change made meanwhile.
//
// go-zookeeper sets a connection's watches again after a reconnect, with
// the last zxid it has seen: the server fires those whose nodes changed
// after it. But it sends them after the requests queued while it was
// disconnected, and reads that zxid while their answers may already be
// coming in (a data race the race detector reports in the library): the
// zxid can then be newer than a change the client was never told of, and
// the server sets the watch again without firing it. A host at the front
// of a ready queue waiting on the turns was held for good so, and with it
// the deploy (the chaos harness, after a quorum loss). So every wait also
// ends at each reconnect, and reads again; a spurious wake-up costs one
// look.
type resyncs struct {
	mu sync.Mutex
	ch chan zk.Event // closed at the next connection to a session
}

// next is the channel closed at the next connection to a session. A wait
// takes it before the reads whose watches it waits on.
func (r *resyncs) next() <-chan zk.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil {
		r.ch = make(chan zk.Event)
	}
	return r.ch
}

func (r *resyncs) fire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch != nil {
		close(r.ch)
	}
	r.ch = make(chan zk.Event)
}

// watch turns a ZooKeeper watch into a channel that is closed when it
// fires, or when resync is (the connection came back: see resyncs), so
// that no zk type leaves the package.
func watch(ch, resync <-chan zk.Event) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-resync:
		}
		close(out)
	}()
	return out
}

// countingConn is a ZooKeeper connection that counts the requests dcroll
// makes.
type countingConn struct {
	*zk.Conn
	ops atomic.Int64
}

func (c *countingConn) Get(path string) ([]byte, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Get(path)
}

func (c *countingConn) GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	c.ops.Add(1)
	return c.Conn.GetW(path)
}

func (c *countingConn) Children(path string) ([]string, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Children(path)
}

func (c *countingConn) ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	c.ops.Add(1)
	return c.Conn.ChildrenW(path)
}

func (c *countingConn) Exists(path string) (bool, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Exists(path)
}

func (c *countingConn) ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error) {
	c.ops.Add(1)
	return c.Conn.ExistsW(path)
}

func (c *countingConn) Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	c.ops.Add(1)
	return c.Conn.Create(path, data, flags, acl)
}

// CreateProtectedEphemeralSequential counts one request; go-zookeeper may
// retry it after a connection loss.
func (c *countingConn) CreateProtectedEphemeralSequential(path string, data []byte, acl []zk.ACL) (string, error) {
	c.ops.Add(1)
	return c.Conn.CreateProtectedEphemeralSequential(path, data, acl)
}

func (c *countingConn) Set(path string, data []byte, version int32) (*zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Set(path, data, version)
}

func (c *countingConn) Delete(path string, version int32) error {
	c.ops.Add(1)
	return c.Conn.Delete(path, version)
}

// Multi counts one request: the transaction is one round trip.
func (c *countingConn) Multi(ops ...any) ([]zk.MultiResponse, error) {
	c.ops.Add(1)
	return c.Conn.Multi(ops...)
}

func (c *countingConn) Sync(path string) (string, error) {
	c.ops.Add(1)
	return c.Conn.Sync(path)
}

func (c *countingConn) GetACL(path string) ([]zk.ACL, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.GetACL(path)
}

func (c *countingConn) SetACL(path string, acl []zk.ACL, version int32) (*zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.SetACL(path, acl, version)
}
