package state_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/lazyfs"
	"github.com/dcroll/dcroll/state"
)

// The power-cut tests run the writers of this package on a lazyfs mount,
// which keeps what was not fsynced apart and drops it on a cut, as a
// machine losing power loses its page cache. Unlike SIGKILL in the crash
// tests, a cut here undoes a rename whose directory was not fsynced and
// empties a file whose data was not: they prove the fsyncs.
//
// A cut lands before a chosen changing operation of the file system (write,
// fsync, create, rename, ...), so every cut point of a step can be hit and a
// seed replays a run exactly.

const (
	powerSeedEnv = "DCROLLTEST_POWERCUT_SEED" // replay the cut points of a failed run
	powerRunsEnv = "DCROLLTEST_POWERCUT_RUNS" // cut this many times instead of the default
)

type powerRun struct {
	t    *testing.T
	fs   *lazyfs.FS
	seed uint64
	rng  *rand.Rand
	runs int
	// Statistics worth reporting.
	midStep   int         // cuts that stopped a step before it returned
	afterStep int         // cuts after a step returned
	points    map[int]int // cut point (operations into the step) -> cuts
	maxOps    int         // most operations one uncut step took
}

func newPowerRun(t *testing.T) *powerRun {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE on this machine (%v): the power-cut tests mount a lazyfs", err)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(powerSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", powerSeedEnv, s, err)
		}
	}
	runs := 200
	if testing.Short() {
		runs = 60
	}
	if s := os.Getenv(powerRunsEnv); s != "" {
		var err error
		if runs, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s=%q: %v", powerRunsEnv, s, err)
		}
	}
	t.Logf("seed %d (%s=%d replays the cut points), %d cuts", seed, powerSeedEnv, seed, runs)
	return &powerRun{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 1)), runs: runs, points: map[int]int{}}
}

// mount mounts a lazyfs over a backing directory that setup fills (durable
// from the start).
func (p *powerRun) mount(setup func(backing string)) string {
	t := p.t
	backing, mnt := t.TempDir(), t.TempDir()
	setup(backing)
	f, err := lazyfs.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	p.fs = f
	return mnt
}

// step runs do with the power cut after k operations of the file system,
// or just after do returns when it takes no more than k, then boots the
// file system again. It returns whether do finished before the cut, with
// do's error: a step that goes on after the cut, as a writer ignoring an
// EIO would, did not finish, since the machine running it is off.
func (p *powerRun) step(k int, do func() error) (finished bool, err error) {
	t := p.t
	t.Helper()
	before := p.fs.Ops()
	p.fs.CutAfter(k)
	err = do()
	cut := p.fs.Dead()
	if cut {
		p.midStep++
		p.points[k]++
	} else {
		p.afterStep++
		p.maxOps = max(p.maxOps, p.fs.Ops()-before)
		if err != nil {
			t.Fatalf("seed %d: the step failed with the power on: %v", p.seed, err)
		}
	}
	if err := p.fs.PowerCut(); err != nil {
		t.Fatal(err)
	}
	return !cut, err
}

func (p *powerRun) report(what string, elapsed time.Duration) {
	keys := slices.Sorted(func(yield func(int) bool) {
		for k := range p.points {
			if !yield(k) {
				return
			}
		}
	})
	var hist []string
	for _, k := range keys {
		hist = append(hist, fmt.Sprintf("%d:%d", k, p.points[k]))
	}
	p.t.Logf("%s: %d cuts in %v (seed %d): %d mid-step, %d after the step returned; "+
		"an uncut step took up to %d operations; cuts by operation into the step %v",
		what, p.runs, elapsed.Round(time.Millisecond), p.seed, p.midStep, p.afterStep, p.maxOps, hist)
	if p.midStep == 0 || p.afterStep == 0 {
		p.t.Errorf("no cut landed %s", map[bool]string{true: "mid-step", false: "after a step"}[p.midStep == 0])
	}
}

// powerFiles are the contents the Save steps cycle through: different
// sizes, so a torn or mixed file does not parse as another.
func powerFiles() []*state.File {
	var files []*state.File
	for k := range 3 {
		t := time.Date(2024, 5, 1, 12, 0, k, 0, time.UTC)
		f := &state.File{Services: map[string]*state.Service{}, Updated: t}
		for i := range 40 + 200*k {
			run := fmt.Sprintf("%d.%d.%d", k+1, i%7, i)
			f.Services["service-"+strconv.Itoa(i)] = &state.Service{
				Running: run,
				Fleet:   map[string]int{run: 10 + i%5},
				Seen:    t.Add(-time.Duration(i) * time.Second),
			}
		}
		if k == 1 {
			f.Switch = &state.Switch{Service: "service-7", From: "1.0.7", To: "2.0.7", Started: t}
		}
		files = append(files, f)
	}
	return files
}

var powerVersions = []string{"1.9", "1.10", "2.0"}

// TestPowerCutSaveAndActivate cuts the power again and again while the
// agent's state is written: a Save of state.json or an Activate of a
// release, picked at random, with the cut at a random operation into it (or
// after it returns). Every time, after the boot: state.json loads and holds
// the content before the step or the one it wrote, the one it wrote if it
// returned; current points at a complete installed release, the new one if
// Activate returned; and the next step works.
func TestPowerCutSaveAndActivate(t *testing.T) {
	p := newPowerRun(t)
	files := powerFiles()
	mnt := p.mount(func(b string) {
		if err := state.Save(filepath.Join(b, "state"), files[0]); err != nil {
			t.Fatal(err)
		}
		r := state.Releases{Dir: filepath.Join(b, "releases", "web")}
		for _, v := range powerVersions {
			if err := os.MkdirAll(r.Path(v), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(r.Path(v), "VERSION"), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Activate(powerVersions[0]); err != nil {
			t.Fatal(err)
		}
	})
	dir := filepath.Join(mnt, "state")
	r := state.Releases{Dir: filepath.Join(mnt, "releases", "web")}
	onDisk, current := 0, 0
	start := time.Now()
	for i := range p.runs {
		// Up to 7 operations into a step: a Save takes 6 and an Activate
		// 5 or fewer, so some cuts land after it returns.
		k := p.rng.IntN(8)
		if p.rng.IntN(2) == 0 {
			next := (onDisk + 1 + p.rng.IntN(2)) % len(files)
			finished, err := p.step(k, func() error { return state.Save(dir, files[next]) })
			got, lerr := state.Load(dir)
			if lerr != nil {
				t.Fatalf("cut %d (seed %d, Save cut after %d operations, %v): %v", i, p.seed, k, err, lerr)
			}
			was := slices.IndexFunc(files, func(f *state.File) bool { return reflect.DeepEqual(got, f) })
			switch {
			case was < 0:
				t.Fatalf("cut %d (seed %d, Save cut after %d operations): state.json holds none of the contents: %d services, updated %v",
					i, p.seed, k, len(got.Services), got.Updated)
			case finished && was != next:
				t.Fatalf("cut %d (seed %d): Save of content %d returned, then a cut after %d operations left content %d",
					i, p.seed, next, k, was)
			case was != onDisk && was != next:
				t.Fatalf("cut %d (seed %d): Save of content %d over %d cut after %d operations left content %d",
					i, p.seed, next, onDisk, k, was)
			}
			onDisk = was
		} else {
			next := (current + 1 + p.rng.IntN(2)) % len(powerVersions)
			finished, err := p.step(k, func() error { return r.Activate(powerVersions[next]) })
			got, cerr := r.Current()
			if cerr != nil {
				t.Fatalf("cut %d (seed %d, Activate cut after %d operations, %v): %v", i, p.seed, k, err, cerr)
			}
			was := slices.Index(powerVersions, got)
			switch {
			case finished && was != next:
				t.Fatalf("cut %d (seed %d): Activate(%s) returned, then a cut after %d operations left current at %s",
					i, p.seed, powerVersions[next], k, got)
			case was != current && was != next:
				t.Fatalf("cut %d (seed %d): Activate(%s) from %s cut after %d operations left current at %s",
					i, p.seed, powerVersions[next], powerVersions[current], k, got)
			}
			if data, err := os.ReadFile(filepath.Join(r.Dir, state.CurrentName, "VERSION")); err != nil || string(data) != got {
				t.Fatalf("cut %d (seed %d): current/VERSION = %q, %v; want %q", i, p.seed, data, err, got)
			}
			if installed, err := r.Installed(); err != nil || !slices.Equal(installed, powerVersions) {
				t.Fatalf("cut %d (seed %d): Installed() = %q, %v; want %q", i, p.seed, installed, err, powerVersions)
			}
			current = was
		}
	}
	p.report("Save and Activate", time.Since(start))
}

// TestPowerCutUnpack cuts the power while fetch unpacks a release into the
// releases directory of a service, at a random operation into it: the
// release is then either complete or not installed (its temp directory is
// hidden from Installed), complete if Unpack returned, and unpacking it
// again works.
func TestPowerCutUnpack(t *testing.T) {
	p := newPowerRun(t)
	// A release of a few files, a subdirectory and a symlink.
	src := t.TempDir()
	want := map[string]string{
		"VERSION":      "2.0",
		"bin/service":  "#!/bin/sh\necho service\n",
		"etc/conf.txt": "port = 8080\n",
		"README":       "a release\n",
	}
	for name, body := range want {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("bin/service", filepath.Join(src, "run")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "release.tar.gz")
	if err := fetch.PackFile(src, archive); err != nil {
		t.Fatal(err)
	}
	mnt := p.mount(func(b string) {
		if err := os.MkdirAll(filepath.Join(b, "releases", "web"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	r := state.Releases{Dir: filepath.Join(mnt, "releases", "web")}
	complete := func(i int, ctx string) {
		t.Helper()
		for name, body := range want {
			data, err := os.ReadFile(filepath.Join(r.Path("2.0"), name))
			if err != nil || string(data) != body {
				t.Fatalf("cut %d (seed %d, %s): release 2.0 is installed but %s = %q, %v; want %q",
					i, p.seed, ctx, name, data, err, body)
			}
		}
		if target, err := os.Readlink(filepath.Join(r.Path("2.0"), "run")); err != nil || target != "bin/service" {
			t.Fatalf("cut %d (seed %d, %s): run -> %q, %v", i, p.seed, ctx, target, err)
		}
	}
	start := time.Now()
	for i := range p.runs / 2 {
		k := p.rng.IntN(32) // an unpack of this release takes 28 operations
		finished, err := p.step(k, func() error { return fetch.Unpack(archive, r.Path("2.0")) })
		ctx := fmt.Sprintf("Unpack cut after %d operations: %v", k, err)
		installed, ierr := r.Installed()
		if ierr != nil {
			t.Fatalf("cut %d (seed %d, %s): %v", i, p.seed, ctx, ierr)
		}
		switch {
		case slices.Equal(installed, []string{"2.0"}):
			complete(i, ctx)
		case len(installed) != 0:
			t.Fatalf("cut %d (seed %d, %s): installed %q", i, p.seed, ctx, installed)
		case finished:
			t.Fatalf("cut %d (seed %d): Unpack returned, then a cut left no release", i, p.seed)
		default:
			// Not installed: the next fetch unpacks it again, and that works.
			if err := fetch.Unpack(archive, r.Path("2.0")); err != nil {
				t.Fatalf("cut %d (seed %d, %s): unpacking again: %v", i, p.seed, ctx, err)
			}
			complete(i, ctx+", unpacked again")
		}
		// Start the next run without the release or the debris of a cut.
		if err := os.RemoveAll(r.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err := os.Mkdir(r.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := p.fs.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	p.runs /= 2
	p.report("Unpack", time.Since(start))
}

// TestPowerCutHTTPDownload cuts the power while fetch downloads a release
// from a real HTTP origin (on loopback) into a lazyfs directory, at a random
// operation into the download: the artifact is then either absent or
// complete and verified, present if the fetch returned, and fetching it
// again works.
func TestPowerCutHTTPDownload(t *testing.T) {
	p := newPowerRun(t)
	body := make([]byte, 300<<10)
	if _, err := rand.NewChaCha8([32]byte{1}).Read(body); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "release.tar.gz", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	a := fetch.Artifact{Service: "web", Version: "2.0", Size: int64(len(body)),
		SHA256: hex.EncodeToString(sum[:]), URLs: []string{srv.URL + "/web-2.0.tar.gz"}}
	mnt := p.mount(func(b string) {
		if err := os.Mkdir(filepath.Join(b, "downloads"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	dst := filepath.Join(mnt, "downloads", "web-2.0.tar.gz")
	// Count the operations of one download, for the range of cut points:
	// the writes depend on how the body arrives.
	before := p.fs.Ops()
	if err := (fetch.HTTP{}).Fetch(context.Background(), a, dst); err != nil {
		t.Fatal(err)
	}
	ops := p.fs.Ops() - before
	if err := os.Remove(dst); err != nil {
		t.Fatal(err)
	}
	if err := p.fs.Sync(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range p.runs / 2 {
		k := p.rng.IntN(ops + 3)
		finished, err := p.step(k, func() error { return fetch.HTTP{}.Fetch(context.Background(), a, dst) })
		ctx := fmt.Sprintf("download cut after %d operations: %v", k, err)
		_, serr := os.Stat(dst)
		switch {
		case serr == nil:
			if err := fetch.Verify(dst, a); err != nil {
				t.Fatalf("cut %d (seed %d, %s): the artifact is there but %v", i, p.seed, ctx, err)
			}
		case !errors.Is(serr, fs.ErrNotExist):
			t.Fatal(serr)
		case finished:
			t.Fatalf("cut %d (seed %d): the download returned, then a cut left no artifact", i, p.seed)
		default:
			if err := (fetch.HTTP{}).Fetch(context.Background(), a, dst); err != nil {
				t.Fatalf("cut %d (seed %d, %s): downloading again: %v", i, p.seed, ctx, err)
			}
			if err := fetch.Verify(dst, a); err != nil {
				t.Fatalf("cut %d (seed %d, %s): downloaded again, but %v", i, p.seed, ctx, err)
			}
		}
		// Start the next run without the artifact or the debris of a cut.
		dir := filepath.Dir(dst)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := p.fs.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	p.runs /= 2
	p.report("HTTP download", time.Since(start))
}

// TestPowerCutSwitch cuts the power during the agent's version switch as it
// writes it to disk: state.json with the intent (from, to), the symlink swap
// to the new release, state.json with the new version running and no
// intent; the cut lands at a random operation of the three. After the boot,
// with the agent's rule for an interrupted switch (an intent on disk sends
// the host back to its from version): current and the running version of
// state.json agree, on the old or the new version, on the new one if the
// switch returned.
func TestPowerCutSwitch(t *testing.T) {
	p := newPowerRun(t)
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cache := func(running string, sw *state.Switch) *state.File {
		return &state.File{Services: map[string]*state.Service{"web": {Running: running}}, Switch: sw, Updated: t0}
	}
	mnt := p.mount(func(b string) {
		if err := state.Save(filepath.Join(b, "state"), cache(powerVersions[0], nil)); err != nil {
			t.Fatal(err)
		}
		r := state.Releases{Dir: filepath.Join(b, "releases", "web")}
		for _, v := range powerVersions {
			if err := os.MkdirAll(r.Path(v), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Activate(powerVersions[0]); err != nil {
			t.Fatal(err)
		}
	})
	dir := filepath.Join(mnt, "state")
	r := state.Releases{Dir: filepath.Join(mnt, "releases", "web")}
	running := powerVersions[0]
	start := time.Now()
	for i := range p.runs / 2 {
		from := running
		to := powerVersions[(slices.Index(powerVersions, from)+1+p.rng.IntN(2))%len(powerVersions)]
		sw := &state.Switch{Service: "web", From: from, To: to, Started: t0}
		k := p.rng.IntN(20) // the three writes take 17 operations
		finished, err := p.step(k, func() error {
			if err := state.Save(dir, cache(from, sw)); err != nil {
				return err
			}
			if err := r.Activate(to); err != nil {
				return err
			}
			return state.Save(dir, cache(to, nil))
		})
		ctx := fmt.Sprintf("switch %s to %s cut after %d operations: %v", from, to, k, err)
		f, err := state.Load(dir)
		if err != nil {
			t.Fatalf("cut %d (seed %d, %s): %v", i, p.seed, ctx, err)
		}
		if f.Switch != nil {
			// The agent's boot: back to the old version.
			if *f.Switch != *sw {
				t.Fatalf("cut %d (seed %d, %s): the intent on disk is %+v, want %+v", i, p.seed, ctx, *f.Switch, *sw)
			}
			if err := r.Activate(f.Switch.From); err != nil {
				t.Fatalf("cut %d (seed %d, %s): back to %s: %v", i, p.seed, ctx, f.Switch.From, err)
			}
			f = cache(f.Switch.From, nil)
			if err := state.Save(dir, f); err != nil {
				t.Fatalf("cut %d (seed %d, %s): %v", i, p.seed, ctx, err)
			}
		}
		got := f.Services["web"].Running
		cur, err := r.Current()
		switch {
		case err != nil:
			t.Fatalf("cut %d (seed %d, %s): %v", i, p.seed, ctx, err)
		case got != from && got != to:
			t.Fatalf("cut %d (seed %d, %s): state.json says %s runs", i, p.seed, ctx, got)
		case cur != got:
			t.Fatalf("cut %d (seed %d, %s): state.json says %s runs, current points at %s", i, p.seed, ctx, got, cur)
		case finished && got != to:
			t.Fatalf("cut %d (seed %d): the switch to %s returned, then a cut left %s", i, p.seed, to, got)
		}
		running = got
	}
	p.runs /= 2
	p.report("switch", time.Since(start))
}
