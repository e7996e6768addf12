package demo

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// liveEvents is how many of the latest events the live view shows.
const liveEvents = 10

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// hostLine renders a host's versions: "db=2 api=1 web=1".
func hostLine(versions map[string]string) string {
	var parts []string
	for _, svc := range services {
		v := versions[svc]
		if v == "" {
			v = "-"
		}
		parts = append(parts, svc+"="+v)
	}
	return strings.Join(parts, " ")
}

// show draws the fleet: the live view on a terminal, else a progress line
// whenever the fleet changed.
func (d *run) show(st *snapshot) {
	if d.o.Live {
		fmt.Fprint(d.o.Out, clearScreen+d.screen(st))
		return
	}
	line := d.line(st)
	if line != d.lastLine {
		d.lastLine = line
		fmt.Fprintf(d.o.Out, "%6.1fs  %s\n", time.Since(d.start).Seconds(), line)
	}
}

// line is the fleet in one line: per service the staged version, the
// hosts on each version, offline, upgrading and ready hosts; then the
// deploy queue.
func (d *run) line(st *snapshot) string {
	var parts []string
	for _, ss := range inOrder(st) {
		var b strings.Builder
		b.WriteString(ss.Name)
		if ss.Staged != "" {
			fmt.Fprintf(&b, " ->%s", ss.Staged)
		}
		b.WriteString(":")
		for _, v := range slices.Sorted(maps.Keys(ss.Versions)) {
			fmt.Fprintf(&b, " %d on %s", ss.Versions[v], v)
		}
		if ss.Online == 0 {
			b.WriteString(" none online")
		}
		if ss.Offline > 0 {
			fmt.Fprintf(&b, ", %d offline", ss.Offline)
		}
		if len(ss.Upgrading) > 0 {
			fmt.Fprintf(&b, ", upgrading %s", strings.Join(ss.Upgrading, " "))
		}
		if ss.Ready > 0 {
			fmt.Fprintf(&b, ", %d ready", ss.Ready)
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, " | ") + " | queue: " + queueLine(st)
}

// queueLine renders the deploy queue, head first.
func queueLine(st *snapshot) string {
	if len(st.sum.Deploy.Steps) == 0 {
		return "empty"
	}
	var steps []string
	for _, s := range st.sum.Deploy.Steps {
		steps = append(steps, strings.Join(s.Services, ","))
	}
	return strings.Join(steps, " -> ")
}

// screen is the live view.
func (d *run) screen(st *snapshot) string {
	var b strings.Builder
	where := d.root
	if len(d.servers) > 0 {
		where = strings.Join(d.servers, ",") + where
	}
	fmt.Fprintf(&b, "dcroll demo: %d hosts, ZooKeeper %s   %.1fs   (Ctrl-C stops and cleans up)\n",
		len(d.hosts), where, time.Since(d.start).Seconds())
	fmt.Fprintf(&b, "deploy queue: %s\n\n", queueLine(st))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTAGED\tON "+fromVersion+"\tON "+toVersion+"\tOFFLINE\tQUORUM\tPARALLEL\tUPGRADING\tREADY\tWAITING FOR")
	for _, ss := range inOrder(st) {
		wait := ss.RollWait
		if ss.RollReady {
			wait = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d of %d\t%d\t%s\t%d\t%s\n",
			ss.Name, dash(ss.Staged), ss.Versions[fromVersion], ss.Versions[toVersion], ss.Offline,
			ss.QuorumHosts, ss.Members, ss.Policy.MaxParallel, dash(strings.Join(ss.Upgrading, " ")), ss.Ready, wait)
	}
	tw.Flush()

	b.WriteString("\n")
	upgrading := map[string]map[string]bool{}
	// An agent is up when its host serves, or when the summary, which
	// reads the agent node of every offline member it lists, says so.
	agentUp := map[string]bool{}
	for h := range st.on {
		agentUp[h] = true
	}
	for _, ss := range st.sum.Services {
		for _, h := range ss.Upgrading {
			if upgrading[h] == nil {
				upgrading[h] = map[string]bool{}
			}
			upgrading[h][ss.Name] = true
		}
		for _, a := range ss.Attention {
			agentUp[a.Host] = agentUp[a.Host] || a.AgentUp
		}
	}
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tAGENT\t"+strings.Join(services, "\t"))
	for _, h := range d.hosts {
		agent := "up"
		switch {
		case !h.running():
			agent = "KILLED"
		case !agentUp[h.name]:
			agent = "starting"
		}
		row := []string{h.name, agent}
		for _, svc := range services {
			v := dash(st.on[h.name][svc])
			if upgrading[h.name][svc] {
				v = "switching"
			}
			row = append(row, v)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()

	b.WriteString("\n")
	events := d.events[max(len(d.events)-liveEvents, 0):]
	for _, e := range events {
		b.WriteString(e + "\n")
	}
	return b.String()
}

// inOrder returns the demo's services in dependency order.
func inOrder(st *snapshot) []roll.ServiceSummary {
	var out []roll.ServiceSummary
	for _, name := range services {
		for _, ss := range st.sum.Services {
			if ss.Name == name {
				out = append(out, ss)
			}
		}
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
