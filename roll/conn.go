package roll

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
)

// ErrNotSeeded means the data center's root does not exist yet.
var ErrNotSeeded = errors.New("roll: data center not seeded")

// Store reads and writes one data center's tree. Every znode it creates gets
// its ACL. It holds no state of its own beyond the connection.
type Store struct {
	Conn *Conn
	Tree Tree
	ACL  []zk.ACL

	// auth is the digest credential, sent once connected.
	auth []byte
}

// Dial starts connecting to the ensemble named in cfg and returns at once:
// go-zookeeper connects, and reconnects after a loss or a session expiry, in
// the background. The events channel reports every state change and must be
// drained.
func Dial(cfg config.ZooKeeper, log hclog.Logger) (*Store, <-chan zk.Event, error) {
	acl, auth, err := aclFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	zlog := log.Named("zk").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Debug})
	conn, events, err := zk.Connect(cfg.Servers, cfg.SessionTimeout, zk.WithLogger(zlog), zk.WithLogInfo(false))
	if err != nil {
		return nil, nil, fmt.Errorf("roll: connect to %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	return &Store{Conn: &Conn{Conn: conn}, Tree: Tree{Root: cfg.Root}, ACL: acl, auth: auth}, events, nil
}

// Authenticate sends the digest credential, if any. It blocks until the
// connection is up or fails, so callers that must not block run it in their
// ZooKeeper goroutine. go-zookeeper resends it after every reconnect.
func (s *Store) Authenticate() error {
	if s.auth == nil {
		return nil
	}
	if err := s.Conn.AddAuth("digest", s.auth); err != nil {
		return fmt.Errorf("roll: authenticate: %w", err)
	}
	s.auth = nil
	return nil
}

// Close ends the session: every ephemeral node of this store goes at once.
func (s *Store) Close() { s.Conn.Close() }

func aclFor(cfg config.ZooKeeper) ([]zk.ACL, []byte, error) {
	var password string
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, nil, fmt.Errorf("roll: zookeeper.password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
		if password == "" {
			return nil, nil, fmt.Errorf("roll: zookeeper.password_file %s is empty", cfg.PasswordFile)
		}
	}
	var auth []byte
	if cfg.User != "" {
		auth = []byte(cfg.User + ":" + password)
	}
	switch cfg.ACL {
	case "open":
		return zk.WorldACL(zk.PermAll), auth, nil
	case "digest":
		return zk.DigestACL(zk.PermAll, cfg.User, password), auth, nil
	case "digest+read":
		acl := zk.DigestACL(zk.PermAll, cfg.User, password)
		return append(acl, zk.WorldACL(zk.PermRead)...), auth, nil
	}
	return nil, nil, fmt.Errorf("roll: unknown ACL %q", cfg.ACL)
}

// ErrNoSession means ZooKeeper did not give a session in time.
var ErrNoSession = errors.New("roll: no ZooKeeper session")

// AwaitSession waits for the first session on events, for at most timeout.
// Operator commands use it; the agent never waits.
func AwaitSession(ctx context.Context, events <-chan zk.Event, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				// Keep draining, so go-zookeeper never blocks on the channel.
				go func() {
					for range events {
					}
				}()
				return nil
			}
			if ev.State == zk.StateAuthFailed {
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
	store, events, err := Dial(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := AwaitSession(ctx, events, wait); err != nil {
		store.Close()
		return nil, fmt.Errorf("%w (servers %s)", err, strings.Join(cfg.Servers, ","))
	}
	if err := store.Authenticate(); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

// Conn is a ZooKeeper connection that counts the requests dcroll makes, so
// that tests and benchmarks can show what a protocol step costs.
type Conn struct {
	*zk.Conn
	ops atomic.Int64
}

// Ops is the number of requests sent so far.
func (c *Conn) Ops() int64 { return c.ops.Load() }

func (c *Conn) Get(path string) ([]byte, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Get(path)
}

func (c *Conn) GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	c.ops.Add(1)
	return c.Conn.GetW(path)
}

func (c *Conn) Children(path string) ([]string, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Children(path)
}

func (c *Conn) ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	c.ops.Add(1)
	return c.Conn.ChildrenW(path)
}

func (c *Conn) Exists(path string) (bool, *zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Exists(path)
}

func (c *Conn) ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error) {
	c.ops.Add(1)
	return c.Conn.ExistsW(path)
}

func (c *Conn) Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	c.ops.Add(1)
	return c.Conn.Create(path, data, flags, acl)
}

// CreateProtectedEphemeralSequential counts one request; go-zookeeper may
// retry it after a connection loss.
func (c *Conn) CreateProtectedEphemeralSequential(path string, data []byte, acl []zk.ACL) (string, error) {
	c.ops.Add(1)
	return c.Conn.CreateProtectedEphemeralSequential(path, data, acl)
}

func (c *Conn) Set(path string, data []byte, version int32) (*zk.Stat, error) {
	c.ops.Add(1)
	return c.Conn.Set(path, data, version)
}

func (c *Conn) Delete(path string, version int32) error {
	c.ops.Add(1)
	return c.Conn.Delete(path, version)
}

// Multi counts one request: the transaction is one round trip.
func (c *Conn) Multi(ops ...any) ([]zk.MultiResponse, error) {
	c.ops.Add(1)
	return c.Conn.Multi(ops...)
}
