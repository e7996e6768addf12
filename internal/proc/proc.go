// Package proc runs child processes the way dcroll's demo and its test
// harnesses need them: each in a process group of its own, its output
// appended to a log file, killed by the kernel if the parent dies first, and
// reaped by a goroutine so that its state can be asked at any time.
package proc

import (
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a started child process.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and was reaped
	err  error         // cmd.Wait's result, set before done is closed
}

// Start starts argv in dir with env (nil: the parent's), appending its
// output to logPath. The process leads a new process group, so a Ctrl-C on
// the terminal reaches only the parent, which then stops its children in
// order; and the kernel kills it with SIGKILL if the parent dies without
// cleaning up.
func Start(argv []string, dir, logPath string, env []string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's ID, also its process group's.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and was reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (cmd.Wait's result); valid once Done is
// closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has exited and was reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process alone, unless it was reaped: its ID may
// belong to another process by now.
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Kill sends SIGKILL to the process group and waits until the process has
// exited.
func (p *Proc) Kill() {
	if p.Exited() {
		// Reaped: its group ID may belong to another process by now.
		return
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// Terminate asks the process to stop with SIGTERM and kills its group if
// it has not exited after grace.
func (p *Proc) Terminate(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
	}
}
