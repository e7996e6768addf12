package testutil

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeTB records Fatalf calls instead of stopping the test, so that the
// failure path of Eventually can be checked.
type fakeTB struct {
	testing.TB
	failures []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

func TestEventuallySucceedsOnceConditionHolds(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d: not yet", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestEventuallyFailsWithLastError(t *testing.T) {
	fake := &fakeTB{TB: t}
	calls := 0
	start := time.Now()
	Eventually(fake, 100*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("still broken after %d calls", calls)
	})
	elapsed := time.Since(start)

	if len(fake.failures) != 1 {
		t.Fatalf("got %d failures, want 1: %q", len(fake.failures), fake.failures)
	}
	want := fmt.Sprintf("still broken after %d calls", calls)
	if !strings.Contains(fake.failures[0], want) {
		t.Errorf("failure %q does not contain the last error %q", fake.failures[0], want)
	}
	if calls < 2 {
		t.Errorf("cond called %d times, want it polled several times", calls)
	}
	if elapsed < 100*time.Millisecond {
		t.Errorf("gave up after %v, before the 100ms timeout", elapsed)
	}
}

func TestEventuallyCallsCondAtLeastOnce(t *testing.T) {
	fake := &fakeTB{TB: t}
	calls := 0
	Eventually(fake, 0, func() error {
		calls++
		return errors.New("no")
	})
	if calls != 1 || len(fake.failures) != 1 {
		t.Fatalf("calls = %d, failures = %q; want 1 call and 1 failure", calls, fake.failures)
	}
}

func TestFreePortCanBeBound(t *testing.T) {
	port := FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort returned %d", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen on the free port: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
