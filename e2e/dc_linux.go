package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/agentconf"
	"github.com/dcroll/dcroll/internal/proc"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// Timings of the data center: short, so a schedule takes seconds.
const (
	healthInterval = 200 * time.Millisecond
	viewInterval   = 200 * time.Millisecond
	Root           = "/dc"
)

// Catalog is the data center's seed. With 6 hosts, db's quorum binds before
// its max_parallel (at most 2 of 6 out at once), web's max_parallel binds
// before its quorum until a fault takes a host. A canary of web ends by
// itself after canary_hold (db's waits for the operator's promote).
const Catalog = `
[services.db]
quorum = 4
max_parallel = 3
[services.db.health]
min_healthy = "500ms"
deadline = "5s"

[services.web]
depends_on = ["db"]
quorum = "50%"
max_parallel = 2
canary_hold = "2s"
[services.web.health]
min_healthy = "500ms"
deadline = "5s"
`

// servicePort is where each service of a host listens, on the host's address.
var servicePort = map[string]int{"db": 8001, "web": 8002}

// DC is a small data center on this machine: a 3-node ZooKeeper ensemble
// and hosts, each in a network namespace of its own, each running a dcroll
// agent that manages the services. The operator's commands run in the root
// namespace, on the lab's bridge.
type DC struct {
	t     testing.TB
	Lab   *Lab
	Dir   string
	Exe   string // the dcroll binary
	ZK    *zktest.Cluster
	Hosts []*Host
	Store *roll.Store // the test's own view of ZooKeeper
	// Policies are the catalog's services.
	Policies roll.Catalog

	opConfig string // the operator's config file
	// SignKey is the release key, as dcroll keygen writes it: stage signs
	// with it, and every host trusts its public half (trustKey).
	SignKey  string
	trustKey string
	zkAddrs  []string
	zkNames  []string // zkAddrs as the hosts know them, by name
}

// Host is one machine of the data center.
type Host struct {
	*Node
	Dir string
	dc  *DC

	mu    sync.Mutex
	agent *proc.Proc
}

// NewDC builds the data center with n hosts and seeds it. Everything is
// removed when the test ends, and what an interrupted run left behind is
// removed when the next one starts. It skips the test where the harness
// cannot run.
func NewDC(t testing.TB, exe string, n int) *DC {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	lab, err := NewLab(t.Logf)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	dc := &DC{t: t, Lab: lab, Dir: t.TempDir(), Exe: exe}
	dc.Policies, err = roll.ParseCatalog("catalog", strings.NewReader(Catalog))
	if err != nil {
		t.Fatal(err)
	}

	var zkNodes []*Node
	for i := range 3 {
		node, err := lab.AddNode(fmt.Sprintf("zk%d", i+1), addr(2+i))
		if errors.Is(err, ErrUnavailable) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		zkNodes = append(zkNodes, node)
		dc.zkAddrs = append(dc.zkAddrs, node.Addr.String())
	}
	dc.ZK = zktest.EnsembleAt(t, dc.zkAddrs, func(i int, argv []string) []string { return zkNodes[i].Wrap(argv) })
	// The agents reach the ensemble by name; the operator and the test, in
	// the root namespace whose /etc/hosts is not the lab's, by address.
	for _, s := range dc.ZK.Servers() {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range zkNodes {
			if n.Addr.String() == host {
				host = n.Name
			}
		}
		dc.zkNames = append(dc.zkNames, net.JoinHostPort(host, port))
	}

	dc.opConfig = filepath.Join(dc.Dir, "operator.toml")
	if err := os.WriteFile(dc.opConfig, []byte(fmt.Sprintf("[zookeeper]\nservers = [%s]\nroot = %q\nsession_timeout = \"10s\"\n\n[log]\nlevel = \"warn\"\n",
		agentconf.QuoteList(dc.ZK.Servers()), Root)), 0o644); err != nil {
		t.Fatal(err)
	}
	zcfg := config.ZooKeeper{Servers: dc.ZK.Servers(), Root: Root, SessionTimeout: 20 * time.Second, ACL: "open"}
	dc.Store, err = roll.Open(context.Background(), zcfg, hclog.NewNullLogger(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dc.Store.Close)
	// Releases are signed, as in production: the hosts run only what the
	// release key signed.
	dc.SignKey = filepath.Join(dc.Dir, "release.key")
	if out, err := dc.Operator("keygen", dc.SignKey); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(dc.SignKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	dc.trustKey = strings.TrimSpace(string(pub))
	seed := filepath.Join(dc.Dir, "seed.toml")
	if err := os.WriteFile(seed, []byte(Catalog), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := dc.Operator("seed", seed); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}

	for i := range n {
		node, err := lab.AddNode(fmt.Sprintf("h%d", i+1), addr(11+i))
		if err != nil {
			t.Fatal(err)
		}
		h := &Host{Node: node, Dir: filepath.Join(dc.Dir, node.Name), dc: dc}
		if err := h.layout(); err != nil {
			t.Fatal(err)
		}
		dc.Hosts = append(dc.Hosts, h)
	}
	// Agents go before the lab: Cleanups run last first.
	t.Cleanup(dc.stopAgents)
	return dc
}

// addr is the lab address 198.18.0.i.
func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }

// Operator runs `dcroll` with the operator's config in the root namespace
// and returns its output.
func (dc *DC) Operator(args ...string) (string, error) {
	cmd := exec.Command(dc.Exe, append([]string{"--config", dc.opConfig}, args...)...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// StartOperator starts a long-running `dcroll` command, like stage, in the
// root namespace, with its output in logPath.
func (dc *DC) StartOperator(logPath string, args ...string) (*proc.Proc, error) {
	return proc.Start(append([]string{dc.Exe, "--config", dc.opConfig}, args...), dc.Dir, logPath, childEnv())
}

// ServiceURL is where the test asks host h's service svc which release it
// runs.
func (h *Host) ServiceURL(svc string) string {
	return fmt.Sprintf("http://%s:%d/release", h.Addr, servicePort[svc])
}

func (h *Host) configPath() string { return filepath.Join(h.Dir, "dcroll.toml") }
func (h *Host) logPath() string    { return filepath.Join(h.Dir, "agent.log") }

// layout writes the host's agent config and installs version 1 of every
// service, unpacked from the artifact the data center's history records.
func (h *Host) layout() error {
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return err
	}
	a := h.Addr.String()
	conf := agentconf.Host{
		Comment:        "dcroll e2e: the agent config of " + h.Name + ".",
		Name:           h.Name,
		StateDir:       h.Dir,
		ZooKeeper:      h.dc.zkNames,
		Root:           Root,
		SessionTimeout: SessionTimeout,
		// Listening on the host's address, advertised by the agent's
		// default: the host's name, which the other hosts resolve.
		Transfer:       a + ":7434",
		Torrent:        a + ":6881",
		LogLevel:       "debug",
		Exe:            h.dc.Exe,
		HealthInterval: healthInterval,
		TrustKeys:      []string{h.dc.trustKey},
	}
	for _, svc := range Services {
		conf.Services = append(conf.Services, agentconf.Service{Name: svc, Addr: fmt.Sprintf("%s:%d", a, servicePort[svc])})
	}
	return os.WriteFile(h.configPath(), []byte(conf.TOML()), 0o644)
}

// Install unpacks artifact as version of svc, as a host installed before
// dcroll took over would have it.
func (h *Host) Install(svc, version, artifact string) error {
	dir := filepath.Join(h.Dir, "releases", svc)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fetch.Unpack(artifact, filepath.Join(dir, version))
}

// Start runs the host's agent in the host's namespace.
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.agent != nil && !h.agent.Exited() {
		return fmt.Errorf("%s: agent already runs", h.Name)
	}
	argv := h.Wrap([]string{h.dc.Exe, "--config", h.configPath(), "agent", "--view-interval", viewInterval.String()})
	p, err := proc.Start(argv, h.Dir, h.logPath(), childEnv())
	if err != nil {
		return fmt.Errorf("%s: start agent: %w", h.Name, err)
	}
	h.agent = p
	return nil
}

// Kill sends SIGKILL to the agent alone, as a crash would, and waits until
// it is gone. The services it supervises die with it.
func (h *Host) Kill() {
	h.mu.Lock()
	p := h.agent
	h.mu.Unlock()
	if p != nil {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
}

// Signal sends sig to the agent process.
func (h *Host) Signal(sig syscall.Signal) {
	h.mu.Lock()
	p := h.agent
	h.mu.Unlock()
	if p != nil {
		p.Signal(sig)
	}
}

// stopAgents stops every agent: SIGCONT in case one is stopped, then
// SIGTERM, then SIGKILL after a grace period.
func (dc *DC) stopAgents() {
	var wg sync.WaitGroup
	for _, h := range dc.Hosts {
		h.mu.Lock()
		p := h.agent
		h.mu.Unlock()
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Signal(syscall.SIGCONT)
			p.Terminate(10 * time.Second)
		}()
	}
	wg.Wait()
}

// childEnv is the test's environment without DCROLL_* variables, which
// would change the children's configs.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCROLL_") {
			env = append(env, kv)
		}
	}
	return env
}
