package modes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/web"
)

func init() { register("status", func() mode { return &statusMode{} }) }

type statusMode struct {
	json     bool
	summary  bool
	hosts    bool
	watch    bool
	interval time.Duration
	serve    string
}

func (*statusMode) Synopsis() string {
	return "show the fleet: per service, the deploy, and the hosts that need attention"
}

func (m *statusMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	fs.BoolVar(&m.json, "json", false, "print JSON: the full status (schema in the README; fields are only ever added)")
	fs.BoolVar(&m.summary, "summary", false, "with --json: print the summary instead of the full status")
	fs.BoolVar(&m.hosts, "hosts", false, "show every host, one line each (reads every host)")
	fs.BoolVar(&m.watch, "watch", false, "redraw on every change until interrupted")
	fs.DurationVar(&m.interval, "interval", 2*time.Second, "with --watch or --serve, the least time between two readings")
	fs.StringVar(&m.serve, "serve", "", "serve a live, read-only web page of the fleet on `ADDR` (host:port)")
	return fs, "status [--hosts | HOST...] [--json [--summary]] [--watch [--interval 2s]] | status --serve ADDR", `
Per service: its policy (quorum, max_parallel, dependencies), how many
members it has, how many are online (serving and healthy, in /current) and
offline (members not in /current), and how many hosts run each version.
The deploy: the queue of steps (the first is rolling), and per staged
service its version, how many hosts are ready (hold it verified), which are
upgrading, and whether the next host may take its turn or what it waits
for. Then the hosts that need attention, at most 20 of each kind per
service: offline members, hosts on a version that is neither the fleet's
most common nor the staged one (nor, while a release is staged, the one
the rollout comes from), hosts that cannot get the staged release
(stuck), and hosts in a turn for longer than twice the health deadline.

This summary is read from counts (the fleet view each service keeps), so
its cost does not grow with the fleet. --hosts shows every host instead,
and HOST... the named hosts alone. --json prints the full status, as
--hosts reads it; --json --summary the summary. --watch redraws when
something changes (ZooKeeper watches), at most once per --interval.

--watch --json prints events instead, one JSON object a line: first the
summary ("summary"), then what changed ("staged", "step_queued",
"step_rolling", "turn_taken", "host_healthy", "rollback", "halt",
"resume", "versions", "rolled_out", "step_done", ...), for scripts and CI
pipelines. --watch --json --summary and --watch --json --hosts print the
whole document at each change.

--serve ADDR serves the summary as a web page at http://ADDR/, with the
rolling step's time left on its services and the history's newest 20
events, live (it reads again when ZooKeeper reports a change, at most
once per --interval, whatever the number of viewers) and read-only;
/summary.json is the summary as --json --summary prints it.`
}

func (m *statusMode) Run(ctx context.Context, env *Env, args []string) error {
	for _, h := range args {
		if !config.ValidName(h) {
			return usageErr("host %q is not a valid host name", h)
		}
	}
	if m.hosts && len(args) > 0 {
		return usageErr("--hosts shows every host: name no hosts with it")
	}
	if m.summary && (!m.json || m.hosts || len(args) > 0) {
		return usageErr("--summary goes with --json alone: the text is the summary unless --hosts or hosts are named")
	}
	if m.interval <= 0 {
		return usageErr("--interval must be positive")
	}
	if m.serve != "" {
		if m.json || m.hosts || m.watch || len(args) > 0 {
			return usageErr("--serve shows the summary on a page, live: no --json, --hosts, --watch or hosts with it")
		}
		if _, _, err := net.SplitHostPort(m.serve); err != nil {
			return usageErr("--serve %q is not host:port", m.serve)
		}
	}
	store, cfg, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if m.serve != "" {
		return m.servePage(ctx, env, store, env.logger(cfg))
	}
	var watch *roll.SummaryWatch
	if m.watch {
		watch = store.WatchSummary()
	}
	if m.watch && m.json && !m.summary && !m.hosts && len(args) == 0 {
		return m.events(ctx, env, watch)
	}
	for {
		drawn := time.Now()
		next, err := m.show(env, store, watch, args)
		if err != nil {
			if !m.watch {
				return err
			}
			// A watch rides out a ZooKeeper outage or a leader change.
			fmt.Fprintf(env.Stderr, "dcroll status: %v (retrying every %s)\n", err, m.interval)
			next = time.Now()
		}
		if !m.watch {
			return nil
		}
		if len(args) > 0 {
			next = time.Now() // the named hosts are read again each interval
		}
		if watch.Wait(ctx, next) != nil {
			return nil
		}
		// At most one redraw per interval, however busy the fleet.
		t := time.NewTimer(time.Until(drawn.Add(m.interval)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// servePage serves the fleet's page until ctx ends.
func (m *statusMode) servePage(ctx context.Context, env *Env, store *roll.Store, log hclog.Logger) error {
	ln, err := net.Listen("tcp", m.serve)
	if err != nil {
		return fmt.Errorf("serve the status page: %w", err)
	}
	srv := web.New(store, m.interval, log)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Run(ctx)
	go func() {
		<-ctx.Done()
		_ = hs.Close() // ends the live streams too
	}()
	fmt.Fprintf(env.Stdout, "serving the status page of %s on http://%s/ (Ctrl-C stops)\n", store.Tree.Root, ln.Addr())
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// events prints what happens, one JSON event a line (roll.Event): first
// the summary as it stands, then what changed at each change the watch
// reports, at most once per interval.
func (m *statusMode) events(ctx context.Context, env *Env, watch *roll.SummaryWatch) error {
	enc := json.NewEncoder(env.Stdout)
	var prev *roll.FleetSummary
	for {
		drawn := time.Now()
		sum, err := watch.Read()
		next := time.Now()
		if err != nil {
			// A watch rides out a ZooKeeper outage or a leader change.
			fmt.Fprintf(env.Stderr, "dcroll status: %v (retrying every %s)\n", err, m.interval)
		} else {
			if prev == nil {
				err = enc.Encode(struct {
					Time    time.Time          `json:"time"`
					Event   string             `json:"event"`
					Summary *roll.FleetSummary `json:"summary"`
				}{sum.Time, "summary", sum})
			}
			for _, e := range roll.SummaryEvents(prev, sum) {
				if err == nil {
					err = enc.Encode(e)
				}
			}
			if err != nil {
				return err
			}
			prev, next = sum, sum.NextChange
		}
		if watch.Wait(ctx, next) != nil {
			return nil
		}
		// At most one reading per interval, however busy the fleet.
		if !clock.Sleep(ctx, time.Until(drawn.Add(m.interval))) {
			return nil
		}
	}
}

// show reads and prints the status once, and says when a judgement of time
// changes next. With watch, it reads the summary through it, leaving
// watches on what changes the summary: the trigger of the next redraw
// whatever is shown.
func (m *statusMode) show(env *Env, store *roll.Store, watch *roll.SummaryWatch, hosts []string) (time.Time, error) {
	var sum *roll.FleetSummary
	var err error
	if watch != nil {
		sum, err = watch.Read()
	} else if !m.hosts && len(hosts) == 0 && (!m.json || m.summary) {
		sum, err = store.Summary()
	}
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	if sum != nil {
		next = sum.NextChange
	}
	clear := func() {
		if m.watch && !m.json && isTerminal(env.Stdout) {
			fmt.Fprint(env.Stdout, "\x1b[H\x1b[2J")
		}
	}
	switch {
	case len(hosts) > 0:
		hs, err := store.HostsStatus(hosts)
		if err != nil {
			return next, err
		}
		st := &roll.FleetStatus{Root: store.Tree.Root, Time: time.Now().UTC(), Services: []roll.ServiceStatus{}, Hosts: hs}
		if m.json {
			return next, printJSON(env.Stdout, struct {
				Root  string            `json:"root"`
				Time  time.Time         `json:"time"`
				Hosts []roll.HostStatus `json:"hosts"`
			}{st.Root, st.Time, st.Hosts})
		}
		clear()
		fmt.Fprintf(env.Stdout, "data center %s at %s\n\n", st.Root, st.Time.Format(time.RFC3339))
		printHosts(env.Stdout, st)
	case m.hosts || (m.json && !m.summary):
		st, err := store.Status()
		if err != nil {
			return next, err
		}
		if m.json {
			return next, printJSON(env.Stdout, st)
		}
		clear()
		printStatus(env.Stdout, st)
	case m.json:
		return next, printJSON(env.Stdout, sum)
	default:
		clear()
		printSummary(env.Stdout, sum)
	}
	return next, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// serviceRow is a line of the services' table.
type serviceRow struct {
	name            string
	online, members int
	quorumHosts     int
	policy          roll.Service
	versions        map[string]int
	offline         string
}

// printServices prints the heading and the services' table.
func printServices(w io.Writer, root string, at time.Time, rows []serviceRow) {
	fmt.Fprintf(w, "data center %s at %s\n\n", root, at.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tONLINE\tQUORUM\tPARALLEL\tDEPENDS ON\tVERSIONS\tOFFLINE")
	for _, s := range rows {
		deps := strings.Join(s.policy.DependsOn, ",")
		if deps == "" {
			deps = "-"
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%s\t%s\t%s\n", s.name, s.online, s.members,
			quorumText(s.quorumHosts, s.policy.Quorum), s.policy.MaxParallel, deps, versions(s.versions), s.offline)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// printSummary prints the summary: a line per service, the deploy, and the
// hosts that need attention.
func printSummary(w io.Writer, st *roll.FleetSummary) {
	var svcs []serviceRow
	for _, s := range st.Services {
		offline := "-"
		if s.Offline > 0 {
			offline = fmt.Sprint(s.Offline)
			if s.Expired > 0 {
				offline += fmt.Sprintf(" (%d expired)", s.Expired)
			}
		}
		svcs = append(svcs, serviceRow{s.Name, s.Online, s.Members, s.QuorumHosts, s.Policy, s.Versions, offline})
	}
	printServices(w, st.Root, st.Time, svcs)
	rows := make([]deployRow, 0, len(st.Services))
	for _, s := range st.Services {
		rows = append(rows, deployRow{name: s.Name, staged: s.Staged, ready: s.Ready, online: s.Online, next: s.Next,
			upgrading: s.Upgrading, paused: s.Paused, halted: s.Halted, rollReady: s.RollReady, rollWait: s.RollWait})
	}
	printDeployRows(w, st.Deploy, rows)
	printAttention(w, st)
	printRefusals(w, st.Refused)
	printSkipped(w, st.Skipped)
}

// printSkipped lists the bad znodes the status left out. Their paths come
// quoted, so a name cannot disguise itself (a right-to-left override).
func printSkipped(w io.Writer, sk []roll.Skipped) {
	for _, s := range sk {
		fmt.Fprintf(w, "skipped bad znode %s: %s; fix or delete it\n", s.Path, s.Why)
	}
}

// printAttention lists the hosts that need attention, a line per host and
// service, and counts those left out.
func printAttention(w io.Writer, st *roll.FleetSummary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	listed := false
	for _, s := range st.Services {
		for _, a := range s.Attention {
			if !listed {
				fmt.Fprintln(tw, "HOST\tSERVICE\tAGENT\tNEEDS ATTENTION")
				listed = true
			}
			agent := "down"
			if a.AgentUp {
				agent = "up " + a.Agent
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Host, s.Name, agent, roll.DescribeAttention(s, a))
		}
	}
	tw.Flush()
	if !listed {
		fmt.Fprintln(w, "no host needs attention")
	}
	for _, s := range st.Services {
		if more := roll.UnlistedText(s); more != "" {
			fmt.Fprintln(w, more)
		}
		if s.Counted {
			fmt.Fprintf(w, "%s: no fleet view yet (no agent keeps one): counted from every host\n", s.Name)
		}
	}
}

// quorumText renders a quorum in hosts and as seeded.
func quorumText(hosts int, q roll.Quorum) string {
	if q.Zero() {
		return "0 (may be fully down)"
	}
	return fmt.Sprintf("%d (%s)", hosts, q)
}

func printStatus(w io.Writer, st *roll.FleetStatus) {
	var svcs []serviceRow
	for _, s := range st.Services {
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
		svcs = append(svcs, serviceRow{s.Name, len(s.Online), len(s.Members), s.QuorumHosts, s.Policy, s.Versions, offline})
	}
	printServices(w, st.Root, st.Time, svcs)
	rows := make([]deployRow, 0, len(st.Services))
	for _, s := range st.Services {
		next := ""
		if len(s.Ready) > 0 {
			next = s.Ready[0]
		}
		rows = append(rows, deployRow{name: s.Name, staged: s.Staged, ready: len(s.Ready), online: len(s.Online), next: next,
			upgrading: s.Upgrading, paused: s.Paused, halted: s.Halted, rollReady: s.RollReady, rollWait: s.RollWait})
	}
	printDeployRows(w, st.Deploy, rows)
	printHosts(w, st)
	printSkipped(w, st.Skipped)
}

// printHosts prints a line per host: its agent and what it serves.
func printHosts(w io.Writer, st *roll.FleetStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
		if h.Bad != "" {
			svcs = append(svcs, fmt.Sprintf("(bad znode: %s)", h.Bad))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Name, agent, strings.Join(svcs, " "))
	}
	tw.Flush()
	printRefused(w, st)
}

// printRefused says, per host name, which machines came up with it and
// were refused it.
func printRefused(w io.Writer, st *roll.FleetStatus) {
	var rs []roll.Refusal
	for _, h := range st.Hosts {
		rs = append(rs, h.Refused...)
	}
	printRefusals(w, rs)
}

// printRefusals prints a line per machine refused its host name.
func printRefusals(w io.Writer, rs []roll.Refusal) {
	for _, r := range rs {
		state := "down"
		if r.HolderUp {
			state = "up"
		}
		fmt.Fprintf(w, "%s refused to %s since %s: the name is %s's (its agent is %s)",
			r.Host, machineName(r.Machine), r.Since.Format(time.RFC3339), machineName(r.Holder), state)
		if !r.HolderUp {
			fmt.Fprintf(w, "; if that machine is retired, start the agent with --replace on the new one, or run `dcroll forget %s`", r.Host)
		}
		fmt.Fprintln(w)
	}
}

// machineName names a machine by its id.
func machineName(id string) string {
	if id == "" {
		return "a machine without a machine id"
	}
	return "machine " + id
}

// describeFetch says how far a host's download is, and, for one not over
// BitTorrent, why.
func describeFetch(f roll.Fetch) string {
	if f.Via == roll.ViaHTTP {
		return fmt.Sprintf("fetching %s over HTTP, not BitTorrent: %s", f.Version, f.Why)
	}
	if f.Origin > 0 {
		return fmt.Sprintf("fetching %s: %s of %s, %s from %d peers and %s from the origin", f.Version, humanBytes(f.Bytes), humanBytes(f.Size),
			humanBytes(max(f.Bytes-f.Origin, 0)), f.Peers, humanBytes(f.Origin))
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

// deployRow is one service in the deploy section.
type deployRow struct {
	name, staged  string
	ready, online int
	next          string
	upgrading     []string
	paused        bool
	halted        *roll.Failure
	rollReady     bool
	rollWait      string
}

// printDeployRows prints the deploy section: the queue, then one line per
// service with something staged, paused, halted or upgrading.
func printDeployRows(w io.Writer, d roll.DeployStatus, all []deployRow) {
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
		if i == 0 && d.Progress != nil {
			fmt.Fprintf(w, "  %s\n", d.Progress)
		}
	}
	var rows []deployRow
	for _, s := range all {
		if s.staged != "" || s.paused || s.halted != nil || len(s.upgrading) > 0 {
			rows = append(rows, s)
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STAGED\tVERSION\tREADY\tUPGRADING\tROLL")
		for _, s := range rows {
			staged := s.staged
			if staged == "" {
				staged = "-"
			}
			upgrading := strings.Join(s.upgrading, ",")
			if len(s.upgrading) > 5 {
				upgrading = fmt.Sprintf("%s +%d", strings.Join(s.upgrading[:5], ","), len(s.upgrading)-5)
			}
			if upgrading == "" {
				upgrading = "-"
			}
			verdict := "ready to roll"
			if s.next != "" {
				verdict += " (next: " + s.next + ")"
			}
			if !s.rollReady {
				verdict = s.rollWait
				if s.paused && !strings.Contains(verdict, "paused") {
					verdict = "paused; " + verdict
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", s.name, staged, s.ready, s.online, upgrading, verdict)
		}
		tw.Flush()
	}
	for _, s := range rows {
		if s.halted != nil {
			fmt.Fprintf(w, "%s halted: %s; fix it, then `dcroll resume %s` retries, or `dcroll abort`\n", s.name, s.halted, s.name)
		}
	}
	fmt.Fprintln(w)
}
