package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dcroll/dcroll/internal/freeport"
	"github.com/dcroll/dcroll/internal/proc"
	"github.com/dcroll/dcroll/internal/zkjar"
)

// InstallHint is the one command that installs what the demo needs.
const InstallHint = "sudo apt-get install -y zookeeper"

// ErrNoZooKeeper means neither a ZooKeeper to use nor the means to run one
// were found.
var ErrNoZooKeeper = zkjar.ErrNotFound

// zkStartAttempts is how often the server is started on a fresh port when
// it dies during startup (usually another process took its port).
const zkStartAttempts = 3

// zkReadyTimeout bounds how long the JVM may take to serve.
const zkReadyTimeout = 60 * time.Second

// LookupZooKeeper finds java and the server's classpath: jar if not empty
// (trusted as given, like ZOOKEEPER_JAR), else the Debian jar. The error
// wraps ErrNoZooKeeper.
func LookupZooKeeper(jar string) (java, classpath string, err error) {
	return zkjar.Lookup(jar)
}

// zooKeeper is the standalone server the demo runs in its work directory.
type zooKeeper struct {
	dir  string
	port int
	proc *proc.Proc
}

func (z *zooKeeper) addr() string       { return net.JoinHostPort("127.0.0.1", strconv.Itoa(z.port)) }
func (z *zooKeeper) logPath() string    { return filepath.Join(z.dir, "zookeeper.log") }
func (z *zooKeeper) configPath() string { return filepath.Join(z.dir, "zoo.cfg") }

// startZooKeeper runs a standalone server in dir on a free loopback port and
// waits until it serves. env is the JVM's environment.
func startZooKeeper(ctx context.Context, java, classpath, dir string, env []string) (*zooKeeper, error) {
	var last error
	for attempt := 1; attempt <= zkStartAttempts; attempt++ {
		z, err := tryZooKeeper(ctx, java, classpath, dir, env)
		if err == nil {
			return z, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = err
	}
	return nil, last
}

func tryZooKeeper(ctx context.Context, java, classpath, dir string, env []string) (*zooKeeper, error) {
	ports, err := freeport.Ports(1)
	if err != nil {
		return nil, err
	}
	port := ports[0]
	z := &zooKeeper{dir: dir, port: port}
	data := filepath.Join(dir, "data")
	// A failed attempt may have left data behind.
	if err := os.RemoveAll(data); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	cfg := strings.Join([]string{
		"tickTime=200",
		"dataDir=" + data,
		"clientPort=" + strconv.Itoa(port),
		"clientPortAddress=127.0.0.1",
		"admin.enableServer=false",
		"minSessionTimeout=400",
		"maxSessionTimeout=60000",
		"4lw.commands.whitelist=srvr,ruok,mntr",
		// Demo data need not survive a power cut.
		"forceSync=no",
		"preAllocSize=1024",
	}, "\n") + "\n"
	if err := os.WriteFile(z.configPath(), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := append(zkjar.JVMFlags(""), "-cp", classpath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", z.configPath())
	z.proc, err = proc.Start(append([]string{java}, args...), dir, z.logPath(), env)
	if err != nil {
		return nil, fmt.Errorf("start ZooKeeper: %w", err)
	}
	deadline := time.NewTimer(zkReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		mode, err := srvrMode(z.addr())
		if err == nil && mode == "standalone" {
			return z, nil
		}
		select {
		case <-z.proc.Done():
			return nil, fmt.Errorf("ZooKeeper exited during startup (%v); see %s", z.proc.Err(), z.logPath())
		case <-ctx.Done():
			z.proc.Kill()
			return nil, ctx.Err()
		case <-deadline.C:
			z.proc.Kill()
			return nil, fmt.Errorf("ZooKeeper did not serve on %s within %s (last: %v); see %s", z.addr(), zkReadyTimeout, err, z.logPath())
		case <-tick.C:
		}
	}
}

// stop kills the server and waits until it has exited.
func (z *zooKeeper) stop() {
	if z != nil && z.proc != nil {
		z.proc.Kill()
	}
}

// srvrMode asks a server for its mode with the srvr four-letter word.
func srvrMode(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "srvr"); err != nil {
		return "", err
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(answer)) {
		if mode, ok := strings.CutPrefix(strings.TrimSpace(line), "Mode:"); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	return "", fmt.Errorf("srvr answered without a mode: %q", strings.TrimSpace(string(answer)))
}
