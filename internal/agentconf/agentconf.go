// Package agentconf writes the agent config of a simulated host whose
// services are played by `dcroll _serve`, for the demo and the multi-host
// test harness.
package agentconf

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Host is what differs from one simulated host to the next.
type Host struct {
	Comment   string // the config's first line, after "# "
	Name      string
	StateDir  string
	ZooKeeper []string // host:port of each server
	Root      string
	// SessionTimeout is the agent's ZooKeeper session timeout.
	SessionTimeout time.Duration
	// Transfer and Torrent are the host:port the peer artifact server and
	// the BitTorrent client listen on.
	Transfer, Torrent string
	// TransferAdvertise and TorrentAdvertise are the host:port the peers
	// use; empty leaves the agent's default, the host's Name and the port.
	TransferAdvertise, TorrentAdvertise string
	LogLevel                            string
	// Exe is the dcroll binary that plays every service.
	Exe      string
	Services []Service
	// HealthInterval is how often each service is checked.
	HealthInterval time.Duration
	// TrustKeys are the public keys whose signature a release needs
	// ([trust] keys); empty: none.
	TrustKeys []string
}

// Service is one service of the host: `dcroll _serve` on Addr (host:port),
// health-checked on its /healthz.
type Service struct {
	Name, Addr string
}

// TOML is h's agent config.
func (h Host) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# %s
[zookeeper]
servers = [%s]
root = %q
session_timeout = %q

[host]
name = %q
state_dir = %q

[transfer]
listen = %q
torrent_listen = %q
%s
%s
[log]
level = %q
`, h.Comment, QuoteList(h.ZooKeeper), h.Root, h.SessionTimeout.String(), h.Name, h.StateDir,
		h.Transfer, h.Torrent, h.advertised(), h.trust(), h.LogLevel)
	for _, s := range h.Services {
		fmt.Fprintf(&b, `
[services.%s]
run = %q
stop_timeout = "5s"
[services.%s.health]
http = %q
interval = %q
timeout = "1s"
`, s.Name, "exec "+ShellQuote(h.Exe)+" _serve --addr "+s.Addr, s.Name, "http://"+s.Addr+"/healthz", h.HealthInterval.String())
	}
	return b.String()
}

// trust is the [trust] table, left out without keys: an older dcroll, as
// an upgrade test runs, knows no such table.
func (h Host) trust() string {
	if len(h.TrustKeys) == 0 {
		return ""
	}
	return fmt.Sprintf("\n[trust]\nkeys = [%s]\n", QuoteList(h.TrustKeys))
}

// advertised is the [transfer] lines of the addresses given for peers.
func (h Host) advertised() string {
	var b strings.Builder
	if h.TransferAdvertise != "" {
		fmt.Fprintf(&b, "advertise = %q\n", h.TransferAdvertise)
	}
	if h.TorrentAdvertise != "" {
		fmt.Fprintf(&b, "torrent_advertise = %q\n", h.TorrentAdvertise)
	}
	return b.String()
}

// QuoteList is ss as the items of a TOML array of strings.
func QuoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// ShellQuote quotes s for /bin/sh.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
