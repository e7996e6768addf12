// Command transfer measures how long one release artifact takes to reach N
// hosts whose upload and download are each capped, over BitTorrent (one
// fetch.Swarm per host, each in its own OS process) and over HTTP from a
// single origin under the same caps, and compares both with the lower bound
// of Kumar and Ross (2006). Everything runs on 127.0.0.1 in a temp dir that
// is removed afterwards. It is a benchmark, not a test: docs/BENCHMARKS.md
// records its results.
//
//	go run ./bench/transfer [--size 256MiB] [--hosts 8] [--rate 100] [--piece auto] [--variants classic,mmap]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dcroll/dcroll/fetch"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// cli runs the benchmark, or one BitTorrent host when the program has
// re-executed itself with the hidden --role flag, and returns the exit code.
func cli(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if isChild(args) {
		err = runHost(ctx, args, stdin, stdout, stderr)
	} else {
		err = run(ctx, args, stdout, stderr)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "transfer:", err)
		return 1
	}
	return 0
}

// config is the benchmark's parameters.
type config struct {
	size     int64   // artifact bytes, F
	hosts    int     // fetching hosts, N
	rate     float64 // bytes/s each host may send and receive
	piece    int64   // torrent piece length
	timeout  time.Duration
	tmp      string // parent of the run's temp dir; "" is the system default
	logLevel string // of the BitTorrent hosts' logs on stderr
	noHTTP   bool   // skip the HTTP case, to tune the BitTorrent one quickly
	variants []variant
}

// variant is one way of running the BitTorrent hosts; the BitTorrent case
// runs once for each, one after the other, in the same run.
type variant struct {
	name      string
	fileIO    string // the storage's file I/O: classic (dcroll's) or mmap
	dropCache bool   // fetch.SwarmConfig.DropCache
	grow      bool   // fetch.SwarmConfig.GrowPipeline
	back      bool   // fetch.SwarmConfig.ShareFromBack
	pieceSync bool   // fetch.SwarmConfig.SyncEachPiece
	// webSeed: no seeder; a plain HTTP server (capped like the seeder,
	// answering ranges) is the fetchers' web seed, as after a
	// `dcroll stage --detach`.
	webSeed bool
}

// parseVariants reads a comma-separated list of classic or mmap, each
// optionally followed by +dontneed, +grow, +back, +piecesync or +webseed.
func parseVariants(s string) ([]variant, error) {
	var vs []variant
	for name := range strings.SplitSeq(s, ",") {
		parts := strings.Split(name, "+")
		v := variant{name: name, fileIO: parts[0]}
		if v.fileIO != "classic" && v.fileIO != "mmap" {
			return nil, fmt.Errorf("--variants: %q: want classic or mmap, optionally +dontneed, +grow, +back, +piecesync or +webseed", name)
		}
		for _, opt := range parts[1:] {
			switch opt {
			case "dontneed":
				v.dropCache = true
			case "grow":
				v.grow = true
			case "back":
				v.back = true
			case "piecesync":
				v.pieceSync = true
			case "webseed":
				v.webSeed = true
			default:
				return nil, fmt.Errorf("--variants: %q: unknown option %q; want +dontneed, +grow, +back, +piecesync or +webseed", name, opt)
			}
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("transfer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.String("size", "256MiB", "artifact size: bytes, or a number with KiB, MiB or GiB")
	hosts := fs.Int("hosts", 8, "number of hosts that fetch the artifact")
	mbit := fs.Float64("rate", 100, "upload and download cap of every host, in Mbit/s (1e6 bits)")
	piece := fs.String("piece", "auto", "torrent piece length, a power of two from 16KiB to 256MiB; auto: what dcroll stage uses (fetch.PieceLength)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up after this long")
	tmp := fs.String("tmp", "", "directory for the run's temp dir (default: the system temp dir)")
	logLevel := fs.String("log-level", "error", "log level of the BitTorrent hosts, on stderr")
	noHTTP := fs.Bool("no-http", false, "skip the HTTP case (it takes about hosts × size / rate)")
	variants := fs.String("variants", "classic", "BitTorrent runs, one after the other: classic (pread/pwrite, what dcroll uses) or mmap file I/O, each optionally +dontneed (drop the copy from the page cache once verified) +grow (the library's growing request pipeline) +back (other hosts' shares taken from the back) +piecesync (fsync after every verified piece, the library's default) and +webseed (no seeder: a plain HTTP server capped like it is the fetchers' web seed, as after stage --detach)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/transfer [flags]\n\n"+
			"Times delivering one artifact to --hosts hosts over BitTorrent and over HTTP\n"+
			"from one origin, every host capped at --rate each way, on loopback.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := config{hosts: *hosts, rate: *mbit * 1e6 / 8, timeout: *timeout, tmp: *tmp, logLevel: *logLevel, noHTTP: *noHTTP}
	var err error
	if cfg.variants, err = parseVariants(*variants); err != nil {
		return config{}, err
	}
	if cfg.size, err = parseBytes(*size); err != nil || cfg.size <= 0 || cfg.size > fetch.MaxSize {
		return config{}, fmt.Errorf("--size %q: want 1 byte to 64GiB, like 256MiB", *size)
	}
	if *piece == "auto" {
		cfg.piece = fetch.PieceLength(cfg.size)
	} else if cfg.piece, err = parseBytes(*piece); err != nil {
		return config{}, fmt.Errorf("--piece %q: want a size like 4MiB", *piece)
	}
	switch {
	case cfg.hosts < 1:
		return config{}, fmt.Errorf("--hosts %d: want at least 1", cfg.hosts)
	case cfg.rate < 1e4:
		return config{}, fmt.Errorf("--rate %g: want at least 0.08 Mbit/s", *mbit)
	case cfg.timeout <= 0:
		return config{}, fmt.Errorf("--timeout %s: want a positive duration", cfg.timeout)
	}
	return cfg, nil
}

// parseBytes reads a byte count: an integer, optionally followed by KiB,
// MiB or GiB.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// run prepares the artifact, runs both cases one after the other and prints
// the comparison.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := compare(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	report(stdout, cfg, res)
	return nil
}

// results is what one run measured.
type results struct {
	bound   time.Duration
	torrent []torrentResult // one per variant, in order
	http    httpResult
}

func compare(ctx context.Context, cfg config, stderr io.Writer) (results, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("--timeout %s reached", cfg.timeout))
	defer cancel()

	dir, err := os.MkdirTemp(cfg.tmp, "dcroll-transfer-")
	if err != nil {
		return results{}, err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(stderr, "transfer: writing %s of random data in %s\n", mib(cfg.size), dir)
	a, src, err := writeArtifact(dir, cfg.size)
	if err != nil {
		return results{}, err
	}
	res := results{bound: lowerBound(cfg)}
	for _, v := range cfg.variants {
		source := "1 seeder"
		if v.webSeed {
			source = "an HTTP origin as web seed (no seeder)"
		}
		fmt.Fprintf(stderr, "transfer: BitTorrent (%s), %s and %d fetchers\n", v.name, source, cfg.hosts)
		r, err := runTorrent(ctx, cfg, v, dir, src, a, stderr)
		if err != nil {
			return results{}, fmt.Errorf("bittorrent (%s): %w", v.name, err)
		}
		res.torrent = append(res.torrent, r)
	}
	if cfg.noHTTP {
		return res, nil
	}
	fmt.Fprintf(stderr, "transfer: HTTP, 1 origin and %d clients\n", cfg.hosts)
	if res.http, err = runHTTP(ctx, cfg, dir, src, a); err != nil {
		return results{}, fmt.Errorf("http: %w", err)
	}
	return res, nil
}

// lowerBound is the least time in which a seeder uploading at u_s can bring a
// file of F bytes to N peers uploading at u_i and downloading at most at
// d_min (Kumar and Ross, 2006): max(F/u_s, F/d_min, N·F/(u_s + Σu_i)). Here
// every cap is cfg.rate.
func lowerBound(cfg config) time.Duration {
	f, n := float64(cfg.size), float64(cfg.hosts)
	us, dmin, sumU := cfg.rate, cfg.rate, n*cfg.rate
	t := max(f/us, f/dmin, n*f/(us+sumU))
	return time.Duration(t * float64(time.Second))
}

func report(w io.Writer, cfg config, r results) {
	f := float64(cfg.size)
	b := r.bound.Seconds()
	fmt.Fprintf(w, "%s to %d hosts, %g Mbit/s (%.4g MB/s) up and down per host, piece length %s\n\n",
		mib(cfg.size), cfg.hosts, cfg.rate*8/1e6, cfg.rate/1e6, mib(cfg.piece))
	fmt.Fprintln(w, "| case | last host done | first host done | ratio | source sent | load before / after | disk write |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	fmt.Fprintf(w, "| lower bound (Kumar & Ross) | %s | | | | | |\n", secs(r.bound))
	for _, t := range r.torrent {
		if t.webSeed {
			fmt.Fprintf(w, "| BitTorrent (%s), HTTP origin as web seed + %d fetchers | %s | %s | %.2f × bound | origin %s (%.2f F) in %d requests, %d whole-body | %.2f / %.2f | %.0f MB/s |\n",
				t.variant, cfg.hosts, secs(t.last), secs(t.first), t.last.Seconds()/b, mib(t.originSent), float64(t.originSent)/f,
				t.originRequests, t.originWhole, t.loadBefore, t.loadAfter, t.diskWrite/1e6)
			continue
		}
		fmt.Fprintf(w, "| BitTorrent (%s), 1 seeder + %d fetchers | %s | %s | %.2f × bound (target ≤ 1.25) | seeder %s (%.2f F) | %.2f / %.2f | %.0f MB/s |\n",
			t.variant, cfg.hosts, secs(t.last), secs(t.first), t.last.Seconds()/b, mib(t.seederSent), float64(t.seederSent)/f,
			t.loadBefore, t.loadAfter, t.diskWrite/1e6)
	}
	if !cfg.noHTTP && len(r.torrent) > 0 {
		tt := r.torrent[0].last.Seconds()
		fmt.Fprintf(w, "| HTTP, 1 origin + %d clients | %s | %s | %.2f × BitTorrent (%s) (target ≥ %g) | origin %s (%.2f F) | | |\n",
			cfg.hosts, secs(r.http.last), secs(r.http.first), r.http.last.Seconds()/tt, r.torrent[0].variant, float64(cfg.hosts)/2, mib(r.http.originSent), float64(r.http.originSent)/f)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| BitTorrent | fetcher peak RSS max / median | fetcher RSS once all done, max | resident from mappings of the copy, max | copies in page cache, total | seeder peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, t := range r.torrent {
		fmt.Fprintf(w, "| %s | %s / %s | %s | %s | %s | %s |\n", t.variant,
			kib(t.fetcherRSSMax), kib(t.fetcherRSSMedian), kib(t.fetcherRSSAfterMax), kib(t.fetcherMappedMax), kib(t.cachedKiB), kib(t.seederRSS))
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "verified copies:")
	for _, t := range r.torrent {
		fmt.Fprintf(w, " BitTorrent (%s) %d/%d,", t.variant, t.verified, cfg.hosts)
	}
	if !cfg.noHTTP {
		fmt.Fprintf(w, " HTTP %d/%d", r.http.verified, cfg.hosts)
	}
	fmt.Fprintln(w)
}

func mib(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n < 1<<20 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// secs formats d in seconds with three significant digits or more.
func secs(d time.Duration) string {
	if d >= 100*time.Second {
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return fmt.Sprintf("%.3g s", d.Seconds())
}

func kib(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/1024)
}
