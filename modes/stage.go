package modes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/trust"
)

func init() { register("stage", func() mode { return &stageMode{} }) }

// stagePoll is how often stage reads the fleet to show progress.
const stagePoll = 500 * time.Millisecond

type stageMode struct {
	replace          bool
	listen           string
	advertise        string
	urls             []string
	timeout          time.Duration
	detach           bool
	torrentListen    string
	torrentAdvertise string
	uploadRate       int64
	signKey          string
	signFor          time.Duration
	wait             bool
}

func (*stageMode) Synopsis() string {
	return "publish a release of a service and serve it until the hosts have it"
}

func (m *stageMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("stage", pflag.ContinueOnError)
	fs.BoolVar(&m.replace, "replace", false, "replace a staged release that has not finished rolling")
	fs.StringVar(&m.listen, "listen", "0.0.0.0:0", "`address` to serve the artifact on")
	fs.StringVar(&m.advertise, "advertise", "", "`host:port` the hosts reach the artifact at (default: this host's name and the bound port)")
	fs.StringArrayVar(&m.urls, "url", nil, "another `URL` of the same artifact (a web seed); repeatable")
	fs.DurationVar(&m.timeout, "timeout", 30*time.Minute, "give up serving after this long")
	fs.BoolVar(&m.detach, "detach", false, "write the manifest and exit without serving (needs --url)")
	fs.StringVar(&m.torrentListen, "torrent-listen", "0.0.0.0:0", "`address` to seed the release over BitTorrent on (empty: HTTP only)")
	fs.StringVar(&m.torrentAdvertise, "torrent-advertise", "", "`host:port` the hosts reach the seeder at (default: this host's name and the bound port)")
	fs.Int64Var(&m.uploadRate, "upload-rate", 0, "cap on the seeder's upload in `bytes/s` (0: none)")
	fs.StringVar(&m.signKey, "sign-key", "", "sign the release with the private key in `FILE` (dcroll keygen), for hosts with [trust] keys")
	fs.DurationVar(&m.signFor, "sign-expiry", 7*24*time.Hour, "how long the signature stays good")
	fs.BoolVar(&m.wait, "wait", false, "then wait until the release has rolled out (exit 0) or halts (exit 1), serving it meanwhile, within --timeout")
	return fs, "stage [--replace] [--listen ADDR] [--advertise HOST:PORT] [--url URL]... [--timeout D] [--detach] SERVICE VERSION PATH", `
PATH is a release archive (tar or tar.gz) or a directory, which is packed
into one. Stage reads an archive to its end first and refuses one that is
truncated, corrupt or holds entries the hosts would refuse to unpack. It
checks the service and version, computes the archive's size
and sha256, serves it over HTTP, writes the manifest under
/staging/<SERVICE> and then shows how many online hosts of the service have
the release verified on disk, until all of them do.

Hosts fetch from each other first, so stage only has to send the release
about once. Interrupting stage leaves the release staged: hosts that lack
it fetch it from peers that have it. With --detach stage exits at once and
nothing of it serves: the manifest carries the BitTorrent metainfo with the
--url origins as web seeds, each host takes its own share of the pieces
from them with ranged HTTP requests and the rest from the other hosts, so
the origin sends the release about once too. With --torrent-listen "" as
well, each host fetches the whole release from the --url origins.

With --wait, stage then goes on serving and follows the rollout, as
order --wait does: exit 0 once the release runs on every online host and
no step holds it, 1 if the service halts on it, it is unstaged or
replaced, or --timeout passes. A first release needs no order.

Stage refuses a version that already runs on every online host, and, unless
--replace, a staged release of the service that has not finished rolling.
--replace empties the ready queue: every host starts over with the new
release.

With --sign-key, stage signs the release (the data center's root, the
service, the version, the size, sha256 and unpacked size, the BitTorrent
infohash and the expiry) with a key made by dcroll keygen. Hosts that list
its public key in [trust] keys run only releases signed so, and none older
than what they run. So that a rollback can go back, stage also signs, until
the same expiry, the staged release and the previous one as rollbacks of
the new release: a host that runs the new release takes them then, and
only then (dcroll rollback and auto_rollback need no key).`
}

// completeArgs: PATH, after SERVICE and VERSION, is a file or directory.
func (*stageMode) completeArgs(args []string) ([]string, bool) { return nil, len(args) == 2 }

func (m *stageMode) Run(ctx context.Context, env *Env, args []string) error {
	svc, version, src, err := m.parseArgs(args)
	if err != nil {
		return err
	}
	var key *trust.PrivateKey
	if m.signKey != "" {
		k, err := trust.ReadPrivateKey(m.signKey)
		if err != nil {
			return err
		}
		if m.signFor <= 0 {
			return usageErr("--sign-expiry must be positive")
		}
		key = &k
	}
	isDir, err := checkSource(src)
	if err != nil {
		return err
	}
	hostname, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	store, _, err := env.connect(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := checkStageable(store, svc, version); err != nil {
		return err
	}
	// The artifact goes where a fetch.Server looks for it, in a directory
	// of stage's own, removed when stage ends.
	dir, err := os.MkdirTemp("", "dcroll-stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	artifact, err := m.placeArtifact(dir, svc, version, src, isDir)
	if err != nil {
		return err
	}
	size, sum, err := fetch.Describe(artifact)
	if err != nil {
		return err
	}
	// Hosts check their free space for it, and unpack no more.
	unpacked, err := fetch.UnpackedSize(artifact)
	if err != nil {
		return err
	}
	man := roll.Manifest{Version: version, Size: size, SHA256: sum, Unpacked: unpacked, Staged: time.Now().UTC(), By: hostname}
	urls, stopHTTP, err := m.serveHTTP(dir, svc, version, hostname)
	if err != nil {
		return err
	}
	defer stopHTTP()
	man.URLs = urls
	swarm, err := m.seedTorrent(dir, artifact, svc, hostname, &man)
	if err != nil {
		return err
	}
	if swarm != nil {
		defer swarm.Close()
	}
	if key != nil {
		man.Expires = time.Now().Add(m.signFor).UTC().Truncate(time.Second)
		man.Signatures = []trust.Signature{key.Sign(man.Release(store.Tree.Root, svc))}
		back, err := rollbackTargets(store, svc)
		if err != nil {
			return err
		}
		man.SignRollbacks(*key, store.Tree.Root, svc, back...)
	}
	detail := "sha256 " + man.SHA256[:12]
	if m.replace {
		detail += ", replacing"
	}
	if err := recordAction(env, store, roll.HistoryEvent{Action: roll.ActStage, Services: []string{svc}, Version: version, Detail: detail},
		store.Stage(svc, man, m.replace)); err != nil {
		return err
	}
	printStaged(env, svc, man)
	began := time.Now()
	if m.detach {
		if len(man.WebSeeds) > 0 {
			fmt.Fprintf(env.Stdout, "not serving (--detach): each host takes its share of the pieces from the URLs above and the rest from the other hosts\n")
		} else {
			fmt.Fprintf(env.Stdout, "not serving (--detach): the hosts fetch from the URLs above\n")
		}
	} else if err := m.serve(ctx, env, store, svc, man, swarm); err != nil {
		return err
	}
	if !m.wait {
		return nil
	}
	// Serving on: a host back from an absence may still fetch it.
	fmt.Fprintf(env.Stdout, "waiting for %s %s to roll out (dcroll order %s, if it is not ordered yet)\n", svc, version, svc)
	return waitRollout(ctx, env, store, []string{svc}, version, max(m.timeout-time.Since(began), time.Nanosecond))
}

// rollbackTargets are the releases a rollback of a release staged now may
// go back to: the one staged (which becomes the previous release once it
// has rolled out) and the previous one kept.
func rollbackTargets(store *roll.Store, svc string) ([]roll.Manifest, error) {
	var back []roll.Manifest
	cur, err := store.Manifest(svc)
	switch {
	case err == nil:
		back = append(back, cur)
	case !errors.Is(err, roll.ErrNotStaged):
		return nil, err
	}
	prev, err := store.PreviousRelease(svc)
	switch {
	case err == nil:
		back = append(back, prev)
	case !errors.Is(err, roll.ErrNoPrevious):
		return nil, err
	}
	return back, nil
}

// parseArgs checks the arguments and the flags that need no other input.
func (m *stageMode) parseArgs(args []string) (svc, version, src string, err error) {
	if len(args) != 3 {
		return "", "", "", usageErr("want SERVICE VERSION PATH, got %d arguments", len(args))
	}
	svc, version, src = args[0], args[1], args[2]
	if !config.ValidName(svc) {
		return "", "", "", usageErr("service %q is not a valid service name", svc)
	}
	if err := roll.ValidVersion(version); err != nil {
		return "", "", "", usageErr("%v", err)
	}
	if m.detach && len(m.urls) == 0 {
		return "", "", "", usageErr("--detach needs at least one --url: without stage serving it, the hosts need another origin")
	}
	for _, u := range m.urls {
		if err := roll.ValidWebSeed(u); err != nil {
			return "", "", "", usageErr("--url: %v", err)
		}
	}
	if len(m.urls) > roll.MaxWebSeeds {
		return "", "", "", usageErr("--url: %d given, at most %d", len(m.urls), roll.MaxWebSeeds)
	}
	if m.timeout <= 0 {
		return "", "", "", usageErr("--timeout must be positive")
	}
	return svc, version, src, nil
}

// checkSource reports whether src is a directory, and otherwise reads the
// archive to its end, so that a truncated or broken file fails here rather
// than on every host.
func checkSource(src string) (isDir bool, err error) {
	fi, err := os.Stat(src)
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		return true, nil
	}
	if err := fetch.CheckArchive(src); err != nil {
		return false, fmt.Errorf("%w; nothing was staged (PATH must be a tar or tar.gz archive, or a directory)", err)
	}
	return false, nil
}

// checkStageable refuses a service the catalog lacks and a version that
// already runs on every online host.
func checkStageable(store *roll.Store, svc, version string) error {
	services, err := store.Services()
	if err != nil {
		return err
	}
	if _, ok := services[svc]; !ok {
		return fmt.Errorf("service %q is not in the catalog (%s); add it to the seed file and run `dcroll seed`", svc, strings.Join(roll.Catalog(services).Names(), ", "))
	}
	// The fleet view first: one read. Only a view that says every online
	// host runs version is checked against every host.
	v, err := store.FleetView(svc)
	if err != nil && !errors.Is(err, roll.ErrBadNode) {
		return err
	}
	if err == nil && (v.Online == 0 || v.Versions[version] != v.Online) {
		return nil
	}
	cur, err := store.CurrentOf(svc)
	if err != nil {
		return err
	}
	if runsEverywhere(cur, version) {
		return fmt.Errorf("%s %s already runs on every online host (%d); nothing to stage", svc, version, len(cur))
	}
	return nil
}

// placeArtifact puts the release where stage serves it from, in dir, and
// returns its path: a directory is packed, an archive linked or copied. With
// --detach it is only hashed, so an archive stays where it is.
func (m *stageMode) placeArtifact(dir, svc, version, src string, isDir bool) (string, error) {
	if m.detach && !isDir {
		return src, nil
	}
	artifact := fetch.ArtifactPath(dir, svc, version)
	if err := os.MkdirAll(filepath.Dir(artifact), 0o755); err != nil {
		return "", err
	}
	if isDir {
		return artifact, fetch.PackFile(src, artifact)
	}
	return artifact, linkOrCopy(src, artifact)
}

// serveHTTP starts serving dir unless --detach, and returns the URLs the
// hosts fetch from (stage's own first, then --url) and what stops serving.
func (m *stageMode) serveHTTP(dir, svc, version, hostname string) (urls []string, stop func(), err error) {
	if m.detach {
		return m.urls, func() {}, nil
	}
	l, err := net.Listen("tcp", m.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", m.listen, err)
	}
	srv := fetch.Serve(l, dir, fetch.ServerOptions{})
	own := fetch.PeerURL(advertiseAddr(m.advertise, l.Addr(), hostname), svc, version)
	return append([]string{own}, m.urls...), func() { srv.Close() }, nil
}

// seedTorrent starts the first seeder of the release over BitTorrent and
// records it in man; every host that gets a piece shares it on. Without
// --torrent-listen it returns a nil swarm. With --detach nobody seeds: the
// metainfo names the --url origins as web seeds, from which each host takes
// its share of the pieces, and the hosts trade the rest among themselves.
func (m *stageMode) seedTorrent(dir, artifact, svc, hostname string, man *roll.Manifest) (*fetch.Swarm, error) {
	if m.torrentListen == "" {
		return nil, nil
	}
	mi, infohash, err := fetch.BuildMetainfo(artifact, svc+"-"+man.Version, fetch.PieceLength(man.Size))
	if err != nil {
		return nil, err
	}
	if m.detach {
		man.Infohash, man.Metainfo, man.WebSeeds = infohash, mi, slices.Clone(m.urls)
		return nil, nil
	}
	swarm, err := fetch.NewSwarm(fetch.SwarmConfig{DataDir: filepath.Join(dir, "torrent"), Listen: m.torrentListen, UploadRate: m.uploadRate})
	if err != nil {
		return nil, fmt.Errorf("seed over BitTorrent: %w", err)
	}
	if err := swarm.Seed(mi, artifact); err != nil {
		swarm.Close()
		return nil, err
	}
	bound, err := net.ResolveTCPAddr("tcp", swarm.Addr())
	if err != nil {
		swarm.Close()
		return nil, err
	}
	man.Infohash, man.Metainfo = infohash, mi
	man.Seeders = []string{advertiseAddr(m.torrentAdvertise, bound, hostname)}
	return swarm, nil
}

// printStaged says what was staged and where the hosts fetch it from.
func printStaged(env *Env, svc string, man roll.Manifest) {
	fmt.Fprintf(env.Stdout, "staged %s %s: %d bytes, sha256 %s\n", svc, man.Version, man.Size, man.SHA256)
	for _, u := range man.URLs {
		fmt.Fprintf(env.Stdout, "  %s\n", u)
	}
	for _, s := range man.Seeders {
		fmt.Fprintf(env.Stdout, "  bittorrent %s (infohash %s)\n", s, man.Infohash)
	}
	if len(man.WebSeeds) > 0 {
		fmt.Fprintf(env.Stdout, "  bittorrent among the hosts (infohash %s), the URLs above as web seeds\n", man.Infohash)
	}
}

// serve shows the hosts' progress until every online member of svc has the
// release, ctx ends or the timeout passes. The HTTP server runs meanwhile.
// Each look costs a constant number of small requests (StageCounts); the
// hosts are named (StageNames) only when few lack the release, and then
// only when the counts moved or a while passed.
func (m *stageMode) serve(ctx context.Context, env *Env, store *roll.Store, svc string, man roll.Manifest, swarm *fetch.Swarm) error {
	sent := func() string {
		if swarm == nil {
			return ""
		}
		_, written, _ := swarm.Stats(man.Infohash)
		peers := swarm.UploadedTo(man.Infohash)
		return fmt.Sprintf(", %s sent over BitTorrent to %d %s (%.1fx the release)", humanBytes(written), peers, plural(peers, "peer", "peers"), float64(written)/float64(man.Size))
	}
	timeout := time.NewTimer(m.timeout)
	defer timeout.Stop()
	tick := time.NewTicker(stagePoll)
	defer tick.Stop()
	var bar *progressbar.ProgressBar
	if isTerminal(env.Stdout) {
		bar = progressbar.NewOptions(1,
			progressbar.OptionSetWriter(env.Stdout),
			progressbar.OptionSetDescription(svc+" "+man.Version+": hosts ready"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish())
	}
	w := progressWatch{store: store, svc: svc, man: man}
	var last stageProgress
	shown := false
	for {
		p, err := w.read()
		if err != nil {
			// A display refresh: ride out a ZooKeeper hiccup, but say so.
			fmt.Fprintf(env.Stderr, "dcroll stage: %v (retrying)\n", err)
		} else {
			if p.replaced != "" {
				if bar != nil {
					bar.Clear()
				}
				return errors.New(p.replaced)
			}
			if bar != nil {
				bar.ChangeMax(max(p.Online, 1))
				bar.Describe(svc + " " + man.Version + ": hosts ready" + sent())
				bar.Set(p.Ready)
			} else if !shown || p.Ready != last.Ready || p.Online != last.Online {
				fmt.Fprintf(env.Stdout, "%s %s: %d/%d hosts ready%s\n", svc, man.Version, p.Ready, p.Online, sent())
			}
			for _, h := range slices.Sorted(maps.Keys(p.overHTTP)) {
				if why := p.overHTTP[h]; last.overHTTP[h] != why || !shown {
					if bar != nil {
						bar.Clear()
					}
					fmt.Fprintf(env.Stdout, "%s %s: %s fetches over HTTP, not BitTorrent: %s\n", svc, man.Version, h, why)
				}
			}
			last, shown = p, true
			if p.Online > 0 && p.Ready == p.Online && p.Named {
				if bar != nil {
					bar.Finish()
				}
				fmt.Fprintf(env.Stdout, "%s %s: every online host (%d) has the release; done serving%s\n", svc, man.Version, p.Online, sent())
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if bar != nil {
				bar.Clear()
			}
			fmt.Fprintf(env.Stdout, "%s %s: interrupted with %d/%d hosts ready; the release stays staged and hosts can still fetch it from peers that have it\n",
				svc, man.Version, last.Ready, last.Online)
			return nil
		case <-timeout.C:
			if bar != nil {
				bar.Clear()
			}
			if p, err := store.StageNames(svc, man.Version, 0); err == nil {
				last.Progress = p
			}
			return fmt.Errorf("%s %s: timed out after %s with %d/%d hosts ready; not ready: %s (the release stays staged; hosts fetch it from peers that have it, or run stage again with --replace)",
				svc, man.Version, m.timeout, last.Ready, last.Online, nameSome(last.NotReady, "none online"))
		case <-tick.C:
		}
	}
}

// stageNamed is how many hosts without the release stage names, and how
// often at most it reads their names again while the counts stand still.
const (
	stageNamed      = 20
	stageNamesEvery = 10 * time.Second
)

// nameSome lists the first stageNamed names, and how many more there are.
func nameSome(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	if len(names) <= stageNamed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:stageNamed], ", "), len(names)-stageNamed)
}

// stageProgress is how far the hosts are with a staged release.
type stageProgress struct {
	roll.Progress
	// overHTTP is why each host not yet ready fetches over HTTP rather
	// than BitTorrent, if it says so.
	overHTTP map[string]string
	// replaced, when not empty, says that the manifest is no longer ours.
	replaced string
}

// progressWatch reads the progress of one staged release again and again.
type progressWatch struct {
	store *roll.Store
	svc   string
	man   roll.Manifest
	// zxid is the write of the manifest last seen to be ours.
	zxid int64
	// counts are the last counts; named the last progress read by name,
	// and when.
	counts  [2]int
	named   roll.Progress
	namedAt time.Time
}

// read counts the online members of svc and those that have the release:
// in the ready queue, holding a turn, or already running it.
func (w *progressWatch) read() (stageProgress, error) {
	var p stageProgress
	zxid, err := w.store.StagedZxid(w.svc)
	if err != nil {
		return p, err
	}
	if zxid == 0 {
		p.replaced = fmt.Sprintf("%s %s was unstaged meanwhile (dcroll abort?); stopped serving", w.svc, w.man.Version)
		return p, nil
	}
	if zxid != w.zxid {
		// Written since it was last seen ours: read it (staging the same
		// release again writes it too).
		now, err := w.store.Manifest(w.svc)
		if errors.Is(err, roll.ErrNotStaged) {
			p.replaced = fmt.Sprintf("%s %s was unstaged meanwhile (dcroll abort?); stopped serving", w.svc, w.man.Version)
			return p, nil
		}
		if err != nil {
			return p, err
		}
		if now.Version != w.man.Version || now.SHA256 != w.man.SHA256 || !now.Staged.Equal(w.man.Staged) {
			p.replaced = fmt.Sprintf("%s %s was replaced meanwhile by %s, staged by %s; stopped serving", w.svc, w.man.Version, now.Version, now.By)
			return p, nil
		}
		w.zxid = zxid
	}
	if p.Progress, err = w.store.StageCounts(w.svc, w.man.Version, stageNamed); err != nil {
		return p, err
	}
	counts := [2]int{p.Online, p.Ready}
	if !p.Named && p.Online-p.Ready <= stageNamed {
		if counts != w.counts || time.Since(w.namedAt) >= stageNamesEvery {
			if p.Progress, err = w.store.StageNames(w.svc, w.man.Version, stageNamed); err != nil {
				return p, err
			}
			w.named, w.namedAt = p.Progress, time.Now()
		} else {
			p.Progress = w.named // the counts stand still: so do the names
		}
	}
	w.counts = counts
	if p.Named {
		p.overHTTP = map[string]string{}
		for h, a := range p.Agents {
			if f, ok := a.Fetching[w.svc]; ok && f.Version == w.man.Version && f.Via == roll.ViaHTTP {
				p.overHTTP[h] = f.Why
			}
		}
	}
	return p, nil
}

// runsEverywhere reports whether every online host runs version, and at
// least one does.
func runsEverywhere(cur map[string]roll.Current, version string) bool {
	for _, c := range cur {
		if c.Version != version {
			return false
		}
	}
	return len(cur) > 0
}

// advertiseAddr is the host:port the hosts fetch from: the flag if given,
// the bound address if it names a host, else this host's name and the port.
func advertiseAddr(flagValue string, bound net.Addr, hostname string) string {
	if flagValue != "" {
		return flagValue
	}
	tcp := bound.(*net.TCPAddr)
	if !tcp.IP.IsUnspecified() {
		return tcp.String()
	}
	return net.JoinHostPort(hostname, fmt.Sprint(tcp.Port))
}

// linkOrCopy puts src's bytes at dst: a hard link where the file system
// allows one, a copy otherwise.
func linkOrCopy(src, dst string) (err error) {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// humanBytes renders n as B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit && exp < 2; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMG"[exp])
}
