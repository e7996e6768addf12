// Package state owns what a dcroll agent keeps on its host's disk: the local
// cache state.json and the unpacked releases with the current symlink that
// selects the one that runs.
//
// Both survive kill -9 and a power cut at any instant. state.json is
// replaced whole (a temp file, fsync, rename, fsync of the directory), and a
// version switch renames a new symlink over current and fsyncs the
// directory, so a reader always sees the old or the new content and never a
// torn one.
//
// The package knows nothing about ZooKeeper, downloads or how services are
// started: the agent fills the cache from ZooKeeper, fetch unpacks releases
// into the directories named here, and the agent decides when to switch.
// One agent writes a host's state; within a process Save and Activate
// serialize themselves, across processes nothing guards them.
package state

import (
	"errors"
	"sync"
)

// Sentinel errors, to be tested with errors.Is; the errors returned wrap them
// with the path and the detail.
var (
	// ErrMalformed marks a state file that is not valid JSON of the expected
	// shape or whose values break the rules (names, counts).
	ErrMalformed = errors.New("state: malformed state file")
	// ErrTooLarge marks a state file bigger than MaxFileSize.
	ErrTooLarge = errors.New("state: state file too large")
	// ErrInvalidName marks a service or version name that cannot be a
	// directory name under releases/.
	ErrInvalidName = errors.New("state: invalid name")
	// ErrNotInstalled marks a version without an unpacked release directory.
	ErrNotInstalled = errors.New("state: release not installed")
	// ErrNoCurrent marks a service without a current symlink.
	ErrNoCurrent = errors.New("state: no current release")
	// ErrBadCurrent marks a current entry that is not a symlink to an
	// installed release.
	ErrBadCurrent = errors.New("state: current is not a link to an installed release")
)

// writeMu serializes the writers of this package within a process: each of
// them first removes temp files that a killed predecessor left behind, which
// must not race with another writer's temp file still in use.
var writeMu sync.Mutex
