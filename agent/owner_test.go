package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
)

// gatedOrigin serves artifacts from dir, holding every request until open
// is closed, and counts the requests.
type gatedOrigin struct {
	*httptest.Server
	open     chan struct{}
	requests atomic.Int32
}

func newGatedOrigin(t *testing.T, dir string) *gatedOrigin {
	g := &gatedOrigin{open: make(chan struct{})}
	files := fetch.NewServer(dir)
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		select {
		case <-g.open:
		case <-r.Context().Done():
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

// stageRelease packs a release of svc, puts it where origin serves it
// from, and writes its manifest.
func stageRelease(t *testing.T, admin *roll.Store, artDir, origin, svc, version string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := fetch.ArtifactPath(artDir, svc, version)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fetch.PackFile(src, path); err != nil {
		t.Fatal(err)
	}
	size, sum, err := fetch.Describe(path)
	if err != nil {
		t.Fatal(err)
	}
	m := roll.Manifest{Version: version, Size: size, SHA256: sum, Staged: time.Now().UTC(),
		URLs: []string{origin + "/artifacts/" + svc + "/" + version}}
	if err := admin.Stage(svc, m, true); err != nil {
		t.Fatal(err)
	}
}

// inProcessAgent configures an agent for host running the one service web
// (a sleeping process, always healthy), with versions installed.
func inProcessAgent(t *testing.T, zkc *zktest.Cluster, host string, versions ...string) (*config.Config, state.Releases) {
	t.Helper()
	dir := t.TempDir()
	rel := state.Releases{Dir: filepath.Join(dir, "releases", "web")}
	for _, v := range versions {
		if err := os.MkdirAll(rel.Path(v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(config.Sources{FileData: []byte(fmt.Sprintf(`
[zookeeper]
servers = [%q]
root = "/dc"
session_timeout = "2s"
acl = "open"
[host]
name = %q
state_dir = %q
[services.web]
releases = %q
run = "exec sleep 3600"
stop_timeout = "2s"
[services.web.health]
command = "true"
interval = "50ms"
timeout = "1s"
`, zkc.ConnString(), host, dir, rel.Dir))})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, rel
}

// testLogger logs to the test's log, shown when it fails.
func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// stackCount counts the goroutines whose stack holds fn.
func stackCount(fn string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// A session change while the boot move to the fleet's version is still
// fetching makes the new session look at the fleet again. The move happens
// once, and nothing is closed twice.
func TestIntegration_FleetLookDuringBootMoveMovesOnce(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := rolltest.Open(t, zkc, "/dc")
	rolltest.Seed(t, admin, "[services.web]\nquorum = 1\n")
	artDir := t.TempDir()
	origin := newGatedOrigin(t, artDir)
	stageRelease(t, admin, artDir, origin.URL, "web", "v2")
	// The rest of the fleet runs v2; this host only has v1.
	if err := admin.SetCurrent("web", "other", roll.Current{Version: "v2", Since: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := inProcessAgent(t, zkc, "h1", "v1")
	var mu sync.Mutex
	starts := map[string]int{}
	a := New(Options{Config: cfg, Log: testLogger(t), Version: "test", ViewInterval: 50 * time.Millisecond,
		Started: func(svc, v string) { mu.Lock(); starts[v]++; mu.Unlock() }})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	// The agent's first look at the fleet is fetching v2 from the origin.
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := origin.requests.Load(); n != 1 {
			return fmt.Errorf("%d requests at the origin", n)
		}
		return nil
	})
	// A second session looks at the fleet while that fetch goes on.
	looked := make(chan struct{})
	go func() {
		defer close(looked)
		a.observe("web", map[string]int{"v2": 1})
	}()
	// The second look is taken: it returned, or waits behind the first.
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case <-looked:
			return nil
		default:
		}
		if n := stackCount("agent.(*Agent).observe"); n < 2 {
			return fmt.Errorf("%d looks at the fleet under way", n)
		}
		return nil
	})
	close(origin.open)

	testutil.Eventually(t, 30*time.Second, func() error {
		cur, err := admin.CurrentOf("web")
		if err != nil {
			return err
		}
		if c := cur["h1"]; c.Version != "v2" {
			return fmt.Errorf("/current/web/h1 says %+v, want v2", c)
		}
		return nil
	})
	<-looked
	mu.Lock()
	defer mu.Unlock()
	if starts["v1"] != 1 || starts["v2"] != 1 {
		t.Fatalf("starts by version: %v, want v1 and v2 once each", starts)
	}
	if n := origin.requests.Load(); n != 1 {
		t.Fatalf("%d fetches of v2, want 1", n)
	}
}
