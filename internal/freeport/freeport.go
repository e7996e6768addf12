// Package freeport picks TCP ports on 127.0.0.1 for the servers that dcroll's
// tests and demo start. It is not for production listeners, which bind
// what the config says.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
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
// a port chosen here. Where the range cannot be read, it asks the kernel for
// any free port.
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
