package zktest

import (
	"os"
	"syscall"
)

// sysProcAttr puts a server's JVM in a process group of its own, so that it
// can be killed with everything it started, and has the kernel kill it if the
// test binary dies without cleaning up (for example on a test timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProcessGroup sends SIGKILL to the process group led by p.
func killProcessGroup(p *os.Process) error {
	return syscall.Kill(-p.Pid, syscall.SIGKILL)
}
