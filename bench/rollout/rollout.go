package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/agentconf"
	"github.com/dcroll/dcroll/internal/benchtb"
	"github.com/dcroll/dcroll/internal/freeport"
	"github.com/dcroll/dcroll/internal/proc"
	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
)

const svc = "web"

// rollout is what one rollout measured.
type rollout struct {
	wall  time.Duration // the deploy ordered → its step done
	ideal time.Duration // turns × min_healthy
	turns int           // ⌈hosts ÷ max_parallel⌉

	taken     int // turns taken, seen in ZooKeeper
	maxInTurn int // most turns held at once
	onNew     int // hosts online on the new version at the end
}

// rolloutOnce starts o.hosts agents of exe under root, each serving v1,
// rolls v2 out to them with case c's health policy, and stops them.
func rolloutOnce(ctx context.Context, zkc *zktest.Cluster, o options, c testCase, exe, root string) (r rollout, err error) {
	tb := benchtb.New("dcroll-rollout-") // what this rollout opens and writes, gone when it returns
	defer tb.Close()
	r.turns = (o.hosts + o.maxParallel - 1) / o.maxParallel
	r.ideal = time.Duration(r.turns) * c.minHealthy
	admin := rolltest.Open(tb, zkc, root)
	rolltest.Seed(tb, admin, fmt.Sprintf(`
[services.%s]
quorum = 1
max_parallel = %d
[services.%s.health]
min_healthy = %q
deadline = "5m"
`, svc, o.maxParallel, svc, c.minHealthy.String()))
	conn := rolltest.ZK(tb, zkc)

	dir := tb.TempDir()
	var agents []*proc.Proc
	defer func() {
		// SIGTERM: the agents stop their services.
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Go(func() { a.Terminate(10 * time.Second) })
		}
		wg.Wait()
	}()
	env := childEnv()
	for i := range o.hosts {
		a, err := startHost(filepath.Join(dir, fmt.Sprintf("host%d", i+1)), fmt.Sprintf("host%d", i+1), exe, zkc, root, c.interval, env)
		if err != nil {
			return r, err
		}
		agents = append(agents, a)
	}
	if err := poll(ctx, time.Minute, func() (bool, error) {
		st, err := admin.Status()
		if err != nil {
			return false, err
		}
		s := service(st)
		return s != nil && s.Versions["v1"] == o.hosts, nil
	}); err != nil {
		return r, fmt.Errorf("the hosts did not all come online on v1: %w", err)
	}

	// Every host holds v2 already (no transfer is measured): stage it,
	// order it, and wait for the step to go.
	m := roll.Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("0", 64), Staged: time.Now().UTC(), By: "bench/rollout"}
	if err := admin.Stage(svc, m, false); err != nil {
		return r, err
	}
	turns := &turnWatch{}
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); turns.watch(wctx, conn, root+"/roll/"+svc+"/turns") }()
	defer func() { stopWatch(); <-watched }()

	t0 := time.Now()
	if err := admin.AppendSteps([][]string{{svc}}); err != nil {
		return r, err
	}
	if err := awaitDeployDone(ctx, conn, root+"/deploy", o.timeout); err != nil {
		return r, err
	}
	r.wall = time.Since(t0)
	stopWatch()
	<-watched
	r.taken, r.maxInTurn = turns.taken, turns.max

	st, err := admin.Status()
	if err != nil {
		return r, err
	}
	if s := service(st); s != nil {
		if s.Halted != nil {
			return r, fmt.Errorf("the rollout halted: %s on %s: %s", s.Halted.Host, s.Halted.Version, s.Halted.Reason)
		}
		r.onNew = s.Versions["v2"]
	}
	return r, nil
}

func service(st *roll.FleetStatus) *roll.ServiceStatus {
	for i := range st.Services {
		if st.Services[i].Name == svc {
			return &st.Services[i]
		}
	}
	return nil
}

// startHost lays out a host in dir, with v1 and v2 of the service
// installed (an empty directory is a whole release of `dcroll _serve`) and
// v1 last run, and starts its agent.
func startHost(dir, name, exe string, zkc *zktest.Cluster, root string, interval time.Duration, env []string) (*proc.Proc, error) {
	rels := state.Releases{Dir: filepath.Join(dir, "releases", svc)}
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(rels.Path(v), 0o755); err != nil {
			return nil, err
		}
	}
	if err := state.Save(dir, &state.File{Services: map[string]*state.Service{svc: {Running: "v1"}}}); err != nil {
		return nil, err
	}
	ports, err := freeport.Ports(3)
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	conf := agentconf.Host{
		Comment:        "bench/rollout: the agent config of " + name + ".",
		Name:           name,
		StateDir:       dir,
		ZooKeeper:      zkc.Servers(),
		Root:           root,
		SessionTimeout: 10 * time.Second,
		Transfer:       addr(ports[0]),
		Torrent:        addr(ports[1]),
		LogLevel:       "info",
		Exe:            exe,
		Services:       []agentconf.Service{{Name: svc, Addr: addr(ports[2])}},
		HealthInterval: interval,
	}
	path := filepath.Join(dir, "dcroll.toml")
	if err := os.WriteFile(path, []byte(conf.TOML()), 0o644); err != nil {
		return nil, err
	}
	p, err := proc.Start([]string{exe, "--config", path, "agent"}, dir, filepath.Join(dir, "agent.log"), env)
	if err != nil {
		return nil, fmt.Errorf("%s: start agent: %w", name, err)
	}
	return p, nil
}

// childEnv is this process's environment without DCROLL_* variables, which
// would change the agents' configs.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCROLL_") {
			env = append(env, kv)
		}
	}
	return env
}

// awaitDeployDone waits, on a watch, until the deploy queue at dir is
// empty: the last host's turn is done.
func awaitDeployDone(ctx context.Context, conn *zk.Conn, dir string, limit time.Duration) error {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		steps, _, ch, err := conn.ChildrenW(dir)
		if err != nil {
			return err
		}
		if len(steps) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("the deploy is not done within %s: %v left", limit, steps)
		}
	}
}

// turnWatch counts, from ZooKeeper, the turns taken and the most held at
// once.
type turnWatch struct {
	taken, max int
}

func (w *turnWatch) watch(ctx context.Context, conn *zk.Conn, dir string) {
	held := map[string]bool{}
	for ctx.Err() == nil {
		names, _, ch, err := conn.ChildrenW(dir)
		if err != nil {
			if _, _, ch, err = conn.ExistsW(dir); err != nil {
				return
			}
		}
		seen := map[string]bool{}
		for _, n := range names {
			seen[n] = true
			if !held[n] {
				w.taken++
			}
		}
		held = seen
		w.max = max(w.max, len(held))
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// timeServiceStart starts `exe _serve` as an agent does (through
// /bin/sh, exec), and returns the time to its first healthy answer,
// asked every millisecond.
func timeServiceStart(ctx context.Context, dir, exe string) (time.Duration, error) {
	ports, err := freeport.Ports(1)
	if err != nil {
		return 0, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	client := &http.Client{Timeout: time.Second}
	t0 := time.Now()
	p, err := proc.Start([]string{"/bin/sh", "-c", "exec " + agentconf.ShellQuote(exe) + " _serve --addr " + addr}, dir,
		filepath.Join(dir, "serve.log"), append(childEnv(), "DCROLL_VERSION=v1"))
	if err != nil {
		return 0, err
	}
	defer p.Terminate(5 * time.Second)
	for time.Since(t0) < 30*time.Second {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
		if p.Exited() {
			return 0, fmt.Errorf("_serve exited: %v", p.Err())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return 0, errors.New("_serve did not answer healthy within 30s")
}

func poll(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not within %s (last error: %v)", limit, last)
}
