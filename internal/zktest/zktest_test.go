package zktest_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

// waitTimeout bounds every wait in these tests; ZooKeeper usually needs far
// less, but CI machines can be slow.
const waitTimeout = 30 * time.Second

func TestIntegration_StandaloneServesClients(t *testing.T) {
	c := zktest.Standalone(t)

	servers := c.Servers()
	if len(servers) != 1 {
		t.Fatalf("Servers() = %q, want one address", servers)
	}
	if got := c.ConnString(); got != servers[0] {
		t.Errorf("ConnString() = %q, want %q", got, servers[0])
	}
	if got := c.Mode(0); got != zktest.ModeStandalone {
		t.Errorf("Mode(0) = %q, want %q", got, zktest.ModeStandalone)
	}
	if got := c.Leader(); got != -1 {
		t.Errorf("Leader() = %d, want -1 for a standalone server", got)
	}

	conn := connect(t, servers)
	const path = "/dcroll-zktest"
	if _, err := conn.Create(path, []byte("hello"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	if got := get(t, conn, path); got != "hello" {
		t.Fatalf("%s holds %q, want %q", path, got, "hello")
	}

	// The data survive a restart. The client is closed first: see Start
	// for why clients should not reconnect while a server starts.
	conn.Close()
	c.Stop(0)
	if got := c.Mode(0); got != "" {
		t.Errorf("Mode(0) of a stopped server = %q, want \"\"", got)
	}
	c.Start(0)
	if got := c.Mode(0); got != zktest.ModeStandalone {
		t.Errorf("Mode(0) after restart = %q, want %q", got, zktest.ModeStandalone)
	}
	if got := get(t, connect(t, servers), path); got != "hello" {
		t.Fatalf("%s holds %q after restart, want %q", path, got, "hello")
	}
}

func TestIntegration_EnsembleSurvivesLosingItsLeader(t *testing.T) {
	c := zktest.Ensemble(t, 3)

	servers := c.Servers()
	if len(servers) != 3 {
		t.Fatalf("Servers() = %q, want three addresses", servers)
	}
	if got := strings.Split(c.ConnString(), ","); !slices.Equal(got, servers) {
		t.Errorf("ConnString() = %q, want %q joined by commas", c.ConnString(), servers)
	}
	oldLeader := c.Leader()
	if oldLeader < 0 {
		t.Fatal("no leader after Ensemble returned")
	}
	for i := range servers {
		want := zktest.ModeFollower
		if i == oldLeader {
			want = zktest.ModeLeader
		}
		if got := c.Mode(i); got != want {
			t.Errorf("Mode(%d) = %q, want %q", i, got, want)
		}
	}

	conn := connect(t, servers)
	const path = "/dcroll-zktest"
	if _, err := conn.Create(path, []byte("before"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create %s: %v", path, err)
	}

	// Crash the leader: the two others elect a new one among themselves.
	c.Stop(oldLeader)
	c.WaitReady(t)
	newLeader := c.Leader()
	if newLeader < 0 || newLeader == oldLeader {
		t.Fatalf("Leader() = %d after stopping leader %d, want another server", newLeader, oldLeader)
	}

	// The client's session moves to a remaining server and writes again.
	testutil.Eventually(t, waitTimeout, func() error {
		if _, err := conn.Set(path, []byte("after"), -1); err != nil {
			return fmt.Errorf("set %s without server %d: %w", path, oldLeader, err)
		}
		return nil
	})

	// The old leader comes back as a follower and catches up.
	c.Start(oldLeader)
	if got := c.Mode(oldLeader); got != zktest.ModeFollower {
		t.Errorf("Mode(%d) after restart = %q, want %q", oldLeader, got, zktest.ModeFollower)
	}
	if got := c.Leader(); got != newLeader {
		t.Errorf("Leader() = %d after the old leader rejoined, want %d", got, newLeader)
	}
	rejoined := connect(t, servers[oldLeader:oldLeader+1])
	if _, err := rejoined.Sync(path); err != nil {
		t.Fatalf("sync %s through server %d: %v", path, oldLeader, err)
	}
	if got := get(t, rejoined, path); got != "after" {
		t.Errorf("server %d has %s = %q, want %q", oldLeader, path, got, "after")
	}
}

// connect opens a session to servers and waits until it is established. The
// session is closed when the test ends.
func connect(t *testing.T, servers []string) *zk.Conn {
	t.Helper()
	logger := &testLogger{t: t}
	conn, _, err := zk.Connect(servers, 5*time.Second, zk.WithLogger(logger))
	if err != nil {
		t.Fatalf("connect to %q: %v", servers, err)
	}
	t.Cleanup(func() {
		conn.Close()
		logger.stop()
	})
	testutil.Eventually(t, waitTimeout, func() error {
		if state := conn.State(); state != zk.StateHasSession {
			return fmt.Errorf("session to %q is in state %v", servers, state)
		}
		return nil
	})
	return conn
}

// get returns the data of the node at path.
func get(t *testing.T, conn *zk.Conn, path string) string {
	t.Helper()
	data, _, err := conn.Get(path)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	return string(data)
}

// testLogger sends the client's log to the test log until stop is called:
// the client's goroutines may still log after Close returns, and logging to
// a finished test panics.
type testLogger struct {
	t       *testing.T
	mu      sync.Mutex
	stopped bool
}

func (l *testLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("zk client: "+format, args...)
	}
}

func (l *testLogger) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

func TestIntegration_ObserverServesAndForwardsWrites(t *testing.T) {
	c := zktest.EnsembleObservers(t, 3, 1, "")

	servers := c.Servers()
	if len(servers) != 4 {
		t.Fatalf("Servers() = %q, want four addresses", servers)
	}
	if got := c.Observers(); !slices.Equal(got, servers[3:]) {
		t.Errorf("Observers() = %q, want %q", got, servers[3:])
	}
	if got := c.Voters(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("Voters() = %v, want [0 1 2]", got)
	}
	if got := c.Mode(3); got != zktest.ModeObserver {
		t.Errorf("Mode(3) = %q, want %q", got, zktest.ModeObserver)
	}
	if l := c.Leader(); l < 0 || l > 2 {
		t.Errorf("Leader() = %d, want one of the voters", l)
	}

	// A client of the observer alone writes: the observer forwards it to
	// the leader, and a client of a voter reads it.
	observer := connect(t, c.Observers())
	const path = "/dcroll-zktest-observer"
	if _, err := observer.Create(path, []byte("through the observer"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create %s through the observer: %v", path, err)
	}
	if got := observer.Server(); got != servers[3] {
		t.Errorf("the observer's client is connected to %s, want %s", got, servers[3])
	}
	voter := connect(t, servers[:1])
	if _, err := voter.Sync(path); err != nil {
		t.Fatalf("sync %s through server 0: %v", path, err)
	}
	if got := get(t, voter, path); got != "through the observer" {
		t.Errorf("server 0 has %s = %q, want %q", path, got, "through the observer")
	}

	// Losing the observer loses no vote: the voters still write.
	c.Stop(3)
	if _, err := voter.Set(path, []byte("without the observer"), -1); err != nil {
		t.Errorf("set %s with the observer stopped: %v", path, err)
	}
	c.Start(3)
	if got := c.Mode(3); got != zktest.ModeObserver {
		t.Errorf("Mode(3) after restart = %q, want %q", got, zktest.ModeObserver)
	}
}
