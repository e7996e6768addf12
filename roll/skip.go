package roll

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
)

// Skipped is a child of /current/<svc>, /members/<svc>, /hosts, /refused,
// a service's turns or the deploy queue that a read left out: its name is
// not a valid host name, or its data does not decode. The fleet is read without it, so one bad node written by a
// broken or hostile client blocks no agent and no status, and counts
// toward no quorum.
type Skipped struct {
	// Path is the znode's path, quoted as a Go string: a name may hold
	// anything, a right-to-left override included.
	Path string `json:"path"`
	Why  string `json:"why"`
}

// skips is what the reads of a Store have left out, by parent directory,
// as of the last read of each. Each new sighting is logged once.
type skips struct {
	mu    sync.Mutex
	byDir map[string]map[string]string // parent -> path -> why; guarded by mu
}

// set replaces what is skipped under dir with now (path -> why), logging
// the paths not skipped before.
func (k *skips) set(log hclog.Logger, dir string, now map[string]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.byDir[dir]
	for p, why := range now {
		if old[p] != why && log != nil {
			log.Warn("skipping a bad znode; fix or delete it", "path", strconv.QuoteToASCII(p), "why", why)
		}
	}
	if len(now) == 0 {
		delete(k.byDir, dir)
		return
	}
	if k.byDir == nil {
		k.byDir = map[string]map[string]string{}
	}
	k.byDir[dir] = now
}

// Skipped lists the children that the store's latest reads left out, by
// path.
func (s *Store) Skipped() []Skipped {
	s.skips.mu.Lock()
	defer s.skips.mu.Unlock()
	all := map[string]string{}
	for _, m := range s.skips.byDir {
		maps.Copy(all, m)
	}
	out := []Skipped{}
	for _, p := range slices.Sorted(maps.Keys(all)) {
		out = append(out, Skipped{Path: strconv.QuoteToASCII(p), Why: all[p]})
	}
	return out
}

// validHosts keeps the names in dir's children that are valid host names,
// recording the others as skipped.
func (s *Store) validHosts(dir string, names []string) []string {
	bad := map[string]string{}
	out := names[:0:0]
	for _, n := range names {
		if config.ValidName(n) {
			out = append(out, n)
			continue
		}
		bad[path.Join(dir, n)] = fmt.Sprintf("%s is not a valid host name", strconv.QuoteToASCII(n))
	}
	s.skips.set(s.log, dir+"/names", bad)
	return out
}

// skipBad records the children of dir whose data did not decode (path ->
// error); it replaces what the previous read of dir recorded.
func (s *Store) skipBad(dir string, bad map[string]string) {
	s.skips.set(s.log, dir+"/data", bad)
}
