// Package classicio makes anacrolix/torrent's file storage read and write
// with pread and pwrite instead of mapping the files it stores.
//
// A mapped file's pages count in the process's resident set and its cgroup:
// an agent that fetched a 256 MiB release held 287 MiB while it seeded, and
// those pages crowded out the ones hot_files protects. Read and written with
// system calls, the same data is ordinary page cache that the kernel
// reclaims first.
//
// anacrolix/torrent v1.59.1 chooses between the two once, in its storage
// package's init, from the environment variable
// TORRENT_STORAGE_DEFAULT_FILE_IO, and has no option for it. This package's
// init sets the variable before that: it imports only os, so it is ready as
// soon as os is initialized, and the Go specification (since Go 1.21)
// initializes ready packages in the order of their import paths. The storage
// package depends on log (through log/slog), which imports os and sorts
// after this package, so this package's init runs before log's and
// therefore before storage's.
// fetch.TestIntegration_SwarmMapsNoFile checks the outcome: a fetch maps
// none of its files.
//
// An operator may still choose "mmap" with the variable; any other value,
// which would make the library panic, means classic. Restore puts the
// environment back as it was, so child processes do not inherit the choice.
package classicio

import "os"

// Env is the variable anacrolix/torrent's storage package reads.
const Env = "TORRENT_STORAGE_DEFAULT_FILE_IO"

var (
	old    string
	hadOld bool
	chosen string
)

func init() {
	old, hadOld = os.LookupEnv(Env)
	chosen = "classic"
	if old == "mmap" {
		chosen = "mmap"
	}
	os.Setenv(Env, chosen)
}

// Chosen is the file I/O the storage package was given: "classic" or
// "mmap".
func Chosen() string { return chosen }

// Restore sets the variable back to what the process started with. Call it
// from the init of a package that imports the storage package, which has
// read it by then.
func Restore() {
	if hadOld {
		os.Setenv(Env, old)
	} else {
		os.Unsetenv(Env)
	}
}
