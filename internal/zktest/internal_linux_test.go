package zktest

import (
	"errors"
	"syscall"
	"testing"
)

func TestIntegration_CleanupKillsServers(t *testing.T) {
	var pids []int
	t.Run("ensemble", func(t *testing.T) {
		c := Ensemble(t, 2)
		for _, s := range c.servers {
			pids = append(pids, s.currentProcess().cmd.Process.Pid)
		}
		// Kill one server before the test ends: cleanup must cope.
		c.Stop(0)
	})
	if len(pids) == 0 {
		t.Skip(skipMessage)
	}
	for _, pid := range pids {
		// The processes were reaped, so their IDs are gone, and so are
		// their process groups.
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after cleanup (kill: %v)", pid, err)
		}
	}
}
