package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash tests run a writer in a child process (this test binary, re-run
// as TestHelperWriter), kill it with SIGKILL at a random moment and check
// what it left on disk, many times over. SIGKILL stops the writer between
// any two instructions but keeps the page cache, so these tests prove the
// write protocol (temp file, rename) and not the fsyncs that guard against
// power loss; the power-cut tests (powercut_test.go) prove those.

const (
	helperModeEnv  = "DCROLL_STATE_HELPER"       // "save" or "activate": run as the writer
	helperDirEnv   = "DCROLL_STATE_HELPER_DIR"   // where it writes
	helperFirstEnv = "DCROLL_STATE_HELPER_FIRST" // index of its first content
	crashSeedEnv   = "DCROLLTEST_CRASH_SEED"     // replay the random delays of a failed run
	crashRunsEnv   = "DCROLLTEST_CRASH_RUNS"     // kill this many writers instead of the default
	maxKillDelay   = 20 * time.Millisecond
)

// The writers cycle through three contents rather than alternate between two,
// so that the parent, knowing how many writes completed, can tell a lost or
// reordered write (the third content) from the last completed one and the
// one in flight.
const crashContents = 3

// crashVersions are the releases the Activate writer switches between.
var crashVersions = [crashContents]string{"1.9", "1.10", "2.0"}

// crashFiles returns the contents the Save writer cycles through, big enough
// (about 55 KB) that encoding and writing one takes a while, so that many
// kills land in the middle of a Save.
func crashFiles() [crashContents]*File {
	var files [crashContents]*File
	for k := range files {
		t := time.Date(2024, 5, 1, 12, 0, k, 0, time.UTC)
		f := &File{Services: map[string]*Service{}, Updated: t}
		for i := range 300 {
			run := fmt.Sprintf("%d.%d.%d", k+1, i%7, i)
			f.Services["service-"+strconv.Itoa(i)] = &Service{
				Running: run,
				Fleet:   map[string]int{run: 10 + i%5, fmt.Sprintf("%d.0", k): i % 3, "0.1-rc" + strconv.Itoa(i): 1},
				Seen:    t.Add(-time.Duration(i) * time.Second),
			}
		}
		if k == 1 {
			f.Switch = &Switch{Service: "service-7", From: "1.0.7", To: "2.0.7", Started: t}
		}
		files[k] = f
	}
	return files
}

// TestHelperWriter is not a test: run by the crash tests as a child process,
// it writes the contents in turn forever, starting with content number
// $DCROLL_STATE_HELPER_FIRST, and writes one byte to fd 3 when it starts and
// one after each completed write, so the parent knows how far it got.
func TestHelperWriter(t *testing.T) {
	mode := os.Getenv(helperModeEnv)
	if mode == "" {
		t.Skip("the writer process of the crash tests; runs only when they start it")
	}
	dir := os.Getenv(helperDirEnv)
	first, _ := strconv.Atoi(os.Getenv(helperFirstEnv))
	files := crashFiles()
	progress := os.NewFile(3, "progress")
	if _, err := progress.Write([]byte{'r'}); err != nil {
		os.Exit(3)
	}
	// Never outlive the test: stop when the parent is gone or after a while.
	parent := os.Getppid()
	deadline := time.Now().Add(time.Minute)
	for i := first; ; i++ {
		if os.Getppid() != parent || time.Now().After(deadline) {
			os.Exit(4)
		}
		var err error
		switch mode {
		case "save":
			err = Save(dir, files[i%crashContents])
		case "activate":
			err = Releases{Dir: dir}.Activate(crashVersions[i%crashContents])
		default:
			err = fmt.Errorf("unknown mode %q", mode)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(2)
		}
		if _, err := progress.Write([]byte{'.'}); err != nil {
			os.Exit(3)
		}
	}
}

// crashRun holds what the crash tests share: the random delays and the
// statistics worth reporting.
type crashRun struct {
	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	runs    int
	writes  []int // completed writes per killed writer
	torn    int   // kills that left a temp file or dir: the writer was mid-write
	results [crashContents]int
}

func newCrashRun(t *testing.T) *crashRun {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, s, err)
		}
	}
	runs := 200
	if testing.Short() {
		runs = 50
	}
	if s := os.Getenv(crashRunsEnv); s != "" {
		var err error
		if runs, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s=%q: %v", crashRunsEnv, s, err)
		}
	}
	t.Logf("seed %d (%s=%d replays the delays), %d kills", seed, crashSeedEnv, seed, runs)
	return &crashRun{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0)), runs: runs}
}

// killWriter starts a writer on dir whose first write is content first, lets
// it run for a random delay after it has started, kills it with SIGKILL and
// returns how many writes it completed.
func (c *crashRun) killWriter(mode, dir string, first int) int {
	t := c.t
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
	cmd.Env = append(os.Environ(),
		helperModeEnv+"="+mode, helperDirEnv+"="+dir, helperFirstEnv+"="+strconv.Itoa(first))
	cmd.ExtraFiles = []*os.File{pw}
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	err = cmd.Start()
	pw.Close() // the child holds the only write end now, so its death is EOF
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	// Start the clock only once the writer runs: starting a test binary
	// takes longer than the whole random delay.
	if err := pr.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(pr, b); err != nil || b[0] != 'r' {
		cmd.Process.Kill()
		cmd.Wait()
		killed = true
		t.Fatalf("writer did not start (read %q, %v): %s", b, err, stderr.Bytes())
	}
	delay := time.Duration(c.rng.Int64N(int64(maxKillDelay) + 1))
	// Sleeping is the point here: the random delay picks the instant of the
	// crash. Everything else waits on the pipe with a deadline.
	time.Sleep(delay)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	killed = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer ended on its own before the kill after %v: %v\n%s", delay, err, stderr.Bytes())
	}
	rest, err := io.ReadAll(pr)
	if err != nil {
		t.Fatalf("reading the writer's progress: %v", err)
	}
	n := bytes.Count(rest, []byte{'.'})
	c.writes = append(c.writes, n)
	return n
}

// hasTemps reports whether dir holds an entry starting with prefix other than
// exact, which only a writer killed mid-write leaves.
func hasTemps(t *testing.T, dir, prefix string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			return true
		}
	}
	return false
}

// allowed returns the contents that may be on disk after a writer that
// started with content first completed n writes: the last completed one
// (what was there before, when n is 0) and the one in flight, which may have
// been renamed into place just before the kill.
func allowed(first, n int) [2]int {
	return [2]int{(first + n - 1 + crashContents) % crashContents, (first + n) % crashContents}
}

func (c *crashRun) report(what string, elapsed time.Duration) {
	slices.Sort(c.writes)
	zero := 0
	for _, n := range c.writes {
		if n == 0 {
			zero++
		}
	}
	c.t.Logf("%s: %d kills in %v (seed %d): contents found %v; %d kills left a temp entry (mid-write); "+
		"completed per writer: median %d, max %d, none in %d",
		what, c.runs, elapsed.Round(time.Millisecond), c.seed, c.results,
		c.torn, c.writes[len(c.writes)/2], c.writes[len(c.writes)-1], zero)
	if c.torn == 0 {
		// Not a failure of the code under test, but a sign that the test no
		// longer hits the window it exists for.
		c.t.Logf("warning: no kill landed in the middle of a write")
	}
}

// TestCrashSaveNeverTorn kills a writer that saves state.json in a loop, over
// and over: every time, the file parses and holds the content of the last
// completed Save or of the one in flight, never a mix, never nothing.
func TestCrashSaveNeverTorn(t *testing.T) {
	t.Parallel()
	c := newCrashRun(t)
	files := crashFiles()
	dir := t.TempDir()
	// The file exists before the first writer starts, so "no file" is
	// always a failure.
	if err := Save(dir, files[0]); err != nil {
		t.Fatal(err)
	}
	onDisk := 0
	start := time.Now()
	for i := range c.runs {
		first := (onDisk + 1) % crashContents
		n := c.killWriter("save", dir, first)
		torn := hasTemps(t, dir, "."+FileName)
		got, err := Load(dir)
		if err != nil {
			t.Fatalf("kill %d (seed %d, %d writes done): %v", i, c.seed, n, err)
		}
		onDisk = slices.IndexFunc(files[:], func(f *File) bool { return reflect.DeepEqual(got, f) })
		if onDisk < 0 {
			t.Fatalf("kill %d (seed %d, %d writes done): state.json holds none of the contents: %d services, updated %v",
				i, c.seed, n, len(got.Services), got.Updated)
		}
		if ok := allowed(first, n); onDisk != ok[0] && onDisk != ok[1] {
			t.Fatalf("kill %d (seed %d): after %d writes starting with content %d, state.json holds content %d, want %v",
				i, c.seed, n, first, onDisk, ok)
		}
		c.results[onDisk]++
		if torn {
			c.torn++
		}
	}
	c.report("Save", time.Since(start))
}

// TestCrashActivateNeverDangles kills a writer that switches current between
// releases in a loop, over and over: every time, current points at the last
// completed switch or the one in flight, complete, and the releases directory
// lists exactly the installed versions.
func TestCrashActivateNeverDangles(t *testing.T) {
	t.Parallel()
	c := newCrashRun(t)
	r := Releases{Dir: filepath.Join(t.TempDir(), "releases", "web")}
	install(t, r, crashVersions[:]...)
	if err := r.Activate(crashVersions[0]); err != nil {
		t.Fatal(err)
	}
	onDisk := 0
	start := time.Now()
	for i := range c.runs {
		first := (onDisk + 1) % crashContents
		n := c.killWriter("activate", r.Dir, first)
		torn := hasTemps(t, r.Dir, "."+CurrentName)
		got, err := r.Current()
		if err != nil {
			t.Fatalf("kill %d (seed %d, %d switches done): %v", i, c.seed, n, err)
		}
		onDisk = slices.Index(crashVersions[:], got)
		if ok := allowed(first, n); onDisk != ok[0] && onDisk != ok[1] {
			t.Fatalf("kill %d (seed %d): after %d switches starting with %q, current points at %q, want one of %q or %q",
				i, c.seed, n, crashVersions[first], got, crashVersions[ok[0]], crashVersions[ok[1]])
		}
		data, err := os.ReadFile(filepath.Join(r.Dir, CurrentName, "VERSION"))
		if err != nil || string(data) != got {
			t.Fatalf("kill %d (seed %d): current/VERSION = %q, %v; want %q", i, c.seed, data, err, got)
		}
		installed, err := r.Installed()
		if err != nil || !slices.Equal(installed, crashVersions[:]) {
			t.Fatalf("kill %d (seed %d): Installed() = %q, %v; want %q", i, c.seed, installed, err, crashVersions)
		}
		c.results[onDisk]++
		if torn {
			c.torn++
		}
	}
	c.report("Activate", time.Since(start))
}
