package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Names and addresses of everything a Lab creates. Every name starts with a
// prefix of its own, so a Lab can find and remove what an interrupted run
// left behind; a lock file makes sure only one Lab exists at a time.
const (
	nsPrefix   = "dcroll-e2e-" // network namespaces
	linkPrefix = "dce-"        // links in the root namespace
	bridgeName = linkPrefix + "br"
	lockPath   = "/run/dcroll-e2e.lock"
	// netnsEtc holds a namespace's own files: `ip netns exec NS` mounts
	// netnsEtc/NS/hosts over /etc/hosts, which is how the lab names its
	// nodes.
	netnsEtc = "/etc/netns"
)

// Subnet is the lab's network: part of 198.18.0.0/15, the range set aside
// for benchmarking (RFC 2544), which no real network routes. The bridge in
// the root namespace, where the test and the operator's commands run, has
// BridgeAddr.
var (
	Subnet     = netip.MustParsePrefix("198.18.0.0/24")
	BridgeAddr = netip.MustParseAddr("198.18.0.1")
)

// Lab is a small network: a bridge in the root namespace and nodes, each a
// network namespace with one address, joined to the bridge by a veth pair.
type Lab struct {
	lock *os.File
	// hosts names every address of the lab, in the order added; each node
	// resolves these names through its own hosts file.
	hosts []hostEntry
	nodes []*Node
}

// hostEntry is one line of a node's hosts file.
type hostEntry struct {
	addr netip.Addr
	name string
}

// Node is one network namespace of the lab.
type Node struct {
	Name string // short name: h1, zk2
	NS   string // the network namespace
	Addr netip.Addr
	link string // its veth end in the root namespace, on the bridge
}

// ErrUnavailable marks the errors of a machine where a Lab cannot be built:
// not root, no ip or tc command, or a kernel (or container) that refuses
// namespaces, bridges, veth pairs or the token bucket filter.
var ErrUnavailable = errors.New("the multi-host harness cannot run here")

// Available says why a Lab cannot be built here, or nil if it may: it needs
// root, the ip and tc commands and network namespaces. NewLab finds out the
// rest by trying.
func Available() error {
	if err := available(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

func available() error {
	if os.Geteuid() != 0 {
		return errors.New("it needs root for network namespaces, veth pairs and a bridge; run the tests as root")
	}
	for _, cmd := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("it needs the %s command: apt-get install -y iproute2", cmd)
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("it needs network namespaces: %v", err)
	}
	return nil
}

// NewLab takes the lab lock, removes whatever an earlier, interrupted run
// left behind, and creates the bridge. logf receives each step.
func NewLab(logf func(format string, args ...any)) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lab lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lab lock %s: another run of the harness holds it: %w", lockPath, err)
	}
	l := &Lab{lock: lock}
	// The root namespace, where the operator runs, is known to the nodes
	// by this machine's name, as a data center's DNS would know it.
	if name, err := os.Hostname(); err == nil && name != "" {
		l.hosts = append(l.hosts, hostEntry{BridgeAddr, name})
	}
	if err := l.sweep(logf); err != nil {
		l.Close()
		return nil, err
	}
	if err := checkSubnetFree(); err != nil {
		l.Close()
		return nil, err
	}
	// The first steps show whether this kernel lets us: a bridge, and a
	// token bucket on it (the slow-link fault).
	if err := ip("link", "add", bridgeName, "type", "bridge"); err != nil {
		l.Close()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := tc("qdisc", "add", "dev", bridgeName, "root", "tbf", "rate", "1mbit", "burst", "32kb", "latency", "50ms"); err != nil {
		l.Close()
		return nil, fmt.Errorf("%w: the slow-link fault needs the tbf qdisc (sch_tbf): %v", ErrUnavailable, err)
	}
	if err := tc("qdisc", "del", "dev", bridgeName, "root"); err != nil {
		l.Close()
		return nil, err
	}
	for _, s := range [][]string{
		{"addr", "add", BridgeAddr.String() + "/" + strconv.Itoa(Subnet.Bits()), "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if err := ip(s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// checkSubnetFree refuses to run where the root namespace already routes the
// lab's subnet: the lab would shadow a real network.
func checkSubnetFree() error {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "root", Subnet.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route show: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		return fmt.Errorf("this machine already routes %s (%s); the harness will not shadow it", Subnet, s)
	}
	return nil
}

// AddNode creates network namespace nsPrefix+name with address addr on the
// lab's bridge.
func (l *Lab) AddNode(name string, addr netip.Addr) (*Node, error) {
	if !Subnet.Contains(addr) || addr == BridgeAddr {
		return nil, fmt.Errorf("node %s: address %s is not a node address of %s", name, addr, Subnet)
	}
	n := &Node{Name: name, NS: nsPrefix + name, Addr: addr, link: linkPrefix + name}
	if len(n.link) > 15 {
		return nil, fmt.Errorf("node %s: name too long for a link name", name)
	}
	cidr := addr.String() + "/" + strconv.Itoa(Subnet.Bits())
	steps := [][]string{
		{"netns", "add", n.NS},
		{"link", "add", n.link, "type", "veth", "peer", "name", "eth0", "netns", n.NS},
		{"link", "set", n.link, "master", bridgeName, "up"},
		{"-n", n.NS, "addr", "add", cidr, "dev", "eth0"},
		{"-n", n.NS, "link", "set", "eth0", "up"},
		{"-n", n.NS, "link", "set", "lo", "up"},
	}
	for i, s := range steps {
		if err := ip(s...); err != nil {
			if i < 2 {
				// The first namespace or veth pair the kernel refuses.
				err = fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
	}
	l.nodes = append(l.nodes, n)
	l.hosts = append(l.hosts, hostEntry{addr, name})
	if err := l.writeHosts(); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return n, nil
}

// writeHosts gives every node a hosts file naming every address of the lab.
// The files are rewritten in place: a process already running in a node
// sees the mount of the file it started with, and so the new names.
func (l *Lab) writeHosts() error {
	var b strings.Builder
	b.WriteString("# written by the dcroll e2e harness; removed when it ends\n127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	for _, h := range l.hosts {
		fmt.Fprintf(&b, "%s\t%s\n", h.addr, h.name)
	}
	for _, n := range l.nodes {
		dir := filepath.Join(netnsEtc, n.NS)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Wrap returns argv as a command line that runs it inside the node's
// namespace. ip execs the command, so its process ID is the command's.
func (n *Node) Wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", n.NS}, argv...)
}

// Cut takes the node's link to the bridge down: nothing reaches the node or
// leaves it, but inside the node everything looks up, as when a switch port
// or a cable fails.
func (n *Node) Cut() error { return ip("link", "set", n.link, "down") }

// Heal brings the node's link back up.
func (n *Node) Heal() error { return ip("link", "set", n.link, "up") }

// Slow caps the node's traffic both ways at bitsPerSec with a token bucket.
func (n *Node) Slow(bitsPerSec int) error {
	rate := strconv.Itoa(bitsPerSec) + "bit"
	if err := tc("qdisc", "replace", "dev", n.link, "root", "tbf", "rate", rate, "burst", "32kb", "latency", "50ms"); err != nil {
		return err
	}
	return tc("-n", n.NS, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "32kb", "latency", "50ms")
}

// Unslow removes the caps of Slow.
func (n *Node) Unslow() error {
	err1 := tc("qdisc", "del", "dev", n.link, "root")
	err2 := tc("-n", n.NS, "qdisc", "del", "dev", "eth0", "root")
	return errors.Join(err1, err2)
}

// Close kills every process left in the lab's namespaces, removes the
// namespaces, their hosts files, links and bridge, and releases the lock.
func (l *Lab) Close() error {
	err := l.sweep(nil)
	if l.lock != nil {
		l.lock.Close()
	}
	return err
}

// sweep removes every namespace and link with the lab's prefixes, after
// killing the processes inside those namespaces: deleting a namespace does
// not end its processes. logf, if not nil, hears of each namespace removed.
func (l *Lab) sweep(logf func(format string, args ...any)) error {
	var errs []error
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(ns, nsPrefix) {
			continue
		}
		if err := killNamespace(ns); err != nil {
			errs = append(errs, err)
		}
		if err := ip("netns", "del", ns); err != nil {
			errs = append(errs, err)
		} else if logf != nil {
			logf("lab: removed namespace %s left by an earlier run", ns)
		}
	}
	// Hosts files of the lab's namespaces, whether or not the namespace
	// is still there.
	dirs, err := filepath.Glob(filepath.Join(netnsEtc, nsPrefix+"*"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(netnsEtc) // only if empty: it may hold others' files
	out, err = exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return fmt.Errorf("ip link show: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "12: dce-h1@if2: <...>"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if !strings.HasPrefix(name, linkPrefix) {
			continue
		}
		// A veth end goes with its namespace; what is left is removed.
		if err := ip("link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespace SIGKILLs every process in network namespace ns and waits
// until none is left.
func killNamespace(ns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return fmt.Errorf("ip netns pids %s: %w", ns, err)
		}
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %s survive SIGKILL", ns, strings.Join(pids, " "))
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for the kernel to reap them
	}
}

func ip(args ...string) error { return run("ip", args...) }
func tc(args ...string) error { return run("tc", args...) }
func run(name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
