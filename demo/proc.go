package demo

import (
	"bytes"
	"errors"
	"os"
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
