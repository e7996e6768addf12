package fetch

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// vmLockedKB reads VmLck from /proc/self/status.
func vmLockedKB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmLck:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no VmLck in /proc/self/status")
	return 0
}

func TestLockFilesLocksAndUnlocks(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, size := range []int{1 << 20, 3 << 20, 0} {
		p := filepath.Join(dir, "hot"+strconv.Itoa(i))
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	before := vmLockedKB(t)
	l, err := LockFiles(paths)
	if errors.Is(err, ErrMemlockLimit) {
		t.Skipf("this machine's memlock limit is too low for the test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := vmLockedKB(t) - before; got < 4<<10 {
		t.Fatalf("VmLck grew by %d kB while 4 MiB of hot files are locked", got)
	}
	if l.Bytes() != 4<<20 {
		t.Fatalf("Bytes %d", l.Bytes())
	}
	l.Unlock()
	l.Unlock()
	if got := vmLockedKB(t) - before; got != 0 {
		t.Fatalf("VmLck still %d kB above where it started after Unlock", got)
	}
}

func TestLockFilesRefusesBeyondTheLimit(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	// Lower this process's soft limit for the test, and restore it.
	low := unix.Rlimit{Cur: 1 << 20, Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_MEMLOCK: %v", err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim) })
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	before := vmLockedKB(t)
	_, err := LockFiles([]string{p})
	if !errors.Is(err, ErrMemlockLimit) || !strings.Contains(err.Error(), "LimitMEMLOCK") {
		t.Fatalf("want ErrMemlockLimit naming LimitMEMLOCK, got %v", err)
	}
	if vmLockedKB(t) != before {
		t.Fatal("a refused lock left memory locked")
	}
	if _, err := LockFiles([]string{filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("a missing hot file should be an error")
	}
}
