// Command rollout measures whole rollouts against their ideal with real
// agents: N hosts on this machine, each a `dcroll agent` process whose one
// service is `dcroll _serve`, against a real ZooKeeper. A rollout's floor is
// set by the service: each turn is the service's start plus min_healthy,
// with max_parallel turns at once. For each case (a health interval and a
// min_healthy) it rolls a new version out to every host, from the deploy
// ordered to its step done, and reports the rollout against that ideal,
// and the overhead per turn: (rollout - ideal) ÷ turns. It also measures
// the service's own time from start to its first healthy answer, which a
// turn cannot avoid.
//
// Several dcroll binaries can be compared in one run (--exe), their
// rollouts interleaved so that they share the machine's state; without
// --exe it builds the dcroll of this tree. docs/BENCHMARKS.md records its
// results, and its test checks the counts of a small run.
//
//	go run ./bench/rollout [--hosts 8] [--runs 3] [--cases 250ms/1s,2s/10s] [--exe before=/tmp/dcroll-old,after=./dcroll]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dcroll/dcroll/internal/benchtb"
	"github.com/dcroll/dcroll/internal/zktest"
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
		fmt.Fprintln(stderr, "rollout:", err)
		return 1
	}
	return 0
}

// options are a benchmark run's parameters.
type options struct {
	hosts       int
	runs        int
	maxParallel int
	cases       []testCase
	exes        []binary
	starts      int           // service starts timed per binary
	timeout     time.Duration // the limit of each rollout
}

// testCase is one health policy: the hosts' health interval and the
// service's min_healthy.
type testCase struct {
	interval, minHealthy time.Duration
}

func (c testCase) String() string { return c.interval.String() + "/" + c.minHealthy.String() }

// binary is a dcroll binary to run the hosts with, and its name in the
// table.
type binary struct {
	label, path string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("rollout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.hosts, "hosts", 8, "hosts, each a dcroll agent process")
	fs.IntVar(&o.runs, "runs", 3, "rollouts per case and binary; the table shows the median")
	fs.IntVar(&o.maxParallel, "max-parallel", 1, "the service's max_parallel, in hosts")
	cases := fs.String("cases", "250ms/1s,250ms/3s,2s/3s,2s/10s", "comma-separated `interval/min_healthy` pairs")
	exes := fs.String("exe", "", "comma-separated `label=path` of dcroll binaries to compare (default: build this tree's)")
	fs.IntVar(&o.starts, "starts", 10, "service starts timed per binary, to its first healthy answer")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "the limit of each rollout")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.hosts < 2 || o.hosts > 64 {
		return o, fmt.Errorf("--hosts %d: want 2 to 64 (each is a process)", o.hosts)
	}
	if o.runs < 1 || o.maxParallel < 1 || o.starts < 1 {
		return o, errors.New("--runs, --max-parallel and --starts must be at least 1")
	}
	for _, f := range strings.Split(*cases, ",") {
		iv, mh, ok := strings.Cut(strings.TrimSpace(f), "/")
		interval, err1 := time.ParseDuration(iv)
		minHealthy, err2 := time.ParseDuration(mh)
		if !ok || err1 != nil || err2 != nil || interval <= 0 || minHealthy <= 0 {
			return o, fmt.Errorf("--cases: %q is not interval/min_healthy, such as 250ms/1s", f)
		}
		o.cases = append(o.cases, testCase{interval: interval, minHealthy: minHealthy})
	}
	if *exes != "" {
		for _, f := range strings.Split(*exes, ",") {
			label, path, ok := strings.Cut(strings.TrimSpace(f), "=")
			if !ok || label == "" || path == "" {
				return o, fmt.Errorf("--exe: %q is not label=path", f)
			}
			if _, err := os.Stat(path); err != nil {
				return o, fmt.Errorf("--exe %s: %w", label, err)
			}
			abs, err := filepath.Abs(path)
			if err != nil {
				return o, err
			}
			o.exes = append(o.exes, binary{label: label, path: abs})
		}
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	tb := benchtb.New("dcroll-rollout-")
	defer tb.Close()
	return benchtb.Catch(func() error {
		if len(o.exes) == 0 {
			path := filepath.Join(tb.TempDir(), "dcroll")
			fmt.Fprintln(stderr, "building dcroll")
			if out, err := exec.Command("go", "build", "-o", path, "github.com/dcroll/dcroll").CombinedOutput(); err != nil {
				return fmt.Errorf("go build: %v\n%s", err, out)
			}
			o.exes = []binary{{label: "this tree", path: path}}
		}
		res, err := bench(ctx, tb, o, stderr)
		if err != nil {
			return err
		}
		printTable(stdout, o, res)
		return nil
	})
}

// results are the rollouts of every case and binary, and the service's
// times to its first healthy answer, by binary.
type results struct {
	rollouts map[string]map[testCase][]rollout
	started  map[string][]time.Duration
}

// bench times the service's starts, then runs every case with every
// binary, o.runs times, interleaved.
func bench(ctx context.Context, tb *benchtb.TB, o options, log io.Writer) (results, error) {
	res := results{rollouts: map[string]map[testCase][]rollout{}, started: map[string][]time.Duration{}}
	for _, b := range o.exes {
		res.rollouts[b.label] = map[testCase][]rollout{}
		for range o.starts {
			d, err := timeServiceStart(ctx, tb.TempDir(), b.path)
			if err != nil {
				return res, fmt.Errorf("%s: %w", b.label, err)
			}
			res.started[b.label] = append(res.started[b.label], d)
		}
	}
	zkc := zktest.Standalone(tb)
	n := 0
	for i := range o.runs {
		for _, c := range o.cases {
			for _, b := range o.exes {
				n++
				fmt.Fprintf(log, "%s  run %d, %s, interval/min_healthy %s\n", time.Now().Format("15:04:05"), i+1, b.label, c)
				r, err := rolloutOnce(ctx, zkc, o, c, b.path, fmt.Sprintf("/bench%d", n))
				if err != nil {
					return res, fmt.Errorf("%s, %s: %w", b.label, c, err)
				}
				fmt.Fprintf(log, "%s    %s (ideal %s), %d turns, %d hosts on the new version\n",
					time.Now().Format("15:04:05"), r.wall.Round(time.Millisecond), r.ideal, r.turns, r.onNew)
				res.rollouts[b.label][c] = append(res.rollouts[b.label][c], r)
			}
		}
	}
	return res, nil
}

// printTable writes one row per case and binary: the median rollout of
// the runs (by wall time), its ideal, and the overhead per turn.
func printTable(w io.Writer, o options, res results) {
	fmt.Fprintf(w, "%d hosts, max_parallel %d, %d runs each (median shown; all runs in brackets)\n\n", o.hosts, o.maxParallel, o.runs)
	fmt.Fprintln(w, "| binary | interval | min_healthy | rollout | ideal | ratio | overhead per turn | service to first healthy answer |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, b := range o.exes {
		start := median(res.started[b.label])
		for _, c := range o.cases {
			rs := res.rollouts[b.label][c]
			walls := make([]time.Duration, len(rs))
			for i, r := range rs {
				walls[i] = r.wall
			}
			m := median(walls)
			ideal, turns := rs[0].ideal, rs[0].turns
			var all []string
			for _, d := range walls {
				all = append(all, fmt.Sprintf("%.2f", d.Seconds()))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.2f s [%s] | %s | %.3f | %d ms | %.1f ms |\n",
				b.label, c.interval, c.minHealthy, m.Seconds(), strings.Join(all, ", "), ideal,
				m.Seconds()/ideal.Seconds(), ((m - ideal) / time.Duration(turns)).Milliseconds(),
				float64(start.Microseconds())/1000)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
