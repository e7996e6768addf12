package roll

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/zktest"
)

func release(version, sha string) Manifest {
	return Manifest{Version: version, Size: 1, SHA256: strings.Repeat(sha, 64), Staged: time.Now().UTC()}
}

func staged(t *testing.T, s *Store, svc string) Manifest {
	t.Helper()
	m, err := s.Manifest(svc)
	if err != nil {
		t.Fatalf("read the manifest of %s: %v", svc, err)
	}
	return m
}

// A stage whose write commits while a connection loss swallows its answer
// has staged: it must say so, not exit with an error while the release it
// wrote waits for an order that never comes (found by a chaos schedule: a
// quorum loss during `dcroll stage`). Each of the three writes a stage can
// make is tried: the first manifest, a manifest replaced with the ready
// queue emptied, and the same release staged again.
func TestIntegration_StageWhoseAnswerIsLostHasStaged(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/lost")
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n"))
	s := connect(t, zkc, "/lost")
	f := withFaults(s)
	staging := s.Tree.Staging("db")
	lost := 0
	f.set(nil, func(op, path string) bool {
		if (op == "multi" || op == "set") && (path == staging || strings.HasPrefix(path, s.Tree.readyDir("db")) || strings.HasPrefix(path, s.Tree.queuedDir("db"))) {
			lost++
			return true
		}
		return false
	})
	for _, c := range []struct {
		name    string
		m       Manifest
		replace bool
	}{
		{"the first release", release("v2", "a"), false},
		{"the same release again", release("v2", "a"), false},
		{"a replacement", release("v3", "b"), true},
	} {
		before := lost
		if err := s.Stage("db", c.m, c.replace); err != nil {
			t.Errorf("%s, its answer lost: %v", c.name, err)
		}
		if lost != before+1 {
			t.Fatalf("%s: the fault was not injected", c.name)
		}
		if got := staged(t, admin, "db"); !got.Staged.Equal(c.m.Staged) || got.Version != c.m.Version {
			t.Errorf("%s: staged %s of %s, want %s of %s", c.name, got.Version, got.Staged, c.m.Version, c.m.Staged)
		}
	}
}

// A connection loss before the write reached the server leaves the old
// release staged, and stage must say that it failed.
func TestIntegration_StageLostBeforeItsWriteFails(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/notsent")
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n"))
	if err := admin.Stage("db", release("v2", "a"), false); err != nil {
		t.Fatal(err)
	}
	s := connect(t, zkc, "/notsent")
	withFaults(s).set(func(op, path string) error {
		if op == "multi" {
			return zk.ErrConnectionClosed
		}
		return nil
	}, nil)
	if err := s.Stage("db", release("v3", "b"), true); !errors.Is(err, zk.ErrConnectionClosed) {
		t.Errorf("a replacement never sent: stage returned %v, want the connection loss", err)
	}
	if got := staged(t, admin, "db"); got.Version != "v2" {
		t.Errorf("staged %s, want v2 still", got.Version)
	}
}

// Staging the release that is staged already (the same version and
// sha256), as an operator does after an error, keeps the hosts that are
// ready for it in the queue; another release still needs --replace.
func TestIntegration_StagingTheSameReleaseAgainKeepsTheQueue(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/again")
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n"))
	if err := admin.Stage("db", release("v2", "a"), false); err != nil {
		t.Fatal(err)
	}
	h := connect(t, zkc, "/again")
	if _, err := h.JoinReady("db", "h1", "v2"); err != nil {
		t.Fatal(err)
	}
	again := release("v2", "a")
	if err := admin.Stage("db", again, false); err != nil {
		t.Fatalf("staging the same release again: %v", err)
	}
	if got := staged(t, admin, "db"); !got.Staged.Equal(again.Staged) {
		t.Errorf("the manifest was not written again: staged at %s, want %s", got.Staged, again.Staged)
	}
	q, err := admin.ReadyQueue("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 || q[0].Host != "h1" {
		t.Errorf("ready queue after staging the same release again: %+v, want h1 still in it", q)
	}
	if err := admin.Stage("db", release("v2", "b"), false); !errors.Is(err, ErrStagingInProgress) {
		t.Errorf("another build of v2 without --replace: %v, want ErrStagingInProgress", err)
	}
}

// Two operators replace the same service's release at once, while hosts
// join its ready queue. Each replace either stages its release or says the
// queue or manifest changed meanwhile, never both failing, and what is
// staged is the release of one that succeeded. (A join can commit between
// a replace's list of the queue and its transaction and outlive it; the
// take checks the staged version: TestIntegration_AHostReadyWithAReplaced-
// ReleaseTakesNoTurn.)
func TestIntegration_TwoReplacesAtOnce(t *testing.T) {
	zkc := zktest.Standalone(t)
	a := connect(t, zkc, "/race")
	seed(t, a, parse(t, "[services.db]\nquorum = 1\n"))
	b := connect(t, zkc, "/race")
	hostStores := []*Store{connect(t, zkc, "/race"), connect(t, zkc, "/race")}
	if err := a.Stage("db", release("v1", "a"), false); err != nil {
		t.Fatal(err)
	}
	for round := range 10 {
		va, vb := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
		var errA, errB error
		var wg sync.WaitGroup
		wg.Add(2 + len(hostStores))
		go func() { defer wg.Done(); errA = a.Stage("db", release(va, "b"), true) }()
		go func() { defer wg.Done(); errB = b.Stage("db", release(vb, "c"), true) }()
		for i, hs := range hostStores {
			go func() {
				defer wg.Done()
				// A host ready with whatever it read staged: the join may
				// land before or after either replace.
				if m, err := hs.Manifest("db"); err == nil {
					_, _ = hs.JoinReady("db", fmt.Sprintf("h%d", i), m.Version)
				}
			}()
		}
		wg.Wait()
		for _, err := range []error{errA, errB} {
			if err != nil && !strings.Contains(err.Error(), "changed meanwhile; try again") {
				t.Fatalf("round %d: a replace failed without saying why: %v", round, err)
			}
		}
		if errA != nil && errB != nil {
			t.Fatalf("round %d: both replaces failed: %v; %v", round, errA, errB)
		}
		m := staged(t, a, "db")
		if (m.Version == va && errA != nil) || (m.Version == vb && errB != nil) || (m.Version != va && m.Version != vb) {
			t.Fatalf("round %d: %s staged, replaces said %v and %v", round, m.Version, errA, errB)
		}
	}
}
