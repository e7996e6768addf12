package fetch

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrMemlockLimit means the memlock limit is too low to lock the hot files;
// the agent says so and carries on without locking.
var ErrMemlockLimit = errors.New("fetch: memlock limit too low")

// Locked holds a service's hot files mapped and locked in memory, so that a
// large transfer cannot evict them from the page cache.
type Locked struct {
	maps  [][]byte
	bytes int64
}

// Bytes is how much is locked.
func (l *Locked) Bytes() int64 { return l.bytes }

// LockFiles maps each file read-only and locks it in memory. It first checks
// the total against RLIMIT_MEMLOCK and refuses with ErrMemlockLimit, naming
// the sizes and what to raise, rather than lock part of the set. On any
// error nothing stays locked.
func LockFiles(paths []string) (*Locked, error) {
	var total int64
	sizes := make([]int64, len(paths))
	for i, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("fetch: hot file: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("fetch: hot file %s is not a regular file", p)
		}
		sizes[i] = st.Size()
		total += st.Size()
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err == nil && lim.Cur != unix.RLIM_INFINITY && uint64(total) > lim.Cur {
		return nil, fmt.Errorf("%w: the hot files need %d bytes, the limit is %d; raise LimitMEMLOCK= in the systemd unit (or memlock in limits.d)",
			ErrMemlockLimit, total, lim.Cur)
	}
	l := &Locked{}
	for i, p := range paths {
		if sizes[i] == 0 {
			continue
		}
		if err := l.lock(p, sizes[i]); err != nil {
			l.Unlock()
			return nil, err
		}
	}
	return l, nil
}

func (l *Locked) lock(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fetch: hot file: %w", err)
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("fetch: map %s: %w", path, err)
	}
	if err := unix.Mlock(b); err != nil {
		_ = unix.Munmap(b)
		if errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: lock %s: %v", ErrMemlockLimit, path, err)
		}
		return fmt.Errorf("fetch: lock %s: %w", path, err)
	}
	l.maps = append(l.maps, b)
	l.bytes += size
	return nil
}

// Unlock unlocks and unmaps every file. It is safe to call more than once.
func (l *Locked) Unlock() {
	for _, b := range l.maps {
		_ = unix.Munlock(b)
		_ = unix.Munmap(b)
	}
	l.maps, l.bytes = nil, 0
}
