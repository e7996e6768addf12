package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/classicio"
	"github.com/dcroll/dcroll/internal/memstat"
	"github.com/hashicorp/go-hclog"
)

// torrentResult is what the BitTorrent case measured. RSS figures are in
// KiB, -1 where the platform does not report them.
type torrentResult struct {
	variant                         string
	first, last                     time.Duration // from start to the first and last fetcher done
	seederSent                      int64         // data bytes the seeder uploaded
	fetcherRSSMax, fetcherRSSMedian int64         // peak
	fetcherRSSAfterMax              int64         // once every fetcher was done
	fetcherMappedMax                int64         // of that, pages mapped from the copy
	cachedKiB                       int64         // of the fetchers' copies in the page cache, at the end
	seederRSS                       int64
	verified                        int // fetchers' copies that match the artifact
	loadBefore, loadAfter           float64
	diskWrite                       float64 // bytes/s of a synced write just before
	// With a web seed: the body bytes and requests the origin served,
	// and the whole-body answers the fetchers counted.
	webSeed                    bool
	originSent, originRequests int64
	originWhole                int64
}

// message is one JSON value exchanged with a host process: the host writes
// to its stdout, the bench to the host's stdin. The exchange is: host sends
// Addr once listening; bench sends the start (Peers); a fetcher sends Done
// once it holds the verified file; bench closes stdin when every fetcher is
// done; host sends its counters and exits.
type message struct {
	Addr  string   `json:"addr,omitempty"`
	Peers []string `json:"peers,omitempty"`
	Done  bool     `json:"done,omitempty"`
	Err   string   `json:"err,omitempty"`
	Sent  int64    `json:"sent,omitempty"`
	// WholeBody is how many whole-body answers a fetcher's web seed got.
	WholeBody int64 `json:"wholeBody,omitempty"`
	Received  int64 `json:"received,omitempty"`
	MaxRSSKiB int64 `json:"maxRSSKiB,omitempty"`
	// RSSKiB is the resident set once every fetcher was done, MappedKiB
	// the part of it mapped from the host's copy of the artifact.
	RSSKiB    int64 `json:"rssKiB,omitempty"`
	MappedKiB int64 `json:"mappedKiB,omitempty"`
}

// runTorrent starts one seeder and cfg.hosts fetchers, each a copy of this
// program in its own process so that its rate caps and its RSS are its own,
// and times them from the start message to the last fetcher done.
func runTorrent(ctx context.Context, cfg config, v variant, dir, src string, a fetch.Artifact, stderr io.Writer) (torrentResult, error) {
	res := torrentResult{variant: v.name, webSeed: v.webSeed}
	var err error
	if res.diskWrite, err = diskWrite(dir); err != nil {
		return torrentResult{}, err
	}
	res.loadBefore, _ = memstat.LoadAverage()
	mi, _, err := fetch.BuildMetainfo(src, "artifact", cfg.piece)
	if err != nil {
		return torrentResult{}, err
	}
	miPath := filepath.Join(dir, "metainfo")
	if err := os.WriteFile(miPath, mi, 0o600); err != nil {
		return torrentResult{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return torrentResult{}, fmt.Errorf("find own executable to start hosts: %w", err)
	}
	tdir := filepath.Join(dir, "torrent")
	defer os.RemoveAll(tdir)

	common := []string{
		"--metainfo=" + miPath,
		fmt.Sprintf("--size=%d", a.Size),
		"--sha256=" + a.SHA256,
		fmt.Sprintf("--rate=%d", int64(cfg.rate)),
		"--log-level=" + cfg.logLevel,
	}
	if v.dropCache {
		common = append(common, "--drop-cache")
	}
	if v.grow {
		common = append(common, "--grow-pipeline")
	}
	if v.back {
		common = append(common, "--share-from-back")
	}
	if v.pieceSync {
		common = append(common, "--sync-each-piece")
	}
	var o *origin
	if v.webSeed {
		// The origin is a plain HTTP server in this process, capped like
		// the seeder; the seeder process starts but nobody is told of it.
		var url string
		var stop func()
		o, url, stop, err = serveOrigin(src, a.Size, cfg.rate)
		if err != nil {
			return torrentResult{}, err
		}
		defer stop()
		common = append(common, "--web-seed="+url)
	}
	stderr = &syncWriter{w: stderr}
	hosts := make([]*host, 0, cfg.hosts+1) // hosts[0] is the seeder
	defer func() {
		for _, h := range hosts {
			h.kill()
		}
	}()
	for i := range cfg.hosts + 1 {
		role, name := "fetcher", fmt.Sprintf("fetcher%d", i)
		if i == 0 {
			role, name = "seeder", "seeder"
		}
		args := append([]string{"--role=" + role, "--dir=" + filepath.Join(tdir, name)}, common...)
		if i == 0 {
			args = append(args, "--file="+src)
		} else {
			args = append(args, fmt.Sprintf("--rank=%d", i-1), fmt.Sprintf("--fetchers=%d", cfg.hosts))
		}
		h, err := startHost(ctx, exe, name, args, v.fileIO, stderr)
		if err != nil {
			return torrentResult{}, err
		}
		hosts = append(hosts, h)
	}
	addrs := make([]string, len(hosts))
	for i, h := range hosts {
		var m message
		if err := h.recv(&m); err != nil {
			return torrentResult{}, err
		}
		addrs[i] = m.Addr
	}

	// The start messages go out back to back, so every fetcher starts
	// within a millisecond or so of the others.
	start := time.Now()
	for i, h := range hosts {
		var m message
		if i > 0 {
			// Every fetcher knows every other host; the seeder waits to be
			// dialled. With a web seed, the fetchers know only each other.
			m.Peers = slices.Delete(slices.Clone(addrs), i, i+1)
			if v.webSeed {
				m.Peers = slices.Delete(m.Peers, 0, 1)
			}
		}
		if err := h.send(m); err != nil {
			return torrentResult{}, err
		}
	}
	type done struct {
		name string
		at   time.Time
		err  error
	}
	dones := make(chan done, cfg.hosts)
	for _, h := range hosts[1:] {
		go func() {
			var m message
			err := h.recv(&m)
			if err == nil && m.Err != "" {
				err = fmt.Errorf("%s: %s", h.name, m.Err)
			}
			dones <- done{h.name, time.Now(), err}
		}()
	}
	for i := range cfg.hosts {
		select {
		case d := <-dones:
			if d.err != nil {
				return torrentResult{}, d.err
			}
			took := d.at.Sub(start)
			if i == 0 {
				res.first = took
			}
			res.last = took
		case <-ctx.Done():
			return torrentResult{}, context.Cause(ctx)
		}
	}

	res.loadAfter, _ = memstat.LoadAverage()

	var fetcherRSS []int64
	res.fetcherRSSAfterMax, res.fetcherMappedMax = -1, -1
	for i, h := range hosts {
		m, err := h.stop()
		if err != nil {
			return torrentResult{}, err
		}
		if i == 0 {
			res.seederSent, res.seederRSS = m.Sent, rssOrUnknown(m.MaxRSSKiB)
			continue
		}
		fetcherRSS = append(fetcherRSS, rssOrUnknown(m.MaxRSSKiB))
		res.originWhole += m.WholeBody
		res.fetcherRSSAfterMax = max(res.fetcherRSSAfterMax, rssOrUnknown(m.RSSKiB))
		res.fetcherMappedMax = max(res.fetcherMappedMax, m.MappedKiB)
		if n, err := memstat.Cached(filepath.Join(tdir, h.name, "artifact")); err == nil {
			res.cachedKiB += n >> 10
		}
	}
	if o != nil {
		res.originSent, res.originRequests = o.sent.Load(), o.requests.Load()
	}
	slices.Sort(fetcherRSS)
	res.fetcherRSSMax = fetcherRSS[len(fetcherRSS)-1]
	res.fetcherRSSMedian = median(fetcherRSS)

	// Fetch verified each copy before reporting done; check again, outside
	// the timing, without trusting the library under test.
	for _, h := range hosts[1:] {
		if err := fetch.Verify(filepath.Join(tdir, h.name, "artifact"), a); err != nil {
			return torrentResult{}, err
		}
		res.verified++
	}
	return res, nil
}

func rssOrUnknown(kib int64) int64 {
	if kib <= 0 {
		return -1
	}
	return kib
}

// median of sorted, non-empty xs.
func median(xs []int64) int64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// host is one BitTorrent host process.
type host struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *json.Encoder
	dec    *json.Decoder
	waited bool
}

func startHost(ctx context.Context, exe, name string, args []string, fileIO string, stderr io.Writer) (*host, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), classicio.Env+"="+fileIO)
	cmd.Stderr = stderr
	cmd.WaitDelay = 10 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &host{name: name, cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), dec: json.NewDecoder(stdout)}, nil
}

func (h *host) send(m message) error {
	if err := h.enc.Encode(m); err != nil {
		return fmt.Errorf("%s: send: %w", h.name, err)
	}
	return nil
}

func (h *host) recv(m *message) error {
	if err := h.dec.Decode(m); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("exited early; see its errors above")
		}
		return fmt.Errorf("%s: %w", h.name, err)
	}
	return nil
}

// stop closes the host's stdin, which tells it to stop, and returns its
// final counters once it has exited.
func (h *host) stop() (message, error) {
	h.stdin.Close()
	var m message
	if err := h.recv(&m); err != nil {
		return message{}, err
	}
	h.waited = true
	if err := h.cmd.Wait(); err != nil {
		return message{}, fmt.Errorf("%s: %w", h.name, err)
	}
	return m, nil
}

// kill ends a host that has not been stopped.
func (h *host) kill() {
	if h.waited {
		return
	}
	h.waited = true
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// syncWriter serialises the writes of several host processes' stderr.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// isChild reports whether args ask for one BitTorrent host (the hidden
// --role flag, always first) rather than the benchmark.
func isChild(args []string) bool {
	return len(args) > 0 && strings.HasPrefix(args[0], "--role=")
}

// runHost is one BitTorrent host: a seeder of --file, or a fetcher into
// --dir/artifact, speaking the message exchange on stdin and stdout.
func runHost(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("transfer host", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "seeder or fetcher")
	dir := fs.String("dir", "", "this host's directory")
	miPath := fs.String("metainfo", "", "metainfo file")
	file := fs.String("file", "", "the seeder's verified artifact")
	size := fs.Int64("size", 0, "artifact size")
	sum := fs.String("sha256", "", "artifact sha256")
	rateCap := fs.Int64("rate", 0, "upload (and, for a fetcher, download) cap in bytes/s")
	logLevel := fs.String("log-level", "error", "log level")
	rank := fs.Int("rank", 0, "a fetcher's index among the fetchers, from 0")
	fetchers := fs.Int("fetchers", 0, "how many fetchers start at once")
	dropCache := fs.Bool("drop-cache", false, "drop a fetched copy from the page cache once verified")
	grow := fs.Bool("grow-pipeline", false, "let the library grow the request pipeline")
	back := fs.Bool("share-from-back", false, "take the other hosts' shares from the back")
	pieceSync := fs.Bool("sync-each-piece", false, "fsync after every verified piece")
	webSeed := fs.String("web-seed", "", "a fetcher's web seed URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role != "seeder" && *role != "fetcher" {
		return fmt.Errorf("--role %q: want seeder or fetcher", *role)
	}
	name := filepath.Base(*dir)
	mi, err := os.ReadFile(*miPath)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m, err := fetch.ParseMetainfo(mi, fetch.MaxMetainfoBytes, "")
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ih := m.HashInfoBytes().HexString()

	cfg := fetch.SwarmConfig{
		DataDir:       filepath.Join(*dir, "data"),
		Listen:        "127.0.0.1:0",
		UploadRate:    *rateCap,
		DropCache:     *dropCache,
		GrowPipeline:  *grow,
		ShareFromBack: *back,
		SyncEachPiece: *pieceSync,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   name,
			Level:  hclog.LevelFromString(*logLevel),
			Output: stderr,
		}),
	}
	if *role == "fetcher" {
		cfg.DownloadRate = *rateCap
	}
	s, err := fetch.NewSwarm(cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer s.Close()
	if *role == "seeder" {
		if err := s.Seed(mi, *file); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	enc, dec := json.NewEncoder(stdout), json.NewDecoder(stdin)
	if err := enc.Encode(message{Addr: s.Addr()}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var start message
	if err := dec.Decode(&start); err != nil {
		return fmt.Errorf("%s: wait for start: %w", name, err)
	}
	// The bench closes stdin once every fetcher is done, or by dying.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var m message
		for dec.Decode(&m) == nil {
		}
		cancel()
	}()

	if *role == "fetcher" {
		a := fetch.Artifact{Service: "bench", Version: "1", Size: *size, SHA256: *sum}
		if *webSeed != "" {
			a.URLs = []string{*webSeed}
		}
		share := fetch.Share{Rank: *rank, Hosts: *fetchers}
		err := s.Fetch(ctx, a, mi, start.Peers, filepath.Join(*dir, "artifact"), share)
		done := message{Done: true}
		if err != nil {
			done.Err = err.Error()
		}
		if err := enc.Encode(done); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// Keep seeding for the others until told to stop.
	<-ctx.Done()
	read, written, _ := s.Stats(ih)
	rss, _ := memstat.RSS(memstat.Self)
	mapped, _ := memstat.MappedResident(memstat.Self, filepath.Join(*dir, "artifact"), filepath.Join(*dir, "data", ih))
	if err := s.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	whole := s.FromOrigin(ih).WholeBody
	return enc.Encode(message{Sent: written, Received: read, WholeBody: whole, MaxRSSKiB: maxRSSKiB(), RSSKiB: rss >> 10, MappedKiB: mapped >> 10})
}

// diskWrite is the write throughput of the disk under dir, in bytes/s: 64
// MiB written and synced, as a fetcher's copy is before it is installed.
func diskWrite(dir string) (float64, error) {
	const n = 64 << 20
	f, err := os.CreateTemp(dir, "disk-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	for range n / len(buf) {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return n / time.Since(start).Seconds(), nil
}
