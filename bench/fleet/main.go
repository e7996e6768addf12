// Command fleet simulates a data center: N hosts, each a real dcroll agent
// (agent.New and Run) with its own ZooKeeper session and state dir, whose
// one service is played in-process (it restarts at once and can be made
// unhealthy), against a real 3-server ZooKeeper ensemble on this machine.
// It rolls a new version out to every host and reports what that cost,
// counted by the servers themselves: requests and watch notifications per
// host, the peak watch count, the leader's CPU and memory, the turn
// hand-over, the rollout's wall time against its ideal, what `dcroll
// status` costs, and the memory of one simulated host. It is a benchmark;
// docs/BENCHMARKS.md records its results, and its test checks that the
// requests per host do not grow with N.
//
//	go run ./bench/fleet --hosts 100,1000 [--max-parallel 5] [--quorum 90]
//
// With --observe the rollout is watched as operators would: the status
// page's reader (`dcroll status --serve`) reads the summary at each change,
// at most once a second, and every host's metrics are scraped every 5 s;
// the table then says what the page's readings cost.
//
// With --restart-ensemble it rolls nothing out: once every host is online
// and idle it restarts the voting servers one by one, the leader first, and
// counts the sessions that expired, the hosts that left /current and when
// each session reconnected (restart.go). --observers K points the hosts at
// K observers instead of the voters.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dcroll/dcroll/internal/benchtb"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

func cli(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "fleet:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("hosts", "100", "comma-separated fleet sizes, each simulated in turn")
	runs := fs.Int("runs", 1, "runs per size; the table shows the median run by requests per host")
	jsonOut := fs.String("json", "", "also write the median runs' counts to `file`, as JSON (the test reads it)")
	var o options
	fs.IntVar(&o.maxParallelPct, "max-parallel", 5, "max_parallel, in `percent` of the hosts")
	fs.IntVar(&o.quorumPct, "quorum", 90, "quorum, in `percent` of the members")
	fs.DurationVar(&o.health, "health", 250*time.Millisecond, "health-check interval of every host")
	fs.DurationVar(&o.minHealthy, "min-healthy", 2*time.Second, "the service's min_healthy")
	fs.DurationVar(&o.sessionTimeout, "session-timeout", 30*time.Second, "the agents' ZooKeeper session timeout")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "the idle window measured before each rollout")
	fs.IntVar(&o.batch, "batch", 200, "hosts started at a time")
	fs.StringVar(&o.heap, "heap", "2g", "each ZooKeeper server's maximum heap (java -Xmx)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "the limit of each rollout")
	fs.IntVar(&o.observers, "observers", 0, "start `K` observers next to the 3 voting servers and point the hosts at them alone")
	fs.BoolVar(&o.observe, "observe", false, "during the rollout, run the status page's reader (--serve) and scrape every host's metrics every 5 s")
	fs.BoolVar(&o.restart, "restart-ensemble", false, "instead of a rollout, restart each voting server in turn, the leader first, once the hosts are online and idle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sizes []int
	for _, f := range strings.Split(*hosts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return fmt.Errorf("--hosts: %q is not a fleet size of at least 2", f)
		}
		sizes = append(sizes, n)
	}
	if o.observers < 0 {
		return fmt.Errorf("--observers: %d is negative", o.observers)
	}
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(stderr, "fleet: cannot raise the open-file limit:", err)
	}
	if o.restart {
		cs, err := runRestart(ctx, sizes, *runs, o, stdout, stderr)
		if err == nil && *jsonOut != "" {
			err = writeJSON(*jsonOut, cs)
		}
		return err
	}
	var results []result
	for _, n := range sizes {
		var rs []result
		for i := 0; i < *runs; i++ {
			o.hosts = n
			r, err := simulateOnce(ctx, o, stderr)
			if err != nil {
				return fmt.Errorf("%d hosts: %w", n, err)
			}
			rs = append(rs, r)
		}
		slices.SortFunc(rs, func(a, b result) int {
			switch {
			case a.requestsPerHost() < b.requestsPerHost():
				return -1
			case a.requestsPerHost() > b.requestsPerHost():
				return 1
			}
			return 0
		})
		results = append(results, rs[len(rs)/2])
	}
	printTable(stdout, results)
	if *jsonOut != "" {
		return writeCounts(*jsonOut, results)
	}
	return nil
}

// counts are what a run's checks need: the counts and the invariants,
// never a time.
type counts struct {
	Hosts           int
	RequestsPerHost float64 // pings out
	Requests        int64
	Notifications   int64
	OnNew           int // hosts on the new version at the end
	MaxInTurn       int // most turns held at once
	MaxParallel     int
	MinServing      int  // fewest hosts serving at once
	Need            int  // the quorum, in hosts
	Election        bool // during the rollout: Requests and Notifications are not known
}

func writeCounts(file string, rs []result) error {
	var cs []counts
	for _, r := range rs {
		cs = append(cs, counts{
			Hosts: r.hosts, RequestsPerHost: r.requestsPerHost(), Requests: r.requests, Notifications: r.notifications,
			OnNew: r.onNew, MaxInTurn: r.maxInTurn, MaxParallel: r.maxParallel, MinServing: r.minServing, Need: r.need,
			Election: r.election,
		})
	}
	return writeJSON(file, cs)
}

func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(b, '\n'), 0o644)
}

// simulateOnce runs one simulation with its own temp dir and ensemble,
// both gone when it returns.
func simulateOnce(ctx context.Context, o options, log io.Writer) (r result, err error) {
	tb := benchtb.New("dcroll-fleet-")
	defer tb.Close()
	err = benchtb.Catch(func() (err error) {
		r, err = simulate(ctx, tb, o, log)
		return err
	})
	return r, err
}

// printTable writes the results side by side, one column per fleet size.
func printTable(w io.Writer, rs []result) {
	row := func(name string, f func(r result) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, r := range rs {
			fmt.Fprintf(w, " %s |", f(r))
		}
		fmt.Fprintln(w)
	}
	row("hosts", func(r result) string { return strconv.Itoa(r.hosts) })
	fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---|", len(rs)))
	row("max_parallel / quorum (hosts)", func(r result) string { return fmt.Sprintf("%d / %d", r.maxParallel, r.need) })
	counted := func(r result, f string, v float64) string {
		if r.election {
			return "n/a (an election)"
		}
		return fmt.Sprintf(f, v)
	}
	row("requests per rollout ÷ N (pings out)", func(r result) string { return counted(r, "%.1f", r.requestsPerHost()) })
	row("requests per rollout ÷ N (all)", func(r result) string { return counted(r, "%.1f", float64(r.requests)/float64(r.hosts)) })
	row("idle requests per second ÷ N", func(r result) string { return fmt.Sprintf("%.3f", r.idleRequests/float64(r.hosts)) })
	row("watch notifications ÷ N", func(r result) string { return counted(r, "%.1f", float64(r.notifications)/float64(r.hosts)) })
	row("peak watch count", func(r result) string { return strconv.Itoa(r.peakWatches) })
	row("leader CPU seconds (rollout)", func(r result) string { return fmt.Sprintf("%.1f", r.leaderCPU.Seconds()) })
	row("leader RSS", func(r result) string { return fmt.Sprintf("%d MiB", r.leaderRSS>>20) })
	row("hand-over median / p99", func(r result) string {
		return fmt.Sprintf("%s / %s", ms(r.handover(0.5)), ms(r.handover(0.99)))
	})
	row("rollout wall ÷ ideal", func(r result) string {
		return fmt.Sprintf("%.2f (%s ÷ %s)", r.wall.Seconds()/r.ideal.Seconds(), r.wall.Round(100*time.Millisecond), r.ideal)
	})
	row("most in turn / fewest serving", func(r result) string { return fmt.Sprintf("%d / %d", r.maxInTurn, r.minServing) })
	row("hosts on the new version", func(r result) string { return strconv.Itoa(r.onNew) })
	row("`status`: time, bytes, lines", func(r result) string {
		return fmt.Sprintf("%s, %d, %d", ms(r.statusTime), r.statusBytes, r.statusLines)
	})
	if slices.ContainsFunc(rs, func(r result) bool { return r.pageReads > 0 }) {
		row("status page: readings, requests, requests per reading", func(r result) string {
			return fmt.Sprintf("%d, %d, %.1f", r.pageReads, r.pageRequests, float64(r.pageRequests)/float64(max(r.pageReads, 1)))
		})
		row("metrics: scrapes, bytes per scrape", func(r result) string {
			return fmt.Sprintf("%d, %d", r.scrapes, r.scrapeBytes/max(r.scrapes, 1))
		})
	}
	row("memory per simulated host: Go heap, RSS", func(r result) string {
		return fmt.Sprintf("%d KiB, %d KiB", r.heapPerHost>>10, r.rssPerHost>>10)
	})
	row("all hosts online after", func(r result) string { return r.connect.Round(100 * time.Millisecond).String() })
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// simulated host holds a connection.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
