// Package freeport picks TCP ports on 127.0.0.1 for the servers that dcroll's
// tests and demo start. It is not for production listeners, which bind
// what the config says.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// minPort is the lowest port Ports picks: above the well-known and most
// registered services' ports.
const minPort = 10000

// Ports returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago.
//
// It picks from below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), which the kernel never hands out
// to a bind to port 0 or to an outgoing connection. A port from that range,
// once released, could be taken by any of the many clients and servers that
// run in parallel tests (BitTorrent peers, ZooKeeper clients) before the
// caller binds it, and held for minutes. Only another explicit bind can take
// a port chosen here, and a port is chosen here by one process at a time:
// each choice holds a lock file (see claim) until the process exits, so
// parallel test binaries never pick the same port, even one whose server
// has stopped for a while (a killed host, before its restart). Where the
// range cannot be read, it asks the kernel for any free port.
func Ports(n int) ([]int, error) {
	// Holding every listener until all are found keeps the ports distinct.
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	low := ephemeralLow()
	ports := make([]int, 0, n)
	for len(ports) < n {
		l, err := listen(low)
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// listen binds a port below low, or any port where there is no room below.
func listen(low int) (net.Listener, error) {
	if low > minPort+1000 {
		for range 100 {
			port := minPort + rand.IntN(low-minPort)
			if !claim(port) {
				continue
			}
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				return l, nil
			}
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

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

// lockDir holds one lock file per port claimed by a live process.
var lockDir = filepath.Join(os.TempDir(), "dcroll-freeport")

// claimed keeps the lock files of this process open: a lock lasts as long
// as its file stays open, that is until the process exits.
var claimed struct {
	sync.Mutex
	files []*os.File
}

// claim takes port for this process, or reports that another live process
// (or this one) took it already. Without a lock directory it claims
// nothing and lets the bind decide.
func claim(port int) bool {
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return true
	}
	f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return !errors.Is(err, unix.EWOULDBLOCK)
	}
	claimed.Lock()
	claimed.files = append(claimed.files, f)
	claimed.Unlock()
	return true
}
