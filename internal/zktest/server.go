package zktest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// mainClass runs a standalone server or an ensemble member, depending
	// on the configuration.
	mainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

	// logTailBytes and logTailLines bound the end of a log shown in errors.
	logTailBytes = 8 << 10
	logTailLines = 40
)

// server is one ZooKeeper server of a Cluster: its directory and ports,
// which stay the same across restarts, and its process while it runs.
type server struct {
	index        int // position in Cluster.servers; the myid is index+1
	dir          string
	host         string // the address it listens on
	clientPort   int
	peerPort     int
	electionPort int
	observer     bool // follows the leader without voting
	// tls, when set, makes the client port a secure client port that
	// serves TLS only.
	tls *tlsServer

	mu   sync.Mutex
	proc *process // nil when the server is stopped
}

// process is a started JVM.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // the result of cmd.Wait, set before done is closed
}

func (s *server) clientAddr() string {
	return net.JoinHostPort(s.host, strconv.Itoa(s.clientPort))
}

func (s *server) configPath() string { return filepath.Join(s.dir, "zoo.cfg") }
func (s *server) dataDir() string    { return filepath.Join(s.dir, "data") }
func (s *server) logPath() string    { return filepath.Join(s.dir, "zookeeper.log") }

// writeConfig creates the server's directory with its zoo.cfg and, for an
// ensemble member, the myid file naming it among all.
func (s *server) writeConfig(all []*server, ensemble bool) error {
	if err := os.MkdirAll(s.dataDir(), 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "tickTime=200\n")
	fmt.Fprintf(&cfg, "dataDir=%s\n", s.dataDir())
	if s.tls != nil {
		cfg.WriteString(s.tls.config(s.host, s.clientPort))
	} else {
		fmt.Fprintf(&cfg, "clientPort=%d\n", s.clientPort)
		fmt.Fprintf(&cfg, "clientPortAddress=%s\n", s.host)
	}
	fmt.Fprintf(&cfg, "admin.enableServer=false\n")
	fmt.Fprintf(&cfg, "minSessionTimeout=400\n")
	fmt.Fprintf(&cfg, "maxSessionTimeout=60000\n")
	fmt.Fprintf(&cfg, "4lw.commands.whitelist=srvr,ruok,mntr,wchs,wchp,cons\n")
	// No cap on connections per client address: the fleet simulator holds
	// thousands of sessions from 127.0.0.1.
	fmt.Fprintf(&cfg, "maxClientCnxns=0\n")
	// Test data need not survive a power cut; skipping fsync and the
	// 64 MB preallocation of transaction logs keeps the tests fast.
	fmt.Fprintf(&cfg, "forceSync=no\n")
	fmt.Fprintf(&cfg, "preAllocSize=1024\n")
	if ensemble {
		fmt.Fprintf(&cfg, "initLimit=10\n")
		fmt.Fprintf(&cfg, "syncLimit=5\n")
		if s.observer {
			fmt.Fprintf(&cfg, "peerType=observer\n")
		}
		for _, peer := range all {
			role := ""
			if peer.observer {
				role = ":observer"
			}
			fmt.Fprintf(&cfg, "server.%d=%s:%d:%d%s\n", peer.index+1, peer.host, peer.peerPort, peer.electionPort, role)
		}
		myid := strconv.Itoa(s.index+1) + "\n"
		if err := os.WriteFile(filepath.Join(s.dataDir(), "myid"), []byte(myid), 0o644); err != nil {
			return fmt.Errorf("write myid: %w", err)
		}
	}
	if err := os.WriteFile(s.configPath(), []byte(cfg.String()), 0o644); err != nil {
		return fmt.Errorf("write zoo.cfg: %w", err)
	}
	return nil
}

// start starts the server's JVM in its own process group, appending its
// output to the server's log file. It does not wait until the server serves.
// wrap, if not nil, turns the JVM's command line into the one to run.
func (s *server) start(java, classpath string, flags []string, wrap func(index int, argv []string) []string) error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("server %d: open log: %w", s.index, err)
	}
	defer logFile.Close() // the JVM has its own descriptor

	argv := append([]string{java}, flags...)
	argv = append(argv, "-cp", classpath, mainClass, s.configPath())
	if wrap != nil {
		argv = wrap(s.index, argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()

	fmt.Fprintf(logFile, "=== zktest: %s: starting server %d: %s\n",
		time.Now().Format(time.RFC3339Nano), s.index, strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("server %d: start %s: %w", s.index, argv[0], err)
	}

	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// stop kills the server's process group and waits until the JVM has exited.
// It does nothing if the server is stopped.
func (s *server) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		// Already exited and reaped: its process group ID may belong to
		// another process by now, so do not signal it.
	default:
		// An error means that the process exited meanwhile; Wait returns
		// either way.
		_ = killProcessGroup(p.cmd.Process)
		<-p.done
	}
}

// currentProcess returns the server's process, nil if it is stopped.
func (s *server) currentProcess() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// running tells whether the server was started, not stopped, and its process
// has not exited.
func (s *server) running() bool {
	p := s.currentProcess()
	return p != nil && !p.exited()
}

// exited tells whether the server was started and not stopped, but its
// process has exited on its own.
func (s *server) exited() bool {
	p := s.currentProcess()
	return p != nil && p.exited()
}

// exitErr describes how the server's process exited.
func (s *server) exitErr() error {
	p := s.currentProcess()
	if p == nil || !p.exited() {
		return errors.New("the process has not exited")
	}
	if p.err == nil {
		return errors.New("exit status 0")
	}
	return p.err
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// mode asks the server for its mode with the srvr four-letter word.
func (s *server) mode() (string, error) {
	out, err := s.fourLetterWord("srvr")
	if err != nil {
		return "", err
	}
	return parseMode(out)
}

// parseMode returns the value of the "Mode:" line of an answer to srvr.
func parseMode(answer string) (string, error) {
	for line := range strings.Lines(answer) {
		if mode, ok := strings.CutPrefix(strings.TrimSpace(line), "Mode:"); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	return "", fmt.Errorf("srvr answered without a mode: %q", strings.TrimSpace(answer))
}

// fourLetterWord sends a four-letter word command to the server, over TLS
// if it serves only that, and returns its answer.
func (s *server) fourLetterWord(cmd string) (string, error) {
	if s.tls == nil {
		return fourLetterWord(s.clientAddr(), cmd, nil)
	}
	return fourLetterWord(s.clientAddr(), cmd, s.tls.client)
}

// fourLetterWord sends a four-letter word command to a ZooKeeper server,
// over TLS when tlsConfig is not nil, and returns its answer.
func fourLetterWord(addr, cmd string, tlsConfig *tls.Config) (string, error) {
	var conn net.Conn
	var err error
	if tlsConfig != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, tlsConfig)
	} else {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", fmt.Errorf("%s: set deadline: %w", cmd, err)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("%s: send: %w", cmd, err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("%s: read answer: %w", cmd, err)
	}
	return string(answer), nil
}

// logTail returns the last lines of the server's log, introduced by a
// newline, for error messages.
func (s *server) logTail() string {
	tail, err := readTail(s.logPath(), logTailBytes, logTailLines)
	if err != nil {
		return fmt.Sprintf("\n(no log: %v)", err)
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s--- end of log ---", s.logPath(), tail)
}

// readTail returns at most the last maxLines lines within the last maxBytes
// bytes of the file at path.
func readTail(path string, maxBytes int64, maxLines int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	offset := max(info.Size()-maxBytes, 0)
	buf := make([]byte, info.Size()-offset)
	if _, err := f.ReadAt(buf, offset); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if offset > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	lines := strings.SplitAfter(string(buf), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	lines = lines[max(len(lines)-maxLines, 0):]
	tail := strings.Join(lines, "")
	if tail != "" && !strings.HasSuffix(tail, "\n") {
		tail += "\n"
	}
	return tail, nil
}
