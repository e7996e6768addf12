// Package testutil holds small helpers shared by dcroll's tests.
package testutil

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
//
// It picks from below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), which the kernel never hands
// out to a bind to port 0 or to an outgoing connection. A port from that
// range, once released, could be taken by any of the many clients and
// servers that run in parallel tests (BitTorrent peers, ZooKeeper clients)
// before the caller binds it, and held for minutes. Only another explicit
// bind can take a port chosen here. Where the range cannot be read, it
// asks the kernel for any free port.
func FreePort(t testing.TB) int {
	t.Helper()
	if low := ephemeralLow(); low > minPort+1000 {
		for range 100 {
			port := minPort + rand.IntN(low-minPort)
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue // taken: try another
			}
			if err := l.Close(); err != nil {
				t.Fatalf("find a free port: close listener: %v", err)
				return 0
			}
			return port
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
		return 0
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("find a free port: close listener: %v", err)
		return 0
	}
	return port
}

// minPort is the lowest port FreePort picks: above the well-known and most
// registered services' ports.
const minPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range, or 0 if
// it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return low
}
