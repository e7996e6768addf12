package memstat

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// sink keeps the page reads from being optimised away.
var sink byte

func TestRSSAndMappedResident(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux's /proc")
	}
	rss, err := RSS(Self)
	if err != nil || rss <= 0 {
		t.Fatalf("RSS = %d, %v; want a positive size", rss, err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "data")
	const size = 4 << 20
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := MappedResident(Self, dir); err != nil || n != 0 {
		t.Fatalf("before mapping: MappedResident = %d, %v; want 0", n, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < size; i += 4096 {
		sink += m[i] // touch every page
	}
	if n, err := MappedResident(Self, dir); err != nil || n != size {
		t.Errorf("mapped and touched: MappedResident = %d, %v; want %d", n, err, size)
	}
	if n, err := MappedResident(Self, filepath.Join(dir, "other")); err != nil || n != 0 {
		t.Errorf("another directory: MappedResident = %d, %v; want 0", n, err)
	}
	if n, err := Cached(path); err != nil || n != size {
		t.Errorf("Cached = %d, %v; want %d (just read)", n, err, size)
	}
	if err := syscall.Munmap(m); err != nil {
		t.Fatal(err)
	}
	if n, err := MappedResident(Self, dir); err != nil || n != 0 {
		t.Errorf("unmapped: MappedResident = %d, %v; want 0", n, err)
	}
}
