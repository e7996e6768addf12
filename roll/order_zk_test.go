package roll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
)

// stagedDB seeds root with db (and api depending on it) and stages v2 of
// both.
func stagedDB(t *testing.T, zkc *zktest.Cluster, root string) *Store {
	t.Helper()
	admin := connect(t, zkc, root)
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n[services.api]\nquorum = 1\ndepends_on = [\"db\"]\n"))
	for _, svc := range []string{"db", "api"} {
		if err := admin.Stage(svc, Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("c", 64)}, false); err != nil {
			t.Fatal(err)
		}
	}
	return admin
}

// queued lists the deploy queue's steps as "db", "api" ...
func queued(t *testing.T, s *Store) []string {
	t.Helper()
	steps, err := s.Steps()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, st := range steps {
		out = append(out, strings.Join(st.Services, ","))
	}
	return out
}

// Two orders of the same service at the same instant: both read a queue
// without it, and only one may queue it. A barrier holds each order's
// transaction until both have checked, which is the race itself.
func TestIntegration_ConcurrentOrdersQueueOnce(t *testing.T) {
	zkc := zktest.Standalone(t)
	for round, barrier := range []bool{true, false, false, false} {
		t.Run(fmt.Sprintf("round %d barrier %v", round, barrier), func(t *testing.T) {
			root := fmt.Sprintf("/race%d", round)
			admin := stagedDB(t, zkc, root)
			var checked sync.WaitGroup
			checked.Add(2)
			stores := []*Store{connect(t, zkc, root), connect(t, zkc, root)}
			if barrier {
				for _, s := range stores {
					var once sync.Once
					withFaults(s).set(func(op, path string) error {
						if op == "multi" {
							once.Do(func() { checked.Done(); checked.Wait() })
						}
						return nil
					}, nil)
				}
			}
			start := make(chan struct{})
			errs := make([]error, len(stores))
			var wg sync.WaitGroup
			for i, s := range stores {
				wg.Go(func() {
					<-start
					_, errs[i] = s.Order([][]string{{"db"}})
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrBadOrder) && strings.Contains(err.Error(), `"db" is already queued`):
				default:
					t.Errorf("an order failed for another reason: %v", err)
				}
			}
			if q := queued(t, admin); ok != 1 || len(q) != 1 || q[0] != "db" {
				t.Errorf("%d orders succeeded (%v), queue %q: want exactly one, and db queued once", ok, errs, q)
			}
		})
	}
}

// An order whose transaction commits while a connection loss swallows its
// answer looks the order up: it reports success, and the steps are queued
// once, not twice and not refused as "already queued".
func TestIntegration_OrderWhoseAnswerIsLostQueuesOnce(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := stagedDB(t, zkc, "/lost")
	s := connect(t, zkc, "/lost")
	var lost int
	withFaults(s).set(nil, func(op, path string) bool {
		if op == "multi" && strings.HasPrefix(path, s.Tree.Deploy()+"/") && lost == 0 {
			lost++
			return true
		}
		return false
	})
	steps, err := s.Order(nil)
	if err != nil {
		t.Fatalf("order with its answer lost: %v", err)
	}
	if lost != 1 {
		t.Fatalf("the fault was not injected (%d)", lost)
	}
	if q := queued(t, admin); strings.Join(q, " ") != "db api" || len(steps) != 2 {
		t.Errorf("queue %q, order said %q: want db then api, once", q, steps)
	}
}

// A read that fails fails the order, and nothing is written.
func TestIntegration_OrderWithAFailedReadWritesNothing(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := stagedDB(t, zkc, "/readfail")
	s := connect(t, zkc, "/readfail")
	injected := errors.New("injected: connection reset")
	f := withFaults(s)
	for _, failing := range []string{s.Tree.Deploy(), s.Tree.join("staging"), s.Tree.Services()} {
		f.set(func(op, path string) error {
			if op == "children" && path == failing {
				return injected
			}
			return nil
		}, nil)
		before := dump(t, admin, "/readfail")
		if _, err := s.Order([][]string{{"db"}}); !errors.Is(err, injected) {
			t.Errorf("reading %s fails: order returned %v, want the read's error", failing, err)
		}
		if after := dump(t, admin, "/readfail"); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("reading %s failed, and the order wrote to the tree", failing)
		}
	}
}

// An abort between an order's check and its write wins: the order checks
// again, finds nothing staged, and queues nothing.
func TestIntegration_OrderCheckedBeforeAnAbortQueuesNothing(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := stagedDB(t, zkc, "/abortrace")
	s := connect(t, zkc, "/abortrace")
	var once sync.Once
	var aborted Aborted
	var abortErr error
	withFaults(s).set(func(op, path string) error {
		if op == "multi" {
			once.Do(func() { aborted, abortErr = admin.Abort() })
		}
		return nil
	}, nil)
	_, err := s.Order([][]string{{"db"}, {"api"}})
	if abortErr != nil || len(aborted.Unstaged) != 2 {
		t.Fatalf("abort: %+v, %v", aborted, abortErr)
	}
	if !errors.Is(err, ErrBadOrder) || !strings.Contains(err.Error(), "has nothing staged") {
		t.Errorf("order checked before the abort, written after it: %v; want refused, nothing staged", err)
	}
	if q := queued(t, admin); len(q) != 0 {
		t.Errorf("queue %q after the abort, want it empty", q)
	}
}

// A take whose transaction commits while a connection loss swallows its
// answer leaves the host holding a turn it does not know of. It queues
// again; at the front it must take its turn, not spin on the turn it holds
// while the hosts behind it wait for good. Found by the chaos harness (a
// ZooKeeper quorum loss mid-rollout).
func TestIntegration_TakeTurnReplacesATurnTheHostHolds(t *testing.T) {
	s := rollingFleet(t, "a", "b")
	f := withFaults(s)
	var lost int
	f.set(nil, func(op, path string) bool {
		if op == "multi" && path == s.Tree.Turn("db", "a") && lost == 0 {
			lost++
			return true
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ready, err := s.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AwaitTurn(ctx, "db", "a", ready, Turn{From: "v1", To: "v2", Started: time.Now()}); err == nil || lost != 1 {
		t.Fatalf("the take's answer was lost (%d), yet AwaitTurn returned %v", lost, err)
	}
	// As the agent does: leave the queue, join again, wait again.
	if err := s.LeaveReady(ready); err != nil {
		t.Fatal(err)
	}
	if ready, err = s.JoinReady("db", "a", "v2"); err != nil {
		t.Fatal(err)
	}
	// Started as a host that began to wait an hour ago: the turn starts
	// when it is taken, not then.
	started := time.Now()
	if err := s.AwaitTurn(ctx, "db", "a", ready, Turn{From: "v1", To: "v2", Started: started.Add(-time.Hour)}); err != nil {
		t.Fatalf("AwaitTurn with a turn of this session left over: %v", err)
	}
	turns, err := s.Turns("db")
	if err != nil {
		t.Fatal(err)
	}
	// A turn starts when it is taken: the new one after started (not an
	// hour before), the old one before.
	if tu, ok := turns["a"]; len(turns) != 1 || !ok || tu.Started.Before(started) {
		t.Errorf("turns %+v: want a's new turn only, started after %s", turns, started)
	}
}
