// Package memstat reads a process's memory use from Linux's /proc: its
// resident set, and how much of it is pages of files mapped from given
// directories; also how much of a file is in the page cache, and the load. Benchmarks and tests use it to count, not time, what a
// transfer costs in memory. Elsewhere than Linux every call fails.
package memstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Self is the pid that names the calling process.
const Self = 0

func procPath(pid int, file string) string {
	if pid == Self {
		return filepath.Join("/proc/self", file)
	}
	return filepath.Join("/proc", strconv.Itoa(pid), file)
}

// RSS is the resident set size of process pid, in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return 0, fmt.Errorf("memstat: %w", err)
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			return kib(rest)
		}
	}
	return 0, fmt.Errorf("memstat: no VmRSS in %s", procPath(pid, "status"))
}

// MappedResident is how many bytes of process pid's resident set are pages
// of the files it maps that are one of paths or lie within one of them.
func MappedResident(pid int, paths ...string) (int64, error) {
	f, err := os.Open(procPath(pid, "smaps"))
	if err != nil {
		return 0, fmt.Errorf("memstat: %w", err)
	}
	defer f.Close()
	var total int64
	inside := false // the current mapping is of a file within dirs
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			// A mapping's header: address perms offset dev inode [path].
			inside = len(fields) >= 6 && within(strings.Join(fields[5:], " "), paths)
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok && inside {
			n, err := kib([]byte(rest))
			if err != nil {
				return 0, err
			}
			total += n
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("memstat: %w", err)
	}
	return total, nil
}

func within(path string, dirs []string) bool {
	for _, d := range dirs {
		d = filepath.Clean(d)
		if path == d || strings.HasPrefix(path, d+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// kib parses " 1234 kB" into bytes.
func kib(b []byte) (int64, error) {
	s := strings.TrimSuffix(strings.TrimSpace(string(b)), " kB")
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memstat: bad size %q", b)
	}
	return n << 10, nil
}

// Cached is how many bytes of the file at path are in the page cache, as
// mincore(2) reports them. It maps the file to ask, without touching it.
func Cached(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("memstat: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("memstat: map %s: %w", path, err)
	}
	defer unix.Munmap(m)
	page := int64(os.Getpagesize())
	vec := make([]byte, (fi.Size()+page-1)/page)
	// x/sys has no wrapper for mincore.
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return 0, fmt.Errorf("memstat: mincore %s: %w", path, errno)
	}
	var n int64
	for _, v := range vec {
		if v&1 != 0 {
			n += page
		}
	}
	return min(n, fi.Size()), nil
}

// LoadAverage is the machine's load average over the last minute.
func LoadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, fmt.Errorf("memstat: %w", err)
	}
	first, _, _ := strings.Cut(string(b), " ")
	return strconv.ParseFloat(first, 64)
}
