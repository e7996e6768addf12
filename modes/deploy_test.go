package modes_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/modes"
	"github.com/dcroll/dcroll/roll"
)

// seedChain has a dependency chain, db <- api, and cache on its own.
const seedChain = `
[services.db]
quorum = 2
[services.api]
depends_on = ["db"]
quorum = 1
[services.cache]
quorum = 1
`

// modeArgs are the arguments of one run of mode against zkc under root.
func modeArgs(t testing.TB, zkc *zktest.Cluster, root, mode string, rest ...string) []string {
	t.Helper()
	cfg := configFile(t, "[zookeeper]\nsession_timeout = \"10s\"\n")
	return append([]string{mode, "--config", cfg, "--zk", zkc.ConnString(), "--root", root}, rest...)
}

// seedRoot seeds root with catalog through `dcroll seed` and returns a store
// of the test's own on it.
func seedRoot(t testing.TB, zkc *zktest.Cluster, root, catalog string) *roll.Store {
	t.Helper()
	store := openStore(t, zkc, root)
	if r := dcroll(t, seedArgs(t, zkc, root, writeFile(t, "seed.toml", catalog))...); r.code != 0 {
		t.Fatalf("seed:\n%s", r)
	}
	return store
}

// releaseDir makes a small release tree and returns it with the bytes that
// fetch.Pack makes of it.
func releaseDir(t testing.TB, content string) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "release")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "run"), []byte("#!/bin/sh\necho "+content+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := fetch.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return dir, buf.Bytes()
}

// releaseArchive writes a release archive and returns its path, size and
// sha256.
func releaseArchive(t testing.TB, content string) (string, int64, string) {
	t.Helper()
	_, data := releaseDir(t, content)
	path := filepath.Join(t.TempDir(), "release.tar.gz")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return path, int64(len(data)), hex.EncodeToString(sum[:])
}

func setMembers(t testing.TB, store *roll.Store, svc string, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		if err := store.EnsureMember(svc, h, roll.Member{Joined: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
}

func setCurrent(t testing.TB, store *roll.Store, svc, version string, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		if err := store.SetCurrent(svc, h, roll.Current{Version: version, Since: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
}

func stage(t testing.TB, store *roll.Store, svc, version string) {
	t.Helper()
	m := roll.Manifest{Version: version, Size: 1, SHA256: strings.Repeat("a", 64), URLs: []string{"http://origin.example/" + svc}, Staged: time.Now().UTC()}
	if err := store.Stage(svc, m, true); err != nil {
		t.Fatal(err)
	}
}

func stepsOf(t testing.TB, store *roll.Store) [][]string {
	t.Helper()
	steps, err := store.Steps()
	if err != nil {
		t.Fatal(err)
	}
	out := [][]string{}
	for _, st := range steps {
		out = append(out, st.Services)
	}
	return out
}

// wantRun checks one run's exit code and that its stderr (for errors) or
// stdout (for success) holds each of want.
func wantRun(t testing.TB, r result, code int, want ...string) {
	t.Helper()
	out := r.stdout
	if code != 0 {
		out = r.stderr
	}
	if r.code != code {
		t.Errorf("exit code %d, want %d", r.code, code)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("%s", r)
	}
}

// TestCLIDeployUsage checks the usage errors that need no ZooKeeper: they
// are refused before dialing (the servers named here are closed).
func TestCLIDeployUsage(t *testing.T) {
	archive, _, _ := releaseArchive(t, "v1")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"stage", "db", "2.0"}, "want SERVICE VERSION PATH, got 2 arguments"},
		{[]string{"stage", "db", "a/b", archive}, `version "a/b": use letters, digits`},
		{[]string{"stage", "db", "2.0+build", archive}, `version "2.0+build": use letters, digits`},
		{[]string{"stage", "no/such", "2.0", archive}, `service "no/such" is not a valid service name`},
		{[]string{"stage", "--detach", "db", "2.0", archive}, "--detach needs at least one --url"},
		{[]string{"stage", "--url", "ftp://x/y", "db", "2.0", archive}, `--url: "ftp://x/y": want an http:// or https:// URL`},
		{[]string{"stage", "--detach", "--url", "https:///y", "db", "2.0", archive}, `--url: "https:///y": no host`},
		{[]string{"stage", "--timeout", "0s", "db", "2.0", archive}, "--timeout must be positive"},
		{[]string{"order"}, "name the services to queue, or use --auto"},
		{[]string{"order", "--auto", "db"}, `--auto takes no services, got "db"`},
		{[]string{"order", "db,,api"}, `step "db,,api" has an empty service name`},
		{[]string{"pause", "db", "api"}, "want at most one SERVICE, got 2 arguments"},
		{[]string{"resume", "db", "api"}, "want at most one SERVICE, got 2 arguments"},
		{[]string{"abort", "now"}, `unexpected argument "now"`},
		// Flags after the arguments count as well as before them.
		{[]string{"stage", "db", "2.0", archive, "--detach"}, "--detach needs at least one --url"},
		{[]string{"stage", "db", "2.0", archive, "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"stage", "db", "2.0", archive, "--url=ftp://x/y"}, `--url: "ftp://x/y": want an http:// or https:// URL`},
		{[]string{"order", "db", "--auto"}, `--auto takes no services, got "db"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			args := append([]string{"--zk", "127.0.0.1:1"}, tt.args...)
			r := dcroll(t, args...)
			wantRun(t, r, 2, "dcroll "+tt.args[0]+": "+tt.want, "usage: dcroll "+tt.args[0])
		})
	}
	for _, m := range []string{"stage", "order", "pause", "resume", "abort"} {
		if r := dcroll(t, "help", m); r.code != 0 || !strings.Contains(r.stdout, "usage: dcroll "+m) {
			t.Errorf("dcroll help %s:\n%s", m, r)
		}
	}
}

func TestIntegration_Stage(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/stage"
	store := seedRoot(t, zkc, root, seedChain)
	archive, size, sum := releaseArchive(t, "v2")

	t.Run("refused, nothing written", func(t *testing.T) {
		setMembers(t, store, "cache", "h1", "h2")
		setCurrent(t, store, "cache", "3.0", "h1", "h2")
		notArchive := writeFile(t, "notes.txt", "not an archive\n")
		// Cut short, as by an interrupted copy: the gzip header and the
		// first entry's header are there, the rest of the file is not.
		whole, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		truncated := writeFile(t, "truncated.tar.gz", string(whole[:len(whole)*2/3]))
		before := dump(t, rolltest.RawOf(t, store), root)
		for _, tt := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"nope", "2.0", archive}, 1, `service "nope" is not in the catalog (api, cache, db)`},
			{[]string{"cache", "3.0", archive}, 1, "cache 3.0 already runs on every online host (2); nothing to stage"},
			{[]string{"db", "2.0", notArchive}, 1, "bad archive: " + notArchive + ": neither a tar nor a tar.gz archive"},
			{[]string{"db", "2.0", truncated}, 1, "bad archive: " + truncated + ": "},
			{[]string{"db", "2.0", truncated}, 1, "truncated: unexpected EOF; nothing was staged"},
			{[]string{"db", "2.0", filepath.Join(t.TempDir(), "missing")}, 1, "no such file or directory"},
			{[]string{"db", "bad/version", archive}, 2, `version "bad/version": use letters, digits`},
			{[]string{"--detach", "db", "2.0", archive}, 2, "--detach needs at least one --url"},
		} {
			r := dcroll(t, modeArgs(t, zkc, root, "stage", tt.args...)...)
			wantRun(t, r, tt.code, tt.want)
		}
		if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
			t.Errorf("refused stages changed the tree:\n%s", d)
		}
	})

	t.Run("detach writes the manifest", func(t *testing.T) {
		r := dcroll(t, modeArgs(t, zkc, root, "stage", "--detach", "--url", "http://seed.example/db-2.0.tar.gz", "db", "2.0", archive)...)
		wantRun(t, r, 0, "staged db 2.0: ", sum, "not serving (--detach)")
		m, err := store.Manifest("db")
		if err != nil {
			t.Fatal(err)
		}
		host, _ := os.Hostname()
		if m.Version != "2.0" || m.Size != size || m.SHA256 != sum || !reflect.DeepEqual(m.URLs, []string{"http://seed.example/db-2.0.tar.gz"}) ||
			m.By != host || time.Since(m.Staged) > time.Minute {
			t.Errorf("manifest %+v, want version 2.0, size %d, sha256 %s, the web seed only, by %s, staged now", m, size, sum, host)
		}
		// The hosts fetch over BitTorrent with the origin as web seed, and
		// with nobody seeding.
		if !reflect.DeepEqual(m.WebSeeds, m.URLs) || len(m.Seeders) != 0 {
			t.Errorf("manifest web seeds %q, seeders %q: want the --url origins and no seeder", m.WebSeeds, m.Seeders)
		}
		if _, err := fetch.ParseMetainfo(m.Metainfo, fetch.MaxMetainfoBytes, m.Infohash); err != nil {
			t.Errorf("detached manifest's metainfo: %v", err)
		}
	})

	t.Run("staging in progress", func(t *testing.T) {
		setMembers(t, store, "db", "h1")
		setCurrent(t, store, "db", "1.0", "h1")
		before := dump(t, rolltest.RawOf(t, store), root)
		r := dcroll(t, modeArgs(t, zkc, root, "stage", "--detach", "--url", "http://seed.example/db-2.1", "db", "2.1", archive)...)
		wantRun(t, r, 1, "a staging is in progress: db 2.0 is staged and not yet running on every online host", "--replace")
		if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
			t.Errorf("a refused stage changed the tree:\n%s", d)
		}
		if _, err := store.JoinReady("db", "h1", "2.0"); err != nil {
			t.Fatal(err)
		}
		r = dcroll(t, modeArgs(t, zkc, root, "stage", "--replace", "--detach", "--url", "http://seed.example/db-2.1", "db", "2.1", archive)...)
		wantRun(t, r, 0, "staged db 2.1")
		if m, err := store.Manifest("db"); err != nil || m.Version != "2.1" {
			t.Errorf("after --replace the manifest is %+v (%v), want 2.1", m, err)
		}
		if q, err := store.ReadyQueue("db"); err != nil || len(q) != 0 {
			t.Errorf("after --replace the ready queue is %v (%v), want it empty", q, err)
		}
	})
}

// runStage starts stage in the background; the returned function waits for
// its exit code.
func runStage(t *testing.T, ctx context.Context, args []string) (stdout *syncBuffer, wait func() result) {
	t.Helper()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- modes.Main(ctx, args, &out, &errOut, testEnviron) }()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("stage did not exit")
		}
	})
	return &out, func() result {
		t.Helper()
		select {
		case code := <-done:
			done <- code
			return result{code, out.String(), errOut.String()}
		case <-time.After(20 * time.Second):
			t.Fatalf("stage did not exit:\n%s", result{-1, out.String(), errOut.String()})
			return result{}
		}
	}
}

func TestIntegration_StageServes(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/serve"
	store := seedRoot(t, zkc, root, seedChain)
	dir, packed := releaseDir(t, "v2")
	sum := sha256.Sum256(packed)

	t.Run("until every online member is ready", func(t *testing.T) {
		// h1, h2 online on 1.0; h3 offline; h4 serves db but is no
		// member, so it is not waited for.
		setMembers(t, store, "db", "h1", "h2", "h3")
		setCurrent(t, store, "db", "1.0", "h1", "h2", "h4")
		out, wait := runStage(t, context.Background(), modeArgs(t, zkc, root, "stage", "--listen", "127.0.0.1:0", "--timeout", "1m", "db", "2.0", dir))

		var m roll.Manifest
		testutil.Eventually(t, 15*time.Second, func() (err error) {
			m, err = store.Manifest("db")
			return err
		})
		if m.Size != int64(len(packed)) || m.SHA256 != hex.EncodeToString(sum[:]) || len(m.URLs) != 1 || !strings.HasPrefix(m.URLs[0], "http://127.0.0.1:") {
			t.Fatalf("manifest %+v, want the packed directory's size and sha256 and one URL on 127.0.0.1", m)
		}
		dst := filepath.Join(t.TempDir(), "db-2.0.tar.gz")
		a := fetch.Artifact{Service: "db", Version: m.Version, Size: m.Size, SHA256: m.SHA256, URLs: m.URLs}
		if err := (fetch.HTTP{}).Fetch(context.Background(), a, dst); err != nil {
			t.Fatalf("fetch the staged artifact: %v", err)
		}
		if got, _ := os.ReadFile(dst); !bytes.Equal(got, packed) {
			t.Errorf("fetched artifact differs from the packed directory")
		}

		progress := func(want string) func() error {
			return func() error {
				if !strings.Contains(out.String(), want) {
					return fmt.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
				return nil
			}
		}
		testutil.Eventually(t, 10*time.Second, progress("db 2.0: 0/2 hosts ready"))

		// h2 reports a download over HTTP: stage and status say so, and why.
		why := "BitTorrent failed: no data for 30s"
		if err := store.RegisterHost("h2", roll.Host{Agent: "1", Services: []string{"db"},
			Fetching: map[string]roll.Fetch{"db": {Version: "2.0", Size: m.Size, Via: roll.ViaHTTP, Why: why}}}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, progress("db 2.0: h2 fetches over HTTP, not BitTorrent: "+why))
		st := dcroll(t, statusArgs(t, zkc, root, "h2")...)
		if row := strings.Join(tableRow(st.stdout, "h2"), " "); !strings.Contains(row, "db=1.0 (fetching 2.0 over HTTP, not BitTorrent: "+why+")") {
			t.Errorf("status row of h2 is %q, want it to show the download over HTTP and why\n%s", row, st)
		}

		if _, err := store.JoinReady("db", "h1", "2.0"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, progress("db 2.0: 1/2 hosts ready"))
		setCurrent(t, store, "db", "2.0", "h2") // upgraded already
		r := wait()
		wantRun(t, r, 0, "db 2.0: 2/2 hosts ready", "every online host (2) has the release; done serving")
		if err := (fetch.HTTP{}).Fetch(context.Background(), a, dst+".again"); err == nil {
			t.Errorf("stage still serves after it exited")
		}
	})

	t.Run("timeout names the hosts not ready", func(t *testing.T) {
		setMembers(t, store, "api", "h1", "h2")
		setCurrent(t, store, "api", "1.0", "h1", "h2")
		_, wait := runStage(t, context.Background(), modeArgs(t, zkc, root, "stage", "--listen", "127.0.0.1:0", "--timeout", "1s", "api", "2.0", dir))
		wantRun(t, wait(), 1, "api 2.0: timed out after 1s with 0/2 hosts ready; not ready: h1, h2")
		if m, err := store.Manifest("api"); err != nil || m.Version != "2.0" {
			t.Errorf("after a timeout the manifest is %+v (%v), want it to stay", m, err)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		setMembers(t, store, "cache", "h1")
		setCurrent(t, store, "cache", "1.0", "h1")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out, wait := runStage(t, ctx, modeArgs(t, zkc, root, "stage", "--listen", "127.0.0.1:0", "cache", "2.0", dir))
		testutil.Eventually(t, 15*time.Second, func() error {
			if !strings.Contains(out.String(), "0/1 hosts ready") {
				return errors.New("no progress yet")
			}
			return nil
		})
		cancel()
		wantRun(t, wait(), 0, "interrupted with 0/1 hosts ready; the release stays staged and hosts can still fetch it from peers")
	})

	t.Run("replaced meanwhile", func(t *testing.T) {
		out, wait := runStage(t, context.Background(), modeArgs(t, zkc, root, "stage", "--replace", "--listen", "127.0.0.1:0", "cache", "2.1", dir))
		testutil.Eventually(t, 15*time.Second, func() error {
			if !strings.Contains(out.String(), "0/1 hosts ready") {
				return errors.New("no progress yet")
			}
			return nil
		})
		stage(t, store, "cache", "2.2")
		wantRun(t, wait(), 1, "cache 2.1 was replaced meanwhile by 2.2")
	})
}

func TestIntegration_Order(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/order"
	store := seedRoot(t, zkc, root, seedChain)
	order := func(args ...string) result { return dcroll(t, modeArgs(t, zkc, root, "order", args...)...) }

	t.Run("auto with nothing staged", func(t *testing.T) {
		wantRun(t, order("--auto"), 1, "nothing is staged")
	})

	t.Run("a release rolled out already: nothing to order", func(t *testing.T) {
		setMembers(t, store, "cache", "h1")
		setCurrent(t, store, "cache", "2.0", "h1")
		stage(t, store, "cache", "2.0")
		before := dump(t, rolltest.RawOf(t, store), root)
		for _, args := range [][]string{{"cache"}, {"--auto"}} {
			wantRun(t, order(args...), 1, "dcroll order: roll: nothing to order: the staged release of cache runs on every online host already")
		}
		if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
			t.Errorf("an order with nothing to do changed the tree:\n%s", d)
		}
		if err := store.Unstage("cache"); err != nil {
			t.Fatal(err)
		}
	})

	stage(t, store, "db", "2.0")
	stage(t, store, "api", "2.0")
	t.Run("refused, nothing written", func(t *testing.T) {
		before := dump(t, rolltest.RawOf(t, store), root)
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"api", "db"}, `"api" depends on "db", which comes later; put "db" in an earlier step`},
			{[]string{"db,api"}, `"api" depends on "db", which is in the same step`},
			{[]string{"nope"}, `service "nope" is not in the catalog`},
			{[]string{"cache"}, `service "cache" has nothing staged; stage a release of it first`},
			{[]string{"db", "db"}, `service "db" is listed twice, in steps 1 and 2`},
		} {
			wantRun(t, order(tt.args...), 1, "dcroll order: roll: bad deploy order: "+tt.want)
		}
		if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
			t.Errorf("refused orders changed the tree:\n%s", d)
		}
	})

	t.Run("auto", func(t *testing.T) {
		wantRun(t, order("--auto"), 0, "queued 2 steps", "1. db  (rolling)", "2. api")
		if got, want := stepsOf(t, store), [][]string{{"db"}, {"api"}}; !reflect.DeepEqual(got, want) {
			t.Errorf("queue %q, want %q", got, want)
		}
		wantRun(t, order("--auto"), 0, "every staged service is queued already")
	})

	t.Run("already queued", func(t *testing.T) {
		stage(t, store, "cache", "3.0")
		before := dump(t, rolltest.RawOf(t, store), root)
		wantRun(t, order("cache,db"), 1, `service "db" is already queued, in step 1 of 2`)
		if d := diffDumps(before, dump(t, rolltest.RawOf(t, store), root)); d != "" {
			t.Errorf("a refused order changed the tree:\n%s", d)
		}
		wantRun(t, order("cache"), 0, "queued 1 step", "3. cache")
		if got, want := stepsOf(t, store), [][]string{{"db"}, {"api"}, {"cache"}}; !reflect.DeepEqual(got, want) {
			t.Errorf("queue %q, want %q", got, want)
		}
	})
}

func TestIntegration_Control(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/control"
	store := seedRoot(t, zkc, root, seedChain)
	run := func(mode string, args ...string) result { return dcroll(t, modeArgs(t, zkc, root, mode, args...)...) }
	control := func(svc string) roll.Control {
		t.Helper()
		c, err := store.Control(svc)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	deployPaused := func() bool {
		t.Helper()
		c, err := store.DeployControl()
		if err != nil {
			t.Fatal(err)
		}
		return c.Paused
	}
	failure := &roll.Failure{Host: "h3", Version: "2.0", Reason: "health check failed", At: time.Now().UTC().Truncate(time.Second)}

	wantRun(t, run("pause"), 0, "paused the deploy")
	wantRun(t, run("pause", "db"), 0, "paused db")
	wantRun(t, run("pause", "nope"), 1, `service "nope" is not in the catalog (api, cache, db)`)
	wantRun(t, run("resume", "nope"), 1, `service "nope" is not in the catalog`)
	if !deployPaused() || !control("db").Paused || control("api").Paused {
		t.Fatalf("after pause and pause db: deploy paused %v, db %+v, api %+v", deployPaused(), control("db"), control("api"))
	}

	if err := store.UpdateControl("api", func(c *roll.Control) { c.Halted = failure }); err != nil {
		t.Fatal(err)
	}
	wantRun(t, run("resume", "api"), 0, "cleared the halt of api (h3 on 2.0: health check failed)")
	if c := control("api"); c.Halted != nil || c.Paused {
		t.Errorf("after resume api: %+v, want neither paused nor halted", c)
	}
	if !deployPaused() || !control("db").Paused {
		t.Errorf("resume api lifted other pauses")
	}
	wantRun(t, run("resume", "cache"), 0, "nothing was paused or halted")

	if err := store.UpdateControl("cache", func(c *roll.Control) { c.Halted = failure }); err != nil {
		t.Fatal(err)
	}
	wantRun(t, run("resume"), 0, "resumed the deploy", "resumed db", "cleared the halt of cache")
	if deployPaused() || control("db").Paused || control("cache").Halted != nil {
		t.Errorf("after resume: deploy paused %v, db %+v, cache %+v", deployPaused(), control("db"), control("cache"))
	}

	t.Run("abort", func(t *testing.T) {
		stage(t, store, "db", "2.0")
		stage(t, store, "api", "2.0")
		if _, err := store.JoinReady("db", "h1", "2.0"); err != nil {
			t.Fatal(err)
		}
		if err := store.AppendSteps([][]string{{"db"}, {"api"}}); err != nil {
			t.Fatal(err)
		}
		if err := store.UpdateControl("db", func(c *roll.Control) { c.Paused = true }); err != nil {
			t.Fatal(err)
		}
		if err := store.UpdateControl("api", func(c *roll.Control) { c.Halted = failure }); err != nil {
			t.Fatal(err)
		}
		if err := store.SetDeployPaused(true); err != nil {
			t.Fatal(err)
		}
		setMembers(t, store, "db", "h1")
		setCurrent(t, store, "db", "1.0", "h1")

		wantRun(t, run("abort"), 0, "cleared the deploy queue (2 steps)", "unstaged api 2.0", "unstaged db 2.0",
			"resumed db", "cleared the halt of api", "the deploy stays paused", "hosts keep the versions they run now")
		if got := stepsOf(t, store); len(got) != 0 {
			t.Errorf("queue %q after abort, want it empty", got)
		}
		if staged, err := store.StagedServices(); err != nil || len(staged) != 0 {
			t.Errorf("staged %q (%v) after abort, want none", staged, err)
		}
		if ok, _, err := rolltest.RawOf(t, store).Exists(root + "/staging/db/ready"); err != nil || ok {
			t.Errorf("db's ready queue survived the abort (%v)", err)
		}
		if c := control("db"); c.Paused {
			t.Errorf("db still paused after abort")
		}
		if c := control("api"); c.Halted != nil {
			t.Errorf("api still halted after abort")
		}
		if cur, err := store.CurrentOf("db"); err != nil || cur["h1"].Version != "1.0" {
			t.Errorf("h1's db after abort: %+v (%v), want 1.0 untouched", cur, err)
		}
		wantRun(t, run("abort"), 0, "cleared the deploy queue (0 steps)")
	})
}

// sectionRow finds the first line after the line starting with header whose
// first column is name, and returns its columns.
func sectionRow(out, header, name string) []string {
	_, rest, ok := strings.Cut(out, "\n"+header)
	if !ok {
		return nil
	}
	return tableRow(rest, name)
}

func TestIntegration_StatusDeploy(t *testing.T) {
	zkc := zktest.Standalone(t)
	const root = "/deploy"
	store := seedRoot(t, zkc, root, seedChain)
	// db: quorum 2 of h1..h3, h3 offline; api: h1, h2 online.
	setMembers(t, store, "db", "h1", "h2", "h3")
	setCurrent(t, store, "db", "1.0", "h1", "h2")
	setMembers(t, store, "api", "h1", "h2")
	setCurrent(t, store, "api", "1.0", "h1", "h2")
	stage(t, store, "db", "2.0")
	stage(t, store, "api", "2.0")
	for _, q := range []struct{ svc, host string }{{"db", "h1"}, {"db", "h2"}, {"api", "h2"}} {
		if _, err := store.JoinReady(q.svc, q.host, "2.0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.AppendSteps([][]string{{"db"}, {"api"}}); err != nil {
		t.Fatal(err)
	}
	status := func(args ...string) result {
		t.Helper()
		r := dcroll(t, statusArgs(t, zkc, root, args...)...)
		if r.code != 0 {
			t.Fatalf("status:\n%s", r)
		}
		return r
	}
	statusJSON := func() map[string]roll.ServiceStatus {
		t.Helper()
		r := status("--json")
		var st roll.FleetStatus
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
		if want := [][]string{{"db"}, {"api"}}; len(st.Deploy.Steps) != 2 || !reflect.DeepEqual(
			[][]string{st.Deploy.Steps[0].Services, st.Deploy.Steps[1].Services}, want) || !strings.HasPrefix(st.Deploy.Steps[0].Name, "step-") {
			t.Errorf("deploy steps %+v, want %q", st.Deploy.Steps, want)
		}
		out := map[string]roll.ServiceStatus{}
		for _, s := range st.Services {
			out[s.Name] = s
		}
		return out
	}

	t.Run("waiting", func(t *testing.T) {
		r := status()
		for _, row := range []struct {
			name string
			want []string
		}{
			{"STAGED", []string{"STAGED", "VERSION", "READY", "UPGRADING", "ROLL"}},
			{"db", strings.Fields("db 2.0 2/2 - waiting for quorum: 2 online of 3 members, quorum 2")},
			{"api", strings.Fields("api 2.0 1/2 - not in the head deploy step")},
		} {
			if got := sectionRow(r.stdout, "DEPLOY", row.name); !reflect.DeepEqual(got, row.want) {
				t.Errorf("deploy row %s is %q, want %q\n%s", row.name, got, row.want, r.stdout)
			}
		}
		for _, w := range []string{"\nDEPLOY\n", "step 1: db  rolling\n", "step 2: api\n"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("status lacks %q:\n%s", w, r.stdout)
			}
		}
		if tableRow(r.stdout, "cache") == nil || sectionRow(r.stdout, "STAGED", "cache") != nil {
			t.Errorf("cache, with nothing staged, belongs in the services table only:\n%s", r.stdout)
		}

		st := statusJSON()
		db, api, cache := st["db"], st["api"], st["cache"]
		if db.Staged != "2.0" || !reflect.DeepEqual(db.Ready, []string{"h1", "h2"}) || len(db.Upgrading) != 0 ||
			db.RollReady || !strings.HasPrefix(db.RollWait, "waiting for quorum") || db.Paused || db.Halted != nil {
			t.Errorf("db %+v", db)
		}
		if api.Staged != "2.0" || !reflect.DeepEqual(api.Ready, []string{"h2"}) || api.RollReady || api.RollWait != "not in the head deploy step" {
			t.Errorf("api %+v", api)
		}
		if cache.Staged != "" || cache.Ready == nil || cache.Upgrading == nil || cache.RollReady || cache.RollWait != "nothing staged" {
			t.Errorf("cache %+v", cache)
		}
	})

	t.Run("ready to roll", func(t *testing.T) {
		setCurrent(t, store, "db", "1.0", "h3")
		if got := sectionRow(status().stdout, "DEPLOY", "db"); !reflect.DeepEqual(got, strings.Fields("db 2.0 2/3 - ready to roll (next: h1)")) {
			t.Errorf("db's deploy row %q", got)
		}
		if db := statusJSON()["db"]; !db.RollReady || db.RollWait != "" {
			t.Errorf("db %+v, want ready to roll", db)
		}
	})

	t.Run("upgrading", func(t *testing.T) {
		data, _ := json.Marshal(roll.Turn{From: "1.0", To: "2.0", Started: time.Now().UTC()})
		if _, err := rolltest.RawOf(t, store).Create(store.Tree.Turn("db", "h3"), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		defer rolltest.RawOf(t, store).Delete(store.Tree.Turn("db", "h3"), -1)
		if got := sectionRow(status().stdout, "DEPLOY", "db"); !reflect.DeepEqual(got, strings.Fields("db 2.0 2/3 h3 max_parallel 1 reached")) {
			t.Errorf("db's deploy row %q", got)
		}
		if db := statusJSON()["db"]; !reflect.DeepEqual(db.Upgrading, []string{"h3"}) {
			t.Errorf("db upgrading %q, want h3", db.Upgrading)
		}
	})

	t.Run("paused and halted", func(t *testing.T) {
		wantRun(t, dcroll(t, modeArgs(t, zkc, root, "pause", "db")...), 0, "paused db")
		failure := &roll.Failure{Host: "h2", Version: "2.0", Reason: "unhealthy", At: time.Now().UTC().Truncate(time.Second)}
		if err := store.UpdateControl("api", func(c *roll.Control) { c.Halted = failure }); err != nil {
			t.Fatal(err)
		}
		r := status()
		if got := sectionRow(r.stdout, "DEPLOY", "db"); !reflect.DeepEqual(got, strings.Fields("db 2.0 2/3 - paused")) {
			t.Errorf("db's deploy row %q", got)
		}
		if !strings.Contains(r.stdout, "api halted: h2 on 2.0: unhealthy; fix it, then `dcroll resume api` retries") {
			t.Errorf("status does not show api's halt:\n%s", r.stdout)
		}
		st := statusJSON()
		if db := st["db"]; !db.Paused || db.RollWait != "paused" {
			t.Errorf("db %+v, want paused", db)
		}
		if api := st["api"]; !reflect.DeepEqual(api.Halted, failure) {
			t.Errorf("api halted %+v, want %+v", api.Halted, failure)
		}

		wantRun(t, dcroll(t, modeArgs(t, zkc, root, "pause")...), 0, "paused the deploy")
		if !strings.Contains(status().stdout, "\nDEPLOY  paused") {
			t.Errorf("status does not show the deploy paused")
		}
	})
}

func TestIntegration_Forget(t *testing.T) {
	zkc := zktest.Standalone(t)
	root := "/forget"
	store := seedRoot(t, zkc, root, seedChain)
	setMembers(t, store, "db", "h1", "h2")
	if err := store.RegisterHost("h2", roll.Host{Agent: "test"}); err != nil {
		t.Fatal(err)
	}
	forget := func(args ...string) result { return dcroll(t, modeArgs(t, zkc, root, "forget", args...)...) }
	wantRun(t, forget("h2"), 1, "the host's agent is up", root+"/hosts/h2 exists")
	wantRun(t, forget("h1"), 0, "forgot h1: no longer a member of db")
	if m, err := store.Members("db"); err != nil || strings.Join(m, ",") != "h2" {
		t.Errorf("db members %q (%v) after forgetting h1, want h2", m, err)
	}
	wantRun(t, forget("h1"), 0, "h1 is not a member of any service; nothing to forget")
	wantRun(t, forget(), 2, "want exactly one HOST")
}
