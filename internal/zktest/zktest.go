// Package zktest runs real ZooKeeper servers for dcroll's integration tests.
//
// dcroll coordinates rolling upgrades through ZooKeeper, and much of what can
// go wrong (sessions expiring, leaders changing, servers restarting in the
// middle of an upgrade) only shows against a real server. Standalone starts a
// single server and Ensemble starts a quorum of several; both return a
// Cluster whose servers can be stopped and restarted to simulate failures.
//
// Each server is a separate JVM running the ZooKeeper jar, with its own
// directory under the test's t.TempDir() (configuration, data and a log file
// with the JVM's output) and its own free ports on 127.0.0.1 (EnsembleAt
// puts each server on an address of its own instead). EnsembleObservers adds
// observers: servers that serve clients and forward their writes but do not
// vote. StandaloneTLS serves clients over TLS only, with certificates of a
// PKI made for the test (NewPKI) and x509 authentication. Everything is
// killed when the test ends, whether it passed or not. If ZooKeeper or Java
// is not installed the test is skipped. The jar defaults to the one of the
// Debian package (/usr/share/java/zookeeper.jar); the environment variable
// ZOOKEEPER_JAR overrides it. Its value is passed to java -cp, so it may name
// a jar whose manifest lists its dependencies (as Debian's does) or a
// classpath such as "/opt/zookeeper/lib/*".
//
// A Cluster is meant to be used from the test goroutine: Start, Stop and
// WaitReady fail the test through the testing.TB they are given or the
// Cluster was created with.
package zktest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/freeport"
	"github.com/dcroll/dcroll/internal/zkjar"
)

const (
	// readyTimeout bounds how long a server may take to start serving.
	readyTimeout = 30 * time.Second
	// pollInterval is how often readiness is checked.
	pollInterval = 50 * time.Millisecond
	// startAttempts is how often a cluster is started with fresh ports
	// when a server dies during startup (usually because another process
	// took one of its ports).
	startAttempts = 3
)

// Modes of a serving server, as Cluster.Mode reports them.
const (
	ModeStandalone = "standalone"
	ModeLeader     = "leader"
	ModeFollower   = "follower"
	ModeObserver   = "observer"
)

// skipMessage is given to t.Skip when ZooKeeper cannot be run.
const skipMessage = "zookeeper is not installed: run `apt-get install -y zookeeper` (Debian) to run the integration tests"

// Cluster is a set of running ZooKeeper servers: a single standalone server
// or the members of an ensemble. Servers are numbered from 0 in the order of
// Servers.
type Cluster struct {
	t         testing.TB
	java      string
	classpath string
	ensemble  bool
	servers   []*server
	// hosts and wrap are EnsembleAt's: the servers' addresses, and what
	// turns a JVM's command line into the one to run.
	hosts []string
	wrap  func(index int, argv []string) []string
	// heap is the JVMs' -Xmx; empty: the small default of jvmFlags.
	heap string
	// observers is how many of the servers, the last ones, are observers.
	observers int
	// tls is StandaloneTLS's: the server serves TLS only.
	tls *TLS
}

// Standalone starts a single ZooKeeper server in standalone mode and waits
// until it serves requests. The server is killed when the test ends.
func Standalone(t testing.TB) *Cluster {
	t.Helper()
	return newCluster(t, 1, false)
}

// Ensemble starts an ensemble of n ZooKeeper servers (n >= 2; 3 is the usual
// choice) and waits until every server serves requests as leader or follower.
// The servers are killed when the test ends.
func Ensemble(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 2 {
		t.Fatalf("zktest: an ensemble needs at least 2 servers, got %d; use Standalone for one", n)
		return nil
	}
	return newCluster(t, n, true)
}

// Well-known ZooKeeper ports, which EnsembleAt's servers use: each has an
// address of its own.
const (
	clientPort   = 2181
	peerPort     = 2888
	electionPort = 3888
)

// EnsembleAt starts an ensemble of one server per address in hosts (at least
// 2), each listening on that address with ZooKeeper's usual ports 2181, 2888
// and 3888. wrap, if not nil, turns each server's command line into the one
// to run, for example to run it in a network namespace of its own where its
// address lives: wrap(i, argv) for server i. Apart from that it is Ensemble.
func EnsembleAt(t testing.TB, hosts []string, wrap func(index int, argv []string) []string) *Cluster {
	t.Helper()
	if len(hosts) < 2 {
		t.Fatalf("zktest: an ensemble needs at least 2 servers, got %d", len(hosts))
		return nil
	}
	return newClusterOpts(t, len(hosts), 0, true, hosts, wrap, "")
}

// EnsembleHeap is Ensemble with each JVM's maximum heap set to heap (as
// java's -Xmx takes it, "2g"): for tests that hold thousands of sessions.
func EnsembleHeap(t testing.TB, n int, heap string) *Cluster {
	t.Helper()
	if n < 2 {
		t.Fatalf("zktest: an ensemble needs at least 2 servers, got %d; use Standalone for one", n)
		return nil
	}
	return newClusterOpts(t, n, 0, true, nil, nil, heap)
}

// EnsembleObservers starts an ensemble of voters voting servers (at least 2)
// and observers observers, which follow the leader without voting: they
// serve reads and watches themselves and forward writes to the leader. The
// observers are the last servers, voters to voters+observers-1; heap is as
// for EnsembleHeap ("" for the default).
func EnsembleObservers(t testing.TB, voters, observers int, heap string) *Cluster {
	t.Helper()
	if voters < 2 || observers < 0 {
		t.Fatalf("zktest: an ensemble needs at least 2 voting servers and no negative count of observers, got %d and %d", voters, observers)
		return nil
	}
	return newClusterOpts(t, voters+observers, observers, true, nil, nil, heap)
}

// Observers returns the client addresses of the observers, running or
// stopped; none unless the cluster was started by EnsembleObservers.
func (c *Cluster) Observers() []string {
	var addrs []string
	for _, s := range c.servers {
		if s.observer {
			addrs = append(addrs, s.clientAddr())
		}
	}
	return addrs
}

// Voters returns the indexes of the voting servers: all but the observers.
func (c *Cluster) Voters() []int {
	var is []int
	for i, s := range c.servers {
		if !s.observer {
			is = append(is, i)
		}
	}
	return is
}

// jvmFlags are the JVMs' options, with the cluster's heap.
func (c *Cluster) jvmFlags() []string { return zkjar.JVMFlags(c.heap) }

// PID is the process id of server i's JVM, or 0 when it is stopped.
func (c *Cluster) PID(i int) int {
	s, ok := c.server(i)
	if !ok {
		return 0
	}
	p := s.currentProcess()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// FourLetterWord sends cmd ("mntr", "wchs", ...) to server i and returns
// its answer.
func (c *Cluster) FourLetterWord(i int, cmd string) (string, error) {
	s, ok := c.server(i)
	if !ok {
		return "", fmt.Errorf("zktest: no server %d", i)
	}
	return s.fourLetterWord(cmd)
}

func newCluster(t testing.TB, n int, ensemble bool) *Cluster {
	t.Helper()
	return newClusterOpts(t, n, 0, ensemble, nil, nil, "")
}

func newClusterOpts(t testing.TB, n, observers int, ensemble bool, hosts []string, wrap func(int, []string) []string, heap string) *Cluster {
	t.Helper()
	return startCluster(t, n, &Cluster{t: t, ensemble: ensemble, hosts: hosts, wrap: wrap, heap: heap, observers: observers})
}

func newClusterTLS(t testing.TB, opts *TLS) *Cluster {
	t.Helper()
	return startCluster(t, 1, &Cluster{t: t, tls: opts})
}

// startCluster starts c's n servers.
func startCluster(t testing.TB, n int, c *Cluster) *Cluster {
	t.Helper()
	java, classpath, err := lookupZooKeeper()
	if err != nil {
		t.Skipf("%s (%v)", skipMessage, err)
		return nil
	}
	c.java, c.classpath = java, classpath

	// t.TempDir registers its removal before c.stopAll is registered, so
	// the servers are killed before their directories are removed.
	root := t.TempDir()
	t.Cleanup(c.stopAll)

	for attempt := 1; ; attempt++ {
		err := c.start(root, n)
		if err == nil {
			return c
		}
		c.stopAll()
		var exited *exitedError
		if !errors.As(err, &exited) || attempt == startAttempts {
			t.Fatalf("zktest: start %d ZooKeeper server(s) (attempt %d of %d): %v", n, attempt, startAttempts, err)
			return nil
		}
		t.Logf("zktest: retrying with new ports: %v", err)
	}
}

// lookupZooKeeper finds the java binary and the classpath of the server:
// the jar ZOOKEEPER_JAR names, else Debian's.
func lookupZooKeeper() (java, classpath string, err error) {
	return zkjar.Lookup(os.Getenv(zkjar.Env))
}

// start creates n servers with fresh directories and ports under root,
// starts them and waits until all of them serve.
func (c *Cluster) start(root string, n int) error {
	ports, err := freeport.Ports(3 * n)
	if err != nil {
		return err
	}
	c.servers = make([]*server, n)
	for i := range c.servers {
		dir := filepath.Join(root, fmt.Sprintf("zk%d", i+1))
		// A previous attempt may have left data behind.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clean server directory: %w", err)
		}
		c.servers[i] = &server{
			index:        i,
			dir:          dir,
			host:         "127.0.0.1",
			clientPort:   ports[3*i],
			peerPort:     ports[3*i+1],
			electionPort: ports[3*i+2],
			observer:     i >= n-c.observers,
		}
		if c.hosts != nil {
			s := c.servers[i]
			s.host, s.clientPort, s.peerPort, s.electionPort = c.hosts[i], clientPort, peerPort, electionPort
		}
		if c.tls != nil {
			c.servers[i].tls = newTLSServer(c.t, c.tls)
		}
	}
	for _, s := range c.servers {
		if err := s.writeConfig(c.servers, c.ensemble); err != nil {
			return fmt.Errorf("server %d: %w", s.index, err)
		}
	}
	for _, s := range c.servers {
		if err := s.start(c.java, c.classpath, c.jvmFlags(), c.wrap); err != nil {
			return err
		}
	}
	return c.waitReady(c.servers)
}

// Servers returns the client addresses ("host:port") of all servers,
// running or stopped.
func (c *Cluster) Servers() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.clientAddr()
	}
	return addrs
}

// ConnString returns the client addresses of all servers joined by commas,
// the usual form of a ZooKeeper connection string.
func (c *Cluster) ConnString() string {
	return strings.Join(c.Servers(), ",")
}

// Stop kills server i (SIGKILL, like a crash) and waits until its process has
// exited. Stopping a stopped server does nothing.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	s, ok := c.server(i)
	if !ok {
		return
	}
	s.stop()
}

// Start restarts server i, which must be stopped, with its data directory and
// ports, and waits until it serves: in standalone mode, or as leader,
// follower or observer in an ensemble.
//
// Beware of clients that reconnect to a standalone server while it starts:
// ZooKeeper 3.8.0 fails to close connections that arrive before it has
// loaded its data (a NullPointerException in ZooKeeperServer.removeCnxn),
// and github.com/go-zookeeper/zk then waits ten times two thirds of the
// session timeout for an answer before it tries again, long enough for the
// session to expire. Connect after Start returns, or give the client other
// servers to turn to.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	s, ok := c.server(i)
	if !ok {
		return
	}
	if s.running() {
		c.t.Fatalf("zktest: start server %d: it is already running", i)
		return
	}
	err := s.start(c.java, c.classpath, c.jvmFlags(), c.wrap)
	if err == nil {
		err = c.waitReady([]*server{s})
	}
	if err != nil {
		c.t.Fatalf("zktest: restart server %d: %v", i, err)
	}
}

// WaitReady waits until every running server serves, and in an ensemble
// until one of them is the leader. It fails t if that does not happen within
// 30 seconds.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	var running []*server
	for _, s := range c.servers {
		if s.running() {
			running = append(running, s)
		}
	}
	if err := c.waitReady(running); err != nil {
		t.Fatalf("zktest: %v", err)
	}
}

// Leader returns the index of the server that currently reports itself as
// leader, or -1 if none does (always -1 for a standalone server).
func (c *Cluster) Leader() int {
	for i := range c.servers {
		if c.Mode(i) == ModeLeader {
			return i
		}
	}
	return -1
}

// Mode returns the mode server i reports through the srvr four-letter word:
// ModeStandalone, ModeLeader, ModeFollower or ModeObserver. It returns "" if the server is
// stopped or does not serve requests at the moment.
func (c *Cluster) Mode(i int) string {
	s, ok := c.server(i)
	if !ok || !s.running() {
		return ""
	}
	mode, err := s.mode()
	if err != nil {
		return ""
	}
	return mode
}

// server returns server i, failing the test if there is no such server.
func (c *Cluster) server(i int) (*server, bool) {
	if i < 0 || i >= len(c.servers) {
		c.t.Fatalf("zktest: no server %d: the cluster has servers 0 to %d", i, len(c.servers)-1)
		return nil, false
	}
	return c.servers[i], true
}

// waitReady waits until each of servers serves in the mode expected for the
// cluster and, in an ensemble, one of the running servers is the leader. It
// returns an *exitedError as soon as a server's process exits.
func (c *Cluster) waitReady(servers []*server) error {
	var notReady *server
	err := poll(readyTimeout, func() error {
		for _, s := range servers {
			notReady = s
			if s.exited() {
				return &exitedError{msg: fmt.Sprintf("server %d (%s) exited: %v%s",
					s.index, s.clientAddr(), s.exitErr(), s.logTail())}
			}
			mode, err := s.mode()
			if err != nil {
				return err
			}
			if !c.servesIn(s, mode) {
				return fmt.Errorf("it reports mode %q", mode)
			}
		}
		notReady = nil
		if c.ensemble && len(servers) > 0 && c.Leader() < 0 {
			return errors.New("no running server is the leader")
		}
		return nil
	})
	var exited *exitedError
	switch {
	case err == nil || errors.As(err, &exited):
		return err
	case notReady == nil:
		return fmt.Errorf("the ensemble did not elect a leader within %v: %w", readyTimeout, err)
	default:
		return fmt.Errorf("server %d (%s) did not serve within %v: %w%s",
			notReady.index, notReady.clientAddr(), readyTimeout, err, notReady.logTail())
	}
}

// servesIn tells whether server s, which reports mode, is ready.
func (c *Cluster) servesIn(s *server, mode string) bool {
	switch {
	case !c.ensemble:
		return mode == ModeStandalone
	case s.observer:
		return mode == ModeObserver
	}
	return mode == ModeLeader || mode == ModeFollower
}

// stopAll kills all servers at once and waits until they have exited. If the
// test has failed, it then logs the end of each server's log.
func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Go(s.stop)
	}
	wg.Wait()
	if c.t.Failed() {
		for _, s := range c.servers {
			c.t.Logf("zktest: server %d (%s)%s", s.index, s.clientAddr(), s.logTail())
		}
	}
}

// poll calls cond every pollInterval until it returns nil or an
// *exitedError, or until timeout has passed. It returns cond's last error.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		var exited *exitedError
		if err == nil || errors.As(err, &exited) || !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// exitedError reports a server whose process exited while it was expected
// to run.
type exitedError struct {
	msg string
}

func (e *exitedError) Error() string { return e.msg }
