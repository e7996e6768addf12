// Package testutil holds small helpers shared by dcroll's tests.
package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/freeport"
)

// PollInterval is how long Eventually waits between two calls of its condition.
const PollInterval = 20 * time.Millisecond

// Eventually calls cond every PollInterval until it returns nil. If cond has
// not returned nil when timeout has passed, the test fails with the last
// error cond returned. cond is always called at least once.
//
// Use Eventually instead of sleeping for a guessed amount of time: it waits
// only as long as needed and says what was still wrong when it gives up.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for attempts := 1; ; attempts++ {
		err := cond()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("condition not met within %v (%d attempts): %v", timeout, attempts, err)
			return // in case a fake testing.TB does not stop the goroutine
		}
		time.Sleep(PollInterval)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, below
// the kernel's ephemeral range (see freeport.Ports).
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
		return 0
	}
	return ports[0]
}

// Buffer is a bytes.Buffer that a process or a running mode may write
// while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
