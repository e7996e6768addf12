package fetch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RemovePartial stops the download of the torrent with the given hex
// infohash, if one is in progress, and removes its data from DataDir, so a
// download that failed or was abandoned holds no disk space. A torrent
// that seeds a verified artifact is left alone.
func (s *Swarm) RemovePartial(infohash string) error {
	ih, ok := parseInfohash(infohash)
	if !ok {
		return fmt.Errorf("remove partial download: bad infohash %q", infohash)
	}
	s.mu.Lock()
	st, active := s.torrents[ih]
	seeding := active && st.seeding()
	s.mu.Unlock()
	if seeding {
		return nil
	}
	if active {
		s.Drop(infohash)
	}
	// The completion database is not trusted about a file that is gone
	// (Fetch checks), so removing the data is enough.
	if err := os.RemoveAll(downloadDir(s.cfg.DataDir, nil, ih)); err != nil {
		return fmt.Errorf("remove partial download %s: %w", infohash, err)
	}
	return nil
}

// PrunePartials removes from DataDir the data of every download that is
// neither in progress nor in keep (hex infohashes): releases replaced,
// aborted or interrupted by a restart. It returns the infohashes removed.
func (s *Swarm) PrunePartials(keep ...string) ([]string, error) {
	ents, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("prune partial downloads: %w", err)
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[strings.ToLower(k)] = true
	}
	// Held throughout, so that no Fetch starts writing a directory that is
	// being removed.
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []string
	var errs []error
	for _, e := range ents {
		ih, ok := parseInfohash(e.Name())
		if !ok || !e.IsDir() || kept[ih.HexString()] {
			continue // the completion database, or a download to keep
		}
		if _, active := s.torrents[ih]; active {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.cfg.DataDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ih.HexString())
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("prune partial downloads: %w", err)
	}
	return removed, nil
}

// RemoveTemps removes what a fetch or an unpack killed midway leaves in dir
// (not below it): the ".<name>.*.part" files of a download and the
// ".<version>.unpack-*" directories of an unpack. It returns their names. A
// missing dir has none.
func RemoveTemps(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remove temporary files: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, ".") {
			continue
		}
		isPart := !e.IsDir() && strings.HasSuffix(name, ".part")
		isUnpack := e.IsDir() && strings.Contains(name, ".unpack-")
		if !isPart && !isUnpack {
			continue
		}
		p := filepath.Join(dir, name)
		if isUnpack {
			// An unpack may have left directories without write or
			// search permission; give them back before removing.
			_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					_ = os.Chmod(q, 0o700)
				}
				return nil
			})
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
