package demo

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dcroll/dcroll/internal/agentconf"
	"github.com/dcroll/dcroll/internal/freeport"
	"github.com/dcroll/dcroll/internal/proc"
)

// Timings of the demo's agents: short, so a rollout takes seconds.
const (
	sessionTimeout = 3 * time.Second
	healthInterval = 200 * time.Millisecond
	viewInterval   = 200 * time.Millisecond
	// agentGrace is how long an agent may take to stop on SIGTERM.
	agentGrace = 10 * time.Second
)

// host is one simulated machine: a directory with its config, state and
// releases, and its agent while it runs.
type host struct {
	name   string
	dir    string
	ports  map[string]int // the port each service's _serve listens on
	agent  *proc.Proc
	starts int
}

func (h *host) configPath() string { return filepath.Join(h.dir, "dcroll.toml") }
func (h *host) logPath() string    { return filepath.Join(h.dir, "agent.log") }

// newHost lays out a host under dir: version 1 of every service installed
// (an empty directory is a whole release of `dcroll _serve`), and an agent
// config that runs each service as exe _serve on a port of its own and
// serves the host's artifacts to its peers on another. The host runs only
// releases signed by trustKey.
func newHost(name, dir, exe string, zkServers []string, root string, services []string, trustKey string) (*host, error) {
	h := &host{name: name, dir: dir, ports: map[string]int{}}
	// Distinct ports: the transfer, BitTorrent, then one per service.
	ports, err := freeport.Ports(2 + len(services))
	if err != nil {
		return nil, err
	}
	transfer, torrentPort := ports[0], ports[1]
	conf := agentconf.Host{
		Comment:           "dcroll demo: the agent config of " + name + ".",
		Name:              name,
		StateDir:          dir,
		ZooKeeper:         zkServers,
		Root:              root,
		SessionTimeout:    sessionTimeout,
		Transfer:          net.JoinHostPort("127.0.0.1", strconv.Itoa(transfer)),
		Torrent:           net.JoinHostPort("127.0.0.1", strconv.Itoa(torrentPort)),
		TransferAdvertise: net.JoinHostPort(hostName, strconv.Itoa(transfer)),
		TorrentAdvertise:  net.JoinHostPort(hostName, strconv.Itoa(torrentPort)),
		LogLevel:          "info",
		Exe:               exe,
		HealthInterval:    healthInterval,
		TrustKeys:         []string{trustKey},
	}
	for i, svc := range services {
		if err := os.MkdirAll(filepath.Join(dir, "releases", svc, "1"), 0o755); err != nil {
			return nil, err
		}
		port := ports[2+i]
		h.ports[svc] = port
		conf.Services = append(conf.Services, agentconf.Service{Name: svc, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	}
	if err := os.WriteFile(h.configPath(), []byte(conf.TOML()), 0o644); err != nil {
		return nil, err
	}
	return h, nil
}

// start runs the host's agent: exe agent with the host's config.
func (h *host) start(exe string, env []string) error {
	p, err := proc.Start([]string{exe, "--config", h.configPath(), "agent", "--view-interval", viewInterval.String()}, h.dir, h.logPath(), env)
	if err != nil {
		return fmt.Errorf("%s: start agent: %w", h.name, err)
	}
	h.agent = p
	h.starts++
	return nil
}

// running reports whether the host's agent runs.
func (h *host) running() bool { return h.agent != nil && !h.agent.Exited() }

// servicesDown reports whether none of the host's services accepts
// connections any more.
func (h *host) servicesDown() bool {
	for _, port := range h.ports {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
	}
	return true
}

// childEnv is the environment of the demo's children: the demo's own
// without DCROLL_* variables, which would change the agents' configs (or be
// refused by them), and with the marker that lets sweep find them.
func childEnv(environ []string, dir string) []string {
	var env []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "DCROLL_") || strings.HasPrefix(kv, markerVar+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, markerVar+"="+dir)
}
