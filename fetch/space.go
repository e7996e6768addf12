package fetch

import (
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// ErrNoSpace means a file system has too little free space for a release.
var ErrNoSpace = errors.New("fetch: not enough free space")

// Need is room a release needs in one directory: What names it in errors.
type Need struct {
	Dir   string
	Bytes int64
	What  string
}

// CheckSpace reports an ErrNoSpace when the file systems holding the
// directories have less space free, for an unprivileged user, than the
// needs add up to on each. It refuses a release that would fill the disk
// before a byte of it is written. A directory that does not exist yet is
// looked up through its nearest existing parent by the caller.
func CheckSpace(needs ...Need) error {
	type fsNeed struct {
		dir   string
		free  int64
		bytes int64
		what  []string
	}
	var byFS []*fsNeed
	ids := map[unix.Fsid]*fsNeed{}
	for _, n := range needs {
		if n.Bytes <= 0 {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(n.Dir, &st); err != nil {
			return fmt.Errorf("fetch: free space in %s: %w", n.Dir, err)
		}
		f := ids[st.Fsid]
		if f == nil {
			free := uint64(math.MaxInt64)
			if st.Bsize > 0 && st.Bavail < free/uint64(st.Bsize) {
				free = st.Bavail * uint64(st.Bsize)
			}
			f = &fsNeed{dir: n.Dir, free: int64(free)}
			ids[st.Fsid] = f
			byFS = append(byFS, f)
		}
		f.bytes = addCapped(f.bytes, n.Bytes)
		f.what = append(f.what, fmt.Sprintf("%s %d", n.What, n.Bytes))
	}
	for _, f := range byFS {
		if f.bytes > f.free {
			return fmt.Errorf("%w in %s: %d bytes free, %d needed (%v); free some space or stage a smaller release",
				ErrNoSpace, f.dir, f.free, f.bytes, f.what)
		}
	}
	return nil
}

func addCapped(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
