package roll

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/clock"
)

// The history is a ring of HistoryKeep slots under <root>/history: every
// operator action and every deploy event writes the next slot, over the
// head's version, in one transaction with the head. An event costs the
// same two requests (a read of the head, one transaction) whatever the
// history's or the fleet's size, and the history never holds more than
// HistoryKeep entries of at most MaxEventDetail bytes of detail each.

// HistoryKeep is how many events a data center's history keeps.
const HistoryKeep = 1000

// MaxEventDetail caps an event's detail and outcome; longer text is cut.
const MaxEventDetail = 1024

// Actions an event records.
const (
	ActSeed         = "seed"
	ActStage        = "stage"
	ActOrder        = "order"
	ActPause        = "pause"
	ActResume       = "resume"
	ActAbort        = "abort"
	ActRollback     = "rollback"
	ActPromote      = "promote"
	ActStepStarted  = "step-started"
	ActStepFinished = "step-finished"
	ActHalt         = "halt"
)

// HistoryEvent is one entry of the history: who did what, when, and how it went.
type HistoryEvent struct {
	Seq      int64     `json:"seq"` // from 1, in the order written
	At       time.Time `json:"at"`
	By       string    `json:"by"` // user@host of the command or agent that wrote it
	Action   string    `json:"action"`
	Services []string  `json:"services,omitempty"`
	Version  string    `json:"version,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Outcome  string    `json:"outcome"` // "ok", or what went wrong
	// Took is how long a finished step ran, from its start (step-finished
	// only, and only when its start was recorded).
	Took Duration `json:"took,omitempty"`
	// Turns is how many turns a finished step's services took, and
	// MaxParallel the largest max_parallel among them: with Took, what
	// an estimate of a turn's duration is made from.
	Turns       int `json:"turns,omitempty"`
	MaxParallel int `json:"max_parallel,omitempty"`
}

func (e HistoryEvent) validate() error {
	if e.Action == "" {
		return errors.New("action: empty")
	}
	if e.Seq < 1 {
		return fmt.Errorf("seq %d: must be positive", e.Seq)
	}
	return validNames("services", "service", e.Services)
}

// Concerns reports whether e is about svc ("": every event is).
func (e HistoryEvent) Concerns(svc string) bool {
	return svc == "" || slices.Contains(e.Services, svc)
}

// HistoryHead is the data of <root>/history: the next event's number, and
// the step that heads the deploy queue with when it started, so that the
// step's end can say how long it took without reading the history.
type HistoryHead struct {
	Next        int64     `json:"next"`
	Step        string    `json:"step,omitempty"`
	StepStarted time.Time `json:"step_started,omitzero"`
}

func (h HistoryHead) validate() error {
	if h.Next < 0 {
		return fmt.Errorf("next %d: must not be negative", h.Next)
	}
	return nil
}

// History is the head of the history ring.
func (t Tree) History() string { return t.join("history") }

// historySlot is the slot that event seq is written to.
func (t Tree) historySlot(seq int64) string {
	return t.join("history", fmt.Sprintf("e-%04d", (seq-1)%HistoryKeep))
}

// Actor is who this process acts as in the history: user@host.
func Actor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return name + "@" + host
}

// actor is Actor, computed once.
var actor = sync.OnceValue(Actor)

// cut shortens s to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// Record appends e to the history, stamping its number, time and author
// (unless set). It writes the next slot and the head in one transaction
// over the head's version, so two writers at once take two slots.
func (s *Store) Record(e HistoryEvent) error {
	_, err := s.recordWith(e, nil)
	return err
}

// recordWith records e and, in the same transaction, applies update to the
// head; an update that returns false records nothing. It returns the head
// as written.
func (s *Store) recordWith(e HistoryEvent, update func(*HistoryHead, *HistoryEvent) bool) (HistoryHead, error) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	if e.By == "" {
		e.By = actor()
	}
	if e.Outcome == "" {
		e.Outcome = "ok"
	}
	e.Detail, e.Outcome = cut(e.Detail, MaxEventDetail), cut(e.Outcome, MaxEventDetail)
	for attempt := 0; attempt < 50; attempt++ {
		if attempt > 0 {
			// Another writer took the slot: let it finish, a random
			// moment growing with the tries, so that two writers in step
			// do not keep colliding.
			time.Sleep(clock.Jitter(time.Duration(attempt) * time.Millisecond))
		}
		var head HistoryHead
		stat, err := s.getOptional(s.Tree.History(), &head)
		if errors.Is(err, zk.ErrNoNode) {
			if err := s.createHistory(); err != nil {
				return head, err
			}
			continue
		}
		if err != nil {
			return head, err
		}
		ev := e
		head.Next++
		ev.Seq = head.Next
		if update != nil && !update(&head, &ev) {
			return head, nil // nothing to record after all
		}
		headData, err := encode(head)
		if err != nil {
			return head, err
		}
		data, err := encode(ev)
		if err != nil {
			return head, err
		}
		slot := s.Tree.historySlot(ev.Seq)
		write := any(&zk.SetDataRequest{Path: slot, Data: data, Version: -1})
		if ev.Seq <= HistoryKeep {
			write = &zk.CreateRequest{Path: slot, Data: data, Acl: s.acls.of(slot)}
		}
		_, err = s.conn.Multi(&zk.SetDataRequest{Path: s.Tree.History(), Data: headData, Version: stat.Version}, write)
		switch {
		case err == nil:
			return head, nil
		case errors.Is(err, zk.ErrBadVersion):
			continue // another event took this slot
		case errors.Is(err, zk.ErrNodeExists), errors.Is(err, zk.ErrNoNode):
			// A ring whose slots are not what its head says (a head
			// written by hand): write the slot the other way.
			if _, err := s.conn.Multi(&zk.SetDataRequest{Path: s.Tree.History(), Data: headData, Version: stat.Version}, s.flipSlotWrite(write, slot, data)); err == nil {
				return head, nil
			} else if !errors.Is(err, zk.ErrBadVersion) {
				return head, fmt.Errorf("roll: record in %s: %w", s.Tree.History(), err)
			}
			continue
		default:
			return head, fmt.Errorf("roll: record in %s: %w", s.Tree.History(), err)
		}
	}
	return HistoryHead{}, fmt.Errorf("roll: record in %s: it keeps changing", s.Tree.History())
}

// flip turns a slot's create into a set and a set into a create.
func (s *Store) flipSlotWrite(op any, slot string, data []byte) any {
	if _, ok := op.(*zk.CreateRequest); ok {
		return &zk.SetDataRequest{Path: slot, Data: data, Version: -1}
	}
	return &zk.CreateRequest{Path: slot, Data: data, Acl: s.acls.of(slot)}
}

// createHistory creates the history's head, once the root exists.
func (s *Store) createHistory() error {
	_, err := s.conn.Create(s.Tree.History(), nil, 0, s.acls.of(s.Tree.History()))
	switch {
	case err == nil, errors.Is(err, zk.ErrNodeExists):
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return s.CheckSeeded()
	}
	return fmt.Errorf("roll: create %s: %w", s.Tree.History(), err)
}

// History reads the history, newest first: at most limit events (0: all
// kept) about svc ("": every event). A slot overwritten while it reads, or
// holding bad data, is left out.
func (s *Store) History(svc string, limit int) ([]HistoryEvent, error) {
	var head HistoryHead
	_, err := s.getOptional(s.Tree.History(), &head)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, s.CheckSeeded()
	}
	if err != nil {
		return nil, err
	}
	var out []HistoryEvent
	for seq := head.Next; seq >= 1 && seq > head.Next-HistoryKeep; seq-- {
		var e HistoryEvent
		_, err := s.get(s.Tree.historySlot(seq), &e)
		switch {
		case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
			continue
		case err != nil:
			return out, err
		}
		if e.Seq != seq || !e.Concerns(svc) {
			continue
		}
		out = append(out, e)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// HistoryHead reads the history's head (its zero value when there is no
// history yet).
func (s *Store) HistoryHead() (HistoryHead, error) {
	var head HistoryHead
	_, err := s.getOptional(s.Tree.History(), &head)
	if errors.Is(err, zk.ErrNoNode) {
		return head, nil
	}
	return head, err
}

// noteStepStarted records that the step heading the deploy queue started,
// unless the history says so already: the order that queued it onto an
// empty queue, or the removal of the step before it, calls it.
func (s *Store) noteStepStarted() error {
	head, ok, _, err := s.headStep(false)
	if err != nil || !ok {
		return err
	}
	_, err = s.recordWith(HistoryEvent{Action: ActStepStarted, Services: head.Services, Detail: head.Name},
		func(h *HistoryHead, e *HistoryEvent) bool {
			if h.Step == head.Name {
				return false
			}
			h.Step, h.StepStarted = head.Name, e.At
			return true
		})
	return err
}

// noteStepFinished records that step left the deploy queue, done, with how
// long it ran when its start was recorded, and how many members its
// services have (the turns it took, when every member upgraded).
func (s *Store) noteStepFinished(step StepEntry) error {
	e := HistoryEvent{Action: ActStepFinished, Services: step.Services, Detail: step.Name}
	for _, svc := range step.Services {
		ok, stat, err := s.conn.Exists(s.Tree.Members(svc))
		if err != nil {
			return fmt.Errorf("roll: read %s: %w", s.Tree.Members(svc), err)
		}
		if ok {
			e.Turns += int(stat.NumChildren)
		}
		var pol Service
		if _, err := s.get(s.Tree.Service(svc), &pol); err == nil {
			e.MaxParallel = max(e.MaxParallel, pol.MaxParallel, 1)
		}
	}
	_, err := s.recordWith(e, func(h *HistoryHead, e *HistoryEvent) bool {
		if h.Step == step.Name {
			e.Took = Duration(e.At.Sub(h.StepStarted).Round(time.Millisecond))
			h.Step, h.StepStarted = "", time.Time{}
		}
		return true
	})
	return err
}

// recordHalt records that failure halted svc.
func (s *Store) recordHalt(svc string, failure *Failure) error {
	return s.Record(HistoryEvent{Action: ActHalt, Services: []string{svc}, Version: failure.Version,
		Detail: failure.String(), Outcome: "halted"})
}

// logged logs err, if any, as a history write that failed: the history is a
// record of the deploy, and a deploy does not stop for want of it.
func (s *Store) logged(what string, err error) {
	if err != nil && s.log != nil {
		s.log.Warn("cannot write the history", "event", what, "error", err)
	}
}

// HistoryWatch follows the newest events of the history for a reader that
// shows them as they come (the status page). A Read reads the head,
// leaving a watch on it, and then only the events written since the Read
// before, at most the number it keeps: one request and one per new event,
// whatever the fleet's or the history's size. A Read before the head's
// watch fired makes no request at all. Not for two goroutines at once.
type HistoryWatch struct {
	s       *Store
	keep    int
	next    int64           // the head's Next as of the last Read
	events  []HistoryEvent  // newest first, at most keep
	changed <-chan struct{} // closed when the head changes; nil: read it
}

// WatchHistory starts following the newest keep events of the history
// (1..HistoryKeep).
func (s *Store) WatchHistory(keep int) *HistoryWatch {
	return &HistoryWatch{s: s, keep: min(max(keep, 1), HistoryKeep)}
}

// Read returns the newest events, newest first, and a channel closed when
// the history changes next, or the connection comes back to a session (a
// watch may have missed a change: see resyncs). On an error it returns
// the events as last read, and the next Read reads again.
func (w *HistoryWatch) Read() ([]HistoryEvent, <-chan struct{}, error) {
	if w.changed != nil {
		select {
		case <-w.changed:
		default:
			return w.events, w.changed, nil // nothing written since
		}
	}
	w.changed = nil
	p := w.s.Tree.History()
	resync := w.s.resyncs.next() // a reconnect may lose a change: read again then
	data, _, ch, err := w.s.conn.GetW(p)
	if errors.Is(err, zk.ErrNoNode) {
		// No history yet: watch for its head.
		ok, _, ch, err := w.s.conn.ExistsW(p)
		if err != nil {
			return w.events, nil, fmt.Errorf("roll: read %s: %w", p, err)
		}
		w.changed = watch(ch, resync)
		if !ok {
			w.next, w.events = 0, nil
		}
		return w.events, w.changed, nil // created meanwhile: the watch fires at once
	}
	if err != nil {
		return w.events, nil, fmt.Errorf("roll: get %s: %w", p, err)
	}
	changed := watch(ch, resync)
	var head HistoryHead
	if len(data) > 0 {
		if err := decode(p, data, &head); err != nil {
			w.changed = changed // a head fixed by hand is read again
			return w.events, changed, err
		}
	}
	if head.Next < w.next {
		w.next, w.events = 0, nil // a history begun again
	}
	var fresh []HistoryEvent
	for seq := head.Next; seq > max(w.next, head.Next-int64(w.keep)); seq-- {
		var e HistoryEvent
		_, err := w.s.get(w.s.Tree.historySlot(seq), &e)
		switch {
		case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
			continue
		case err != nil:
			return w.events, nil, err
		}
		if e.Seq == seq { // else overwritten since by a newer event
			fresh = append(fresh, e)
		}
	}
	events := append(fresh, w.events...)
	w.events = events[:min(len(events), w.keep)]
	w.next, w.changed = head.Next, changed
	return w.events, w.changed, nil
}
