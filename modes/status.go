package modes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/roll"
)

func init() { register("status", func() mode { return &statusMode{} }) }

type statusMode struct {
	json     bool
	watch    bool
	interval time.Duration
}

func (*statusMode) Synopsis() string {
	return "show the fleet: per service and per host, online, offline, versions"
}

func (m *statusMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	fs.BoolVar(&m.json, "json", false, "print JSON (schema in the README; fields are only ever added)")
	fs.BoolVar(&m.watch, "watch", false, "refresh until interrupted")
	fs.DurationVar(&m.interval, "interval", 2*time.Second, "refresh interval with --watch")
	return fs, "status [--json] [--watch [--interval 2s]]", `
Per service: its policy (quorum, max_parallel, dependencies), its members,
which are online (serving and healthy, in /current) and which offline
(members not in /current), and how many hosts run each version. The
deploy: the queue of steps (the first is rolling), and per staged service
its version, how many hosts are ready (hold it verified), which are
upgrading, and whether the next host may take its turn or what it waits
for. Per host: whether its agent is up and what it serves.`
}

func (m *statusMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	if m.interval <= 0 {
		return usageErr("--interval must be positive")
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		st, err := store.Status()
		if err != nil {
			if !m.watch {
				return err
			}
			// A watch rides out a ZooKeeper outage or a leader change.
			fmt.Fprintf(env.Stderr, "dcroll status: %v (retrying every %s)\n", err, m.interval)
		} else if m.json {
			enc := json.NewEncoder(env.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				return err
			}
		} else {
			if m.watch && isTerminal(env.Stdout) {
				fmt.Fprint(env.Stdout, "\x1b[H\x1b[2J")
			}
			printStatus(env.Stdout, st)
		}
		if !m.watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func printStatus(w io.Writer, st *roll.FleetStatus) {
	fmt.Fprintf(w, "data center %s at %s\n\n", st.Root, st.Time.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tONLINE\tQUORUM\tPARALLEL\tDEPENDS ON\tVERSIONS\tOFFLINE")
	for _, s := range st.Services {
		deps := strings.Join(s.Policy.DependsOn, ",")
		if deps == "" {
			deps = "-"
		}
		var off []string
		for _, h := range s.Offline {
			if slices.Contains(s.Expired, h) {
				h += "(expired)" // gone longer than member_ttl: not counted
			}
			off = append(off, h)
		}
		offline := strings.Join(off, ",")
		if offline == "" {
			offline = "-"
		}
		quorum := fmt.Sprintf("%d (%s)", s.QuorumHosts, s.Policy.Quorum)
		if s.Policy.Quorum.Zero() {
			quorum = "0 (may be fully down)"
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%s\t%s\t%s\n", s.Name, len(s.Online), len(s.Members),
			quorum, s.Policy.MaxParallel, deps, versions(s.Versions), offline)
	}
	tw.Flush()
	fmt.Fprintln(w)
	printDeploy(w, st)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tAGENT\tSERVICES")
	for _, h := range st.Hosts {
		agent := "down"
		if h.AgentUp {
			agent = "up " + h.Agent
		}
		var svcs []string
		for _, s := range h.Services {
			v := s.Version
			if !s.Online {
				v = "offline"
			}
			svcs = append(svcs, s.Name+"="+v)
			if f, ok := h.Fetching[s.Name]; ok {
				svcs = append(svcs, "("+describeFetch(f)+")")
			}
			if why, ok := h.Stuck[s.Name]; ok {
				svcs = append(svcs, fmt.Sprintf("(stuck: %s)", why))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Name, agent, strings.Join(svcs, " "))
	}
	tw.Flush()
}

// describeFetch says how far a host's download is, and, for one not over
// BitTorrent, why.
func describeFetch(f roll.Fetch) string {
	if f.Via == roll.ViaHTTP {
		return fmt.Sprintf("fetching %s over HTTP, not BitTorrent: %s", f.Version, f.Why)
	}
	return fmt.Sprintf("fetching %s: %s of %s from %d peers", f.Version, humanBytes(f.Bytes), humanBytes(f.Size), f.Peers)
}

// versions renders "v2:5 v1:3", most hosts first.
func versions(counts map[string]int) string {
	if len(counts) == 0 {
		return "-"
	}
	vs := make([]string, 0, len(counts))
	for v := range counts {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		if counts[vs[i]] != counts[vs[j]] {
			return counts[vs[i]] > counts[vs[j]]
		}
		return vs[i] < vs[j]
	})
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%s:%d", v, counts[v])
	}
	return strings.Join(parts, " ")
}

// printDeploy prints the deploy section: the queue, then one line per
// service with something staged, paused, halted or upgrading.
func printDeploy(w io.Writer, st *roll.FleetStatus) {
	d := st.Deploy
	head := "DEPLOY"
	if d.Paused {
		head += "  paused (dcroll resume)"
	}
	fmt.Fprintln(w, head)
	if len(d.Steps) == 0 {
		fmt.Fprintln(w, "queue empty")
	}
	for i, step := range d.Steps {
		mark := ""
		if i == 0 {
			mark = "  rolling"
		}
		fmt.Fprintf(w, "step %d: %s%s\n", i+1, strings.Join(step.Services, ","), mark)
	}
	var rows []roll.ServiceStatus
	for _, s := range st.Services {
		if s.Staged != "" || s.Paused || s.Halted != nil || len(s.Upgrading) > 0 {
			rows = append(rows, s)
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STAGED\tVERSION\tREADY\tUPGRADING\tROLL")
		for _, s := range rows {
			staged := s.Staged
			if staged == "" {
				staged = "-"
			}
			upgrading := strings.Join(s.Upgrading, ",")
			if upgrading == "" {
				upgrading = "-"
			}
			verdict := "ready to roll"
			if len(s.Ready) > 0 {
				verdict += " (next: " + s.Ready[0] + ")"
			}
			if !s.RollReady {
				verdict = s.RollWait
				if s.Paused && !strings.Contains(verdict, "paused") {
					verdict = "paused; " + verdict
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", s.Name, staged, len(s.Ready), len(s.Online), upgrading, verdict)
		}
		tw.Flush()
	}
	for _, s := range rows {
		if s.Halted != nil {
			fmt.Fprintf(w, "%s halted: %s; fix it, then `dcroll resume %s` retries, or `dcroll abort`\n", s.Name, s.Halted, s.Name)
		}
	}
	fmt.Fprintln(w)
}
