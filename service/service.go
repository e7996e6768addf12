// Package service starts, stops and health-checks one service on this host,
// the way the host config says: through commands (such as systemctl) or by
// supervising a process itself. It knows nothing of ZooKeeper.
package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
)

// Unit is one configured service.
type Unit struct {
	Name string
	cfg  config.Service
	log  hclog.Logger
	http *http.Client

	// inproc, when set, plays the service inside this process (see
	// InProcess); cfg's commands are then not run.
	inproc InProcess

	mu      sync.Mutex
	proc    *exec.Cmd     // the supervised process, when cfg.Run is set
	exited  chan struct{} // closed when proc exits
	version string
}

// New returns the unit for one service of the host config.
func New(name string, cfg config.Service, log hclog.Logger) *Unit {
	return &Unit{
		Name: name,
		cfg:  cfg,
		log:  log.Named(name),
		http: &http.Client{Timeout: cfg.Health.Timeout},
	}
}

// InProcess is a service played inside the agent's own process instead of
// by commands: the fleet simulator runs thousands of hosts in one process
// with it, so that what it measures is dcroll's cost, not that of starting
// processes. Start and Stop return at once.
type InProcess interface {
	Start(version string) error
	Stop()
	Check() error
}

// NewInProcess returns a unit for one service of the host config that p
// plays. It behaves as a supervised unit whose process never exits.
func NewInProcess(name string, cfg config.Service, log hclog.Logger, p InProcess) *Unit {
	u := New(name, cfg, log)
	u.inproc = p
	return u
}

// env is what every command of the unit sees besides the agent's own
// environment.
func (u *Unit) env(version, dir string) []string {
	return append(os.Environ(),
		"DCROLL_SERVICE="+u.Name,
		"DCROLL_VERSION="+version,
		"DCROLL_RELEASE_DIR="+dir,
	)
}

// Start starts version, unpacked in dir. With start/stop commands it runs
// the start command and returns its result; with a supervised command it
// starts the process and returns once it runs.
func (u *Unit) Start(ctx context.Context, version, dir string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.version = version
	if u.inproc != nil {
		return u.inproc.Start(version)
	}
	if u.cfg.Run == "" {
		return u.runCommand(ctx, "start", u.cfg.Start, version, dir, u.cfg.StopTimeout)
	}
	if u.proc != nil {
		return fmt.Errorf("service %s: already running (pid %d)", u.Name, u.proc.Process.Pid)
	}
	cmd := exec.Command("/bin/sh", "-c", u.cfg.Run)
	cmd.Dir = dir
	cmd.Env = u.env(version, dir)
	cmd.Stdout = u.log.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info})
	cmd.Stderr = u.log.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn})
	// Its own process group, so stop reaches the whole tree, and a signal
	// when the agent dies, so a restarted agent never finds an orphan
	// holding the service's port.
	// As the configured user and group, if any: set before the death
	// signal, which a change of credentials would clear.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: u.cfg.Credential}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("service %s: start %q: %w", u.Name, u.cfg.Run, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		u.log.Info("process exited", "pid", cmd.Process.Pid, "version", version, "status", exitStatus(err))
		u.mu.Lock()
		if u.proc == cmd {
			u.proc = nil
		}
		u.mu.Unlock()
		close(exited)
	}()
	u.proc, u.exited = cmd, exited
	u.log.Info("started", "version", version, "pid", cmd.Process.Pid)
	return nil
}

// Running reports whether a supervised process is alive. Units driven by
// start/stop commands always report true: their health check tells.
func (u *Unit) Running() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cfg.Run == "" || u.proc != nil || u.inproc != nil
}

// Supervised reports whether the agent runs the service's process itself.
func (u *Unit) Supervised() bool { return u.cfg.Run != "" || u.inproc != nil }

// Version is the version last started.
func (u *Unit) Version() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.version
}

// Stop stops the service: the stop command, or SIGTERM to the supervised
// process group and SIGKILL after the stop timeout.
func (u *Unit) Stop(ctx context.Context) error {
	if u.inproc != nil {
		u.inproc.Stop()
		return nil
	}
	u.mu.Lock()
	if u.cfg.Run == "" {
		defer u.mu.Unlock()
		return u.runCommand(ctx, "stop", u.cfg.Stop, u.version, "", u.cfg.StopTimeout)
	}
	proc, exited := u.proc, u.exited
	u.mu.Unlock()
	if proc == nil {
		return nil
	}
	pgid := proc.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(u.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
		u.log.Warn("did not stop in time, killing", "pid", pgid, "timeout", u.cfg.StopTimeout)
	case <-ctx.Done():
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-exited
	return nil
}

func (u *Unit) runCommand(ctx context.Context, what, command, version, dir string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := shell(ctx, command)
	cmd.Env = u.env(version, dir)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("service %s: %s command %q: %s: %s", u.Name, what, command, exitStatus(err), lastLine(out))
	}
	return nil
}

// Check runs the health check once.
func (u *Unit) Check(ctx context.Context) error {
	if u.inproc != nil {
		return u.inproc.Check()
	}
	h := u.cfg.Health
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	switch {
	case h.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.HTTP, nil)
		if err != nil {
			return err
		}
		resp, err := u.http.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", h.HTTP, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: %s", h.HTTP, resp.Status)
		}
		return nil
	case h.TCP != "":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", h.TCP)
		if err != nil {
			return err
		}
		return c.Close()
	default:
		cmd := shell(ctx, h.Command)
		cmd.SysProcAttr.Credential = u.cfg.Credential
		cmd.Env = u.env(u.Version(), "")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%q: %s: %s", h.Command, exitStatus(err), lastLine(out))
		}
		return nil
	}
}

// shell runs command with /bin/sh in its own process group; when ctx ends
// the whole group is killed, so a command that left children behind cannot
// hold the agent waiting on its output.
func shell(ctx context.Context, command string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}

// Interval is how often the health check runs.
func (u *Unit) Interval() time.Duration { return u.cfg.Health.Interval }

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

func lastLine(out []byte) string {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
