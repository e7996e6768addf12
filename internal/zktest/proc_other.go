//go:build !linux

package zktest

import (
	"os"
	"syscall"
)

// sysProcAttr returns nil: process groups are used on Linux only, where the
// integration tests run.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killProcessGroup kills p, which leads no process group outside Linux.
func killProcessGroup(p *os.Process) error { return p.Kill() }
