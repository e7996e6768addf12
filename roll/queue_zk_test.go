package roll

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// The ticket queue serves hosts in the order they joined, past a host that
// left from the middle of it, and no host lists the queue to find its place
// (listing /staging/<svc>/ready fails here).
func TestIntegration_TicketQueueServesInOrderWithoutListing(t *testing.T) {
	s := rollingFleet(t, "a", "b", "c", "d")
	if min, err := s.MinProtocol(); err != nil || min < ticketQueue {
		t.Fatalf("a newly seeded root requires protocol %d (%v), want %d or more: the ticket queue", min, err, ticketQueue)
	}
	tickets := map[string]string{}
	for _, h := range []string{"a", "b", "c", "d"} {
		p, err := s.JoinReady("db", h, "v2")
		if err != nil {
			t.Fatal(err)
		}
		if !isTicket(p) {
			t.Fatalf("%s joined as %s, want a ticket", h, p)
		}
		tickets[h] = p
	}
	if err := s.LeaveReady(tickets["c"]); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tickets["c"], s.Tree.queued("db", "c")} {
		if ok, _, err := s.conn.Exists(p); err != nil || ok {
			t.Fatalf("%s after c left: %v %v", p, ok, err)
		}
	}
	hosts, err := s.queuedHosts(&reader{s: s}, "db")
	if err != nil || strings.Join(hosts, ",") != "a,b,d" {
		t.Fatalf("queued hosts %v (%v), want a, b, d", hosts, err)
	}

	withFaults(s).set(func(op, path string) error {
		if op == "children" && path == s.Tree.readyDir("db") {
			return fmt.Errorf("listed %s", path)
		}
		return nil
	}, nil)
	order := make(chan string, 3)
	done := make(chan error, 1)
	go func() {
		// d waits behind b, past c's gap, and goes when b is done.
		err := s.AwaitTurn(t.Context(), "db", "d", tickets["d"], Turn{From: "v1", To: "v2", Started: time.Now()})
		order <- "d"
		done <- err
	}()
	for _, h := range []string{"a", "b"} {
		if err := s.AwaitTurn(t.Context(), "db", h, tickets[h], Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
			t.Fatalf("%s's turn: %v", h, err)
		}
		order <- h
		if err := s.FinishTurn("db", h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("d's turn: %v", err)
	}
	close(order)
	var got []string
	for h := range order {
		got = append(got, h)
	}
	if strings.Join(got, ",") != "a,b,d" {
		t.Errorf("turns taken in the order %v, want a, b, d", got)
	}
	head, _, err := s.queueHead("db")
	if want, _ := parseTicket(path.Base(tickets["d"])); err != nil || head.Admitted != want {
		t.Errorf("queue head %+v (%v), want d's ticket %d admitted", head, err, want)
	}
	if hosts, _, err := s.conn.Children(s.Tree.queuedDir("db")); err != nil || len(hosts) != 0 {
		t.Errorf("queued hosts %v (%v) after every turn, want none", hosts, err)
	}
}

// A join whose answer a connection loss swallowed has taken a ticket: the
// host finds it, by its session, among the tickets taken meanwhile, and
// does not queue twice.
func TestIntegration_TicketJoinWhoseAnswerIsLostIsFound(t *testing.T) {
	s := rollingFleet(t, "a", "b")
	if _, err := s.JoinReady("db", "b", "v2"); err != nil {
		t.Fatal(err)
	}
	lost := 0
	withFaults(s).set(nil, func(op, path string) bool {
		if op == "multi" && path == s.Tree.queued("db", "a") && lost == 0 {
			lost++
			return true
		}
		return false
	})
	p, err := s.JoinReady("db", "a", "v2")
	if err != nil || lost != 1 {
		t.Fatalf("join with its answer lost (%d): %q %v, want the ticket found", lost, p, err)
	}
	names, _, err := s.conn.Children(s.Tree.readyDir("db"))
	if err != nil || len(names) != 2 {
		t.Fatalf("queue %v (%v), want b's ticket and one of a's", names, err)
	}
	var r Ready
	if _, err := s.getOptional(p, &r); err != nil || r.Host != "a" {
		t.Errorf("ticket %s holds %+v (%v), want a's", p, r, err)
	}
	// A join that never reached the server is an error, and leaves nothing.
	withFaults(s).set(func(op, path string) error {
		if op == "multi" {
			return zk.ErrConnectionClosed
		}
		return nil
	}, nil)
	if err := s.LeaveReady(p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JoinReady("db", "a", "v2"); !errors.Is(err, zk.ErrConnectionClosed) {
		t.Errorf("join never sent: %v, want the connection loss", err)
	}
}

// A join whose answer was lost, and whose ticket could not be looked for
// then (the connection still down), leaves a ticket the host does not know
// of: the next join finds it and removes it, so that the host does not
// stand in the queue twice, the first time for good.
func TestIntegration_TicketOfAJoinWithAnUnknownOutcomeIsRemovedAtTheNextJoin(t *testing.T) {
	s := rollingFleet(t, "a", "b")
	var lost, syncs int
	withFaults(s).set(func(op, path string) error {
		if op == "sync" && syncs == 0 {
			syncs++
			return zk.ErrConnectionClosed
		}
		return nil
	}, func(op, path string) bool {
		if op == "multi" && path == s.Tree.queued("db", "a") && lost == 0 {
			lost++
			return true
		}
		return false
	})
	if _, err := s.JoinReady("db", "a", "v2"); err == nil || lost != 1 || syncs != 1 {
		t.Fatalf("join with its answer lost and the connection still down (%d, %d): %v, want an error", lost, syncs, err)
	}
	names, _, err := s.conn.Children(s.Tree.readyDir("db"))
	if err != nil || len(names) != 1 {
		t.Fatalf("queue %v (%v), want the ticket the lost join took", names, err)
	}
	orphan := s.Tree.readyNode("db", names[0])
	p, err := s.JoinReady("db", "a", "v2")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.conn.Exists(orphan); err != nil || ok || p == orphan {
		t.Errorf("the lost join's ticket %s after joining again as %s: there %v (%v), want it removed", orphan, p, ok, err)
	}
	if names, _, err := s.conn.Children(s.Tree.readyDir("db")); err != nil || len(names) != 1 {
		t.Errorf("queue %v (%v), want a's one ticket", names, err)
	}
}
