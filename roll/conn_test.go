package roll

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

func TestReconnectSpread(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{30 * time.Second, time.Second},
		{10 * time.Second, time.Second},
		{4 * time.Second, 400 * time.Millisecond},
		{100 * time.Millisecond, 10 * time.Millisecond},
	} {
		if got := reconnectSpread(tt.timeout); got != tt.want {
			t.Errorf("reconnectSpread(%s) = %s, want %s", tt.timeout, got, tt.want)
		}
	}
}

// The first attempt goes at once; every later one waits a random time
// below the spread, and the waits differ from one attempt to the next.
func TestReconnectDialerWaitsAllButTheFirstAttempt(t *testing.T) {
	const spread = time.Second
	d := newReconnectDialer(spread)
	var waits []time.Duration
	d.wait = func(w time.Duration, _ <-chan struct{}) bool { waits = append(waits, w); return true }
	dials := 0
	d.dialer = func(network, address string, _ time.Duration) (net.Conn, error) {
		dials++
		return nil, fmt.Errorf("dial %s %s: refused", network, address)
	}

	if _, err := d.dial("tcp", "zk1:2181", time.Second); err == nil || len(waits) != 0 || dials != 1 {
		t.Fatalf("first attempt: error %v, %d waits, %d dials; want the dial's error, no wait, one dial", err, len(waits), dials)
	}
	const attempts = 200
	for range attempts {
		_, _ = d.dial("tcp", "zk2:2181", time.Second)
	}
	if len(waits) != attempts || dials != attempts+1 {
		t.Fatalf("%d later attempts: %d waits, %d dials", attempts, len(waits), dials)
	}
	distinct := map[time.Duration]bool{}
	for _, w := range waits {
		if w < 0 || w >= spread {
			t.Errorf("a reconnect waited %s, want [0, %s)", w, spread)
		}
		distinct[w] = true
	}
	if len(distinct) < attempts/2 {
		t.Errorf("%d attempts waited only %d distinct times: not spread", attempts, len(distinct))
	}
}

// Once the store closes, a waiting attempt gives up without dialing.
func TestReconnectDialerGivesUpWhenClosed(t *testing.T) {
	d := newReconnectDialer(time.Hour)
	dials := 0
	d.dialer = func(string, string, time.Duration) (net.Conn, error) { dials++; return nil, errors.New("refused") }
	_, _ = d.dial("tcp", "zk1:2181", time.Second)

	done := make(chan error, 1)
	go func() { _, err := d.dial("tcp", "zk1:2181", time.Second); done <- err }()
	d.close()
	d.close() // twice: the store may be closed twice
	select {
	case err := <-done:
		if !errors.Is(err, errClosing) {
			t.Errorf("an attempt waiting when the store closed returned %v, want %v", err, errClosing)
		}
	case <-time.After(time.Minute):
		t.Fatal("an attempt waiting for an hour did not give up when the store closed")
	}
	if _, err := d.dial("tcp", "zk1:2181", time.Second); !errors.Is(err, errClosing) {
		t.Errorf("an attempt after close returned %v, want %v", err, errClosing)
	}
	if dials != 1 {
		t.Errorf("%d dials, want only the first", dials)
	}
}

// Through the dialer, a session outlives the crash of its server: it moves
// to another server and keeps its ID, so its ephemeral nodes stay.
func TestIntegration_SessionMovesWhenItsServerCrashes(t *testing.T) {
	zkc := zktest.Ensemble(t, 3)
	s := connect(t, zkc, "/moves")
	before := s.Session()
	if !before.Up {
		t.Fatal("no session after Open")
	}
	crashed := -1
	for i, addr := range zkc.Servers() {
		if addr == before.Server {
			crashed = i
		}
	}
	if crashed < 0 {
		t.Fatalf("the session's server %s is none of %v", before.Server, zkc.Servers())
	}
	zkc.Stop(crashed)
	testutil.Eventually(t, 30*time.Second, func() error {
		now := s.Session()
		if !now.Up || now.Server == before.Server {
			return fmt.Errorf("session %+v, still waiting to leave %s", now, before.Server)
		}
		return nil
	})
	if now := s.Session(); now.ID != before.ID {
		t.Errorf("the session is %#x after its server crashed, want %#x kept", now.ID, before.ID)
	}
	if _, err := s.conn.Sync("/"); err != nil {
		t.Errorf("sync after the move: %v", err)
	}
}
