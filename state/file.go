package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// FileName is the name of the local cache inside the state directory
// (/var/lib/dcroll by default).
const FileName = "state.json"

// MaxFileSize bounds the size of state.json: Load refuses a bigger file and
// Save refuses to write one. A fleet's worth of services and versions fits
// in a small fraction of it.
const MaxFileSize = 1 << 20

// File is the content of state.json: what this host knows about its services
// without ZooKeeper, so it can boot and serve on its own.
type File struct {
	Services map[string]*Service `json:"services"`         // by service name
	Switch   *Switch             `json:"switch,omitempty"` // a version switch in progress (intent), nil when none
	Updated  time.Time           `json:"updated"`          // when Save wrote the file
}

// Service is what the host knows about one service.
type Service struct {
	Running string         `json:"running,omitempty"` // version this host last started
	Fleet   map[string]int `json:"fleet,omitempty"`   // version -> number of hosts seen serving it in ZooKeeper's /current
	// Seen uses omitzero because omitempty never omits a struct like
	// time.Time.
	Seen time.Time `json:"seen,omitzero"` // when Fleet was last refreshed from ZooKeeper
}

// Switch records the intent to move a service from one version to another,
// written before the switch starts and cleared when it ends, so that an agent
// killed in between knows what it was doing.
type Switch struct {
	Service string    `json:"service"`
	From    string    `json:"from"` // empty when nothing ran before
	To      string    `json:"to"`
	Started time.Time `json:"started"`
}

// MostPopular returns the version that the most hosts serve according to
// Fleet, the newest one (by CompareVersions) among equally popular ones.
// Versions with a count of zero are served by nobody and never chosen; it
// returns false when no version is left.
func (s *Service) MostPopular() (string, bool) {
	if s == nil {
		return "", false
	}
	best, bestN := "", 0
	for v, n := range s.Fleet {
		if n > bestN || (n == bestN && n > 0 && CompareVersions(v, best) > 0) {
			best, bestN = v, n
		}
	}
	return best, bestN > 0
}

// Load reads dir/state.json. A missing file gives an empty File and no error,
// as on a host's first start; a file that does not parse gives an error naming
// it and never a partial result.
func Load(dir string) (*File, error) {
	path := filepath.Join(dir, FileName)
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Services: map[string]*Service{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	defer fh.Close()
	// Read one byte past the limit so that Decode sees the file is too big
	// without reading all of it.
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	f, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w (it is only a cache: move it aside to start afresh)", path, err)
	}
	return f, nil
}

// Decode parses and checks the content of a state file. It is the parser
// behind Load, for data of any origin: it rejects more than MaxFileSize bytes,
// bad names and negative counts, and it never panics.
func Decode(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxFileSize)
	}
	var f *File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if f == nil {
		return nil, fmt.Errorf("%w: null instead of an object", ErrMalformed)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	f.normalize()
	return f, nil
}

// Save replaces dir/state.json with f, creating dir if needed. A crash at any
// moment leaves either the old or the new file, complete: the content goes to
// a temp file that is synced, renamed over state.json, and then the directory
// is synced so that the rename itself survives a power loss. Save refuses a
// File that Load would refuse. A zero f.Updated is written as the time of
// the Save; f itself is not changed.
func Save(dir string, f *File) error {
	path := filepath.Join(dir, FileName)
	if f != nil && f.Updated.IsZero() {
		g := *f
		g.Updated = time.Now().UTC()
		f = &g
	}
	data, err := encode(f)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save state: %w", err)
	}

	writeMu.Lock()
	defer writeMu.Unlock()
	removeStale(dir, "."+FileName)

	// The temp file goes into dir itself: renameio would otherwise pick
	// $TMPDIR when it is on the same file system, and a killed writer would
	// leave its debris there, out of reach of removeStale.
	// The mode is set here rather than with renameio.WithStaticPermissions,
	// whose chmod, when it fails, leaves the temp file open.
	pf, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithPermissions(0o644))
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer pf.Cleanup()
	if err := pf.Chmod(0o644); err != nil { // whatever the umask
		return fmt.Errorf("save state: %w", err)
	}
	if _, err := pf.Write(data); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// encode gives the bytes that Save writes for f: indented JSON, since an
// operator may read the file.
func encode(f *File) ([]byte, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: nil File", ErrMalformed)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.Services == nil {
		// Write {} rather than null: both decode alike, {} reads better.
		g := *f
		g.Services = map[string]*Service{}
		f = &g
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	data = append(data, '\n')
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(data), MaxFileSize)
	}
	return data, nil
}

// check reports the first value of f that breaks the rules, in a stable
// order so that the same file always gives the same message.
func (f *File) check() error {
	if err := checkTime("updated", f.Updated); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		if p := nameProblem(name); p != "" {
			return fmt.Errorf("%w: service name %s: %s", ErrMalformed, quote(name), p)
		}
		s := f.Services[name]
		if s == nil {
			return fmt.Errorf("%w: service %s: null instead of an object", ErrMalformed, quote(name))
		}
		if s.Running != "" {
			if p := nameProblem(s.Running); p != "" {
				return fmt.Errorf("%w: service %s: running version %s: %s", ErrMalformed, quote(name), quote(s.Running), p)
			}
		}
		if err := checkTime("service "+quote(name)+": seen", s.Seen); err != nil {
			return err
		}
		for _, v := range slices.Sorted(maps.Keys(s.Fleet)) {
			if p := nameProblem(v); p != "" {
				return fmt.Errorf("%w: service %s: fleet version %s: %s", ErrMalformed, quote(name), quote(v), p)
			}
			if n := s.Fleet[v]; n < 0 {
				return fmt.Errorf("%w: service %s: fleet version %s: count %d is negative", ErrMalformed, quote(name), quote(v), n)
			}
		}
	}
	if sw := f.Switch; sw != nil {
		if p := nameProblem(sw.Service); p != "" {
			return fmt.Errorf("%w: switch: service %s: %s", ErrMalformed, quote(sw.Service), p)
		}
		if sw.From != "" {
			if p := nameProblem(sw.From); p != "" {
				return fmt.Errorf("%w: switch: from version %s: %s", ErrMalformed, quote(sw.From), p)
			}
		}
		if p := nameProblem(sw.To); p != "" {
			return fmt.Errorf("%w: switch: to version %s: %s", ErrMalformed, quote(sw.To), p)
		}
		if err := checkTime("switch: started", sw.Started); err != nil {
			return err
		}
	}
	return nil
}

// checkTime refuses a time that cannot be written once in UTC: JSON times
// have four-digit years, and a zone offset can push one past 9999.
func checkTime(what string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: %s: year %d in UTC is outside 0 to 9999", ErrMalformed, what, y)
	}
	return nil
}

// normalize gives a decoded File one representation per meaning, so that
// decoding what Save wrote yields an identical value: times in UTC, an empty
// fleet as nil (Save omits it), and a services map that is never nil.
func (f *File) normalize() {
	if f.Services == nil {
		f.Services = map[string]*Service{}
	}
	for _, s := range f.Services {
		if len(s.Fleet) == 0 {
			s.Fleet = nil
		}
		s.Seen = s.Seen.UTC()
	}
	if f.Switch != nil {
		f.Switch.Started = f.Switch.Started.UTC()
	}
	f.Updated = f.Updated.UTC()
}

// removeStale deletes what a writer killed mid-way left in dir: temp entries
// named prefix followed by the digits renameio appends. It is best effort: a
// leftover that cannot be removed is harmless, as readers ignore it.
func removeStale(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// syncDir fsyncs a directory, which makes the renames done in it durable;
// renameio syncs the file but not the directory.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
