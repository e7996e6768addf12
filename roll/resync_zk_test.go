package roll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

// A watch event lost across a reconnect must not hold a host for good.
// go-zookeeper sets a connection's watches again after a reconnect with a
// zxid that can be newer than a change it was never told of, and the
// server then sets the watch without firing it (see resyncs): after a
// ZooKeeper quorum loss, the chaos harness saw the front of web's ready
// queue wait for a turn that had ended, and the deploy stall. Here the
// event is lost by hand (the front host's watch on the turns never
// fires), and a real reconnect (the host's server stopped) must make the
// host look again and take its turn.
func TestIntegration_AReconnectWakesAHostWhoseWatchMissedAChange(t *testing.T) {
	zkc := zktest.Ensemble(t, 3)
	admin := stagedFleet(t, zkc, "/r", "[services.db]\nquorum = 1\n", "a", "b", "c")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	a := connect(t, zkc, "/r")
	readyA, err := a.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AwaitTurn(ctx, "db", "a", readyA, Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// b, at the front, waits on max_parallel: on the turns, deaf.
	b := connect(t, zkc, "/r")
	var deafened atomic.Int32
	withFaults(b).setDeaf(func(op, p string) bool {
		if op == "childrenw" && p == b.Tree.turnsDir("db") {
			deafened.Add(1)
			return true
		}
		return false
	})
	readyB, err := b.JoinReady("db", "b", "v2")
	if err != nil {
		t.Fatal(err)
	}
	took := make(chan error, 1)
	go func() { took <- b.AwaitTurn(ctx, "db", "b", readyB, Turn{From: "v1", To: "v2", Started: time.Now()}) }()
	testutil.Eventually(t, 30*time.Second, func() error {
		if deafened.Load() == 0 {
			return errors.New("b has not set its watch on the turns yet")
		}
		return nil
	})
	if err := a.FinishTurn("db", "a", nil); err != nil {
		t.Fatal(err)
	}

	// b never hears that a's turn ended. Its server goes: b reconnects to
	// another, in the same session.
	server := b.Session().Server
	stopped := -1
	for i, addr := range zkc.Servers() {
		if addr == server {
			stopped = i
		}
	}
	if stopped < 0 {
		t.Fatalf("b's server %q is not one of %v", server, zkc.Servers())
	}
	session := b.Session().ID
	zkc.Stop(stopped)
	select {
	case err := <-took:
		if err != nil {
			t.Fatalf("b's wait for its turn: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("b still waits for a turn that ended before its reconnect: a wait must look again when the connection comes back")
	}
	if id := b.Session().ID; id != session {
		t.Fatalf("b's session changed (%#x, then %#x): the test wants a reconnect within the session", session, id)
	}
	turns, err := admin.Turns("db")
	if _, ok := turns["b"]; err != nil || !ok || len(turns) != 1 {
		t.Fatalf("turns %v (%v): want b's alone", turns, err)
	}
}

// A host woken by a reconnect, not by its predecessor's going, must not
// take itself for the front: it looks at the same ticket again.
func TestIntegration_AReconnectDoesNotSkipAQueuedPredecessor(t *testing.T) {
	zkc := zktest.Ensemble(t, 3)
	admin := stagedFleet(t, zkc, "/r", "[services.db]\nquorum = 1\n", "a", "b", "c")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// a is queued first, and does not wait yet.
	a := connect(t, zkc, "/r")
	readyA, err := a.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	b := connect(t, zkc, "/r")
	var looks atomic.Int32
	withFaults(b).setDeaf(func(op, p string) bool {
		if op == "getw" && p == readyA {
			looks.Add(1)
		}
		return false
	})
	readyB, err := b.JoinReady("db", "b", "v2")
	if err != nil {
		t.Fatal(err)
	}
	took := make(chan error, 1)
	go func() { took <- b.AwaitTurn(ctx, "db", "b", readyB, Turn{From: "v1", To: "v2", Started: time.Now()}) }()
	lookedAt := func(n int32) func() error {
		return func() error {
			if got := looks.Load(); got < n {
				return fmt.Errorf("b looked at a's ticket %d times, want %d", got, n)
			}
			return nil
		}
	}
	testutil.Eventually(t, 30*time.Second, lookedAt(1))

	server := b.Session().Server
	for i, addr := range zkc.Servers() {
		if addr == server {
			zkc.Stop(i)
		}
	}
	// Woken by the reconnect, b watches a's ticket again.
	testutil.Eventually(t, time.Minute, lookedAt(2))
	if turns, err := admin.Turns("db"); err != nil || len(turns) != 0 {
		t.Fatalf("turns %v (%v) while a is queued ahead of b: want none", turns, err)
	}
	// a goes first, then b.
	if err := a.AwaitTurn(ctx, "db", "a", readyA, Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := a.FinishTurn("db", "a", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-took; err != nil {
		t.Fatalf("b's wait for its turn: %v", err)
	}
}

// A ticket whose host has since queued with another one holds the hosts
// behind it for as long as the host's session lives. The chaos harness
// saw one after a quorum loss: a join committed while its host was told
// the servers were unreachable, and the host joined again behind another
// host, which waited on the first ticket for good. Here the first ticket
// is made an orphan by hand: its host's record of it is gone, and so is
// its queued node, as after such a join.
func TestIntegration_AHostBehindAnOrphanTicketRemovesIt(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := stagedFleet(t, zkc, "/o", "[services.db]\nquorum = 1\n", "a", "b", "c")
	a, b := connect(t, zkc, "/o"), connect(t, zkc, "/o")
	b.orphanEvery = 200 * time.Millisecond
	orphan, err := a.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	readyB, err := b.JoinReady("db", "b", "v2")
	if err != nil {
		t.Fatal(err)
	}
	a.setLastTicket("db", "a", lastTicket{session: a.conn.SessionID()})
	if err := admin.conn.Delete(admin.Tree.queued("db", "a"), -1); err != nil {
		t.Fatal(err)
	}
	readyA, err := a.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := admin.conn.Exists(orphan); err != nil || !ok {
		t.Fatalf("the orphan %s: %v %v, want it still there", orphan, ok, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := b.AwaitTurn(ctx, "db", "b", readyB, Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatalf("b, behind a's orphan ticket: %v", err)
	}
	if ok, _, err := admin.conn.Exists(orphan); err != nil || ok {
		t.Fatalf("the orphan %s: %v %v, want it gone", orphan, ok, err)
	}
	if ok, _, err := admin.conn.Exists(readyA); err != nil || !ok {
		t.Fatalf("a's live ticket %s: %v %v, want it kept", readyA, ok, err)
	}
}

// stagedFleet seeds root with catalog, stages v2 of db, queues its step,
// and enters hosts as members of db serving v1.
func stagedFleet(t *testing.T, zkc *zktest.Cluster, root, catalog string, hosts ...string) *Store {
	t.Helper()
	admin := connect(t, zkc, root)
	seed(t, admin, parse(t, catalog))
	if err := admin.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}, false); err != nil {
		t.Fatal(err)
	}
	if err := admin.AppendSteps([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := admin.EnsureMember("db", h, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := admin.SetCurrent("db", h, Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return admin
}
