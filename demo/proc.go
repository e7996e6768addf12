package demo

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// markerVar is set in the environment of every process the demo starts, to
// the demo's work directory. Agents pass their environment on to the
// services they run, so the whole tree carries it, and a sweep of /proc can
// find anything that outlived its parent. A file viewer the user points at
// the work directory does not carry it, so it is never swept. It must not
// start with DCROLL_: the agent refuses unknown DCROLL_* variables.
const markerVar = "DEMO_DCROLL_RUN"

// proc is a child process in a process group of its own.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and was reaped
	err  error         // cmd.Wait's result, set before done is closed
}

// startProc starts path with args in dir, appending its output to logPath.
// The process leads a new process group, so a Ctrl-C on the terminal reaches
// only the demo, which then stops its children in order; and the kernel
// kills it if the demo dies without cleaning up.
func startProc(path string, args []string, dir, logPath string, env []string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process group and waits until the process has
// exited.
func (p *proc) kill() {
	if p.exited() {
		// Reaped: its group ID may belong to another process by now.
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// terminate asks the process to stop with SIGTERM and kills its group if it
// has not exited after grace.
func (p *proc) terminate(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
	}
}

// marked lists the processes whose environment holds markerVar=dir, other
// than this one. It reads /proc, so it finds nothing outside Linux.
func marked(dir string) []int {
	want := []byte(markerVar + "=" + dir)
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// sweep kills every process marked with dir and returns their pids. The
// demo stops its children in order first; sweep is the safety net for
// anything that escaped, such as a service whose agent was killed before it
// could stop it.
func sweep(dir string) []int {
	var killed []int
	for range 3 {
		pids := marked(dir)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil || !errors.Is(err, syscall.ESRCH) {
				killed = append(killed, pid)
			}
		}
		time.Sleep(100 * time.Millisecond) // let the kernel finish them off before looking again
	}
	return killed
}
