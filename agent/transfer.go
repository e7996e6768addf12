package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
	"github.com/dcroll/dcroll/trust"
)

// ensureRelease makes sure version of svc is unpacked in its releases
// directory from an artifact that matches the staged manifest, fetching it
// if needed: over BitTorrent from the other hosts and the origin's seeder
// when the manifest carries metainfo, else (or if that fails) over HTTP
// from the peers that run it and then the origins. A release whose
// artifact no longer matches is removed and fetched again.
func (a *Agent) ensureRelease(ctx context.Context, store *roll.Store, svc, version string) error {
	a.fetchMu[svc].Lock()
	defer a.fetchMu[svc].Unlock()
	rel := a.rels[svc]
	_, statErr := os.Stat(rel.Path(version))
	installed := statErr == nil
	m, err := store.Manifest(svc)
	if installed && (errors.Is(err, roll.ErrNotStaged) || (err == nil && m.Version != version)) {
		return nil // installed, and no manifest to check it against
	}
	if err != nil {
		return err
	}
	if m.Version != version {
		return fmt.Errorf("%s %s is not staged (staged: %s)", svc, version, m.Version)
	}
	// Before a byte is fetched: a release this host does not trust is
	// refused, and the refusal shows in status (the caller marks svc
	// stuck); the other hosts go on.
	if err := a.checkTrust(svc, m); err != nil {
		return err
	}
	path := fetch.ArtifactPath(a.artifacts, svc, version)
	art := fetch.Artifact{Service: svc, Version: version, Size: m.Size, SHA256: m.SHA256}
	if installed {
		if err := a.checkArtifact(svc, m); err == nil {
			a.seed(svc, m, path)
			return nil
		}
	}
	// A fresh host has no releases directory yet.
	if err := os.MkdirAll(rel.Dir, 0o755); err != nil {
		return err
	}
	if err := fetch.Verify(path, art); err != nil {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		_ = os.Remove(path) // a tampered or partial file is fetched again
		if err := a.checkSpace(m, path, rel.Dir, true); err != nil {
			return err
		}
		unlock := a.lockHotFiles(svc)
		began := time.Now()
		err := a.fetchArtifact(ctx, store, svc, m, art, path)
		a.metrics.fetchDone(svc, time.Since(began), err)
		unlock()
		if err != nil {
			return err
		}
	} else if err := a.checkSpace(m, path, rel.Dir, false); err != nil {
		return err
	}
	// The manifest says what the release unpacks to: no more is written.
	if err := fetch.UnpackAtMost(path, rel.Path(version), m.Unpacked); err != nil {
		return fmt.Errorf("unpack %s %s: %w", svc, version, err)
	}
	a.seed(svc, m, path)
	a.log.Info("release verified and unpacked", "service", svc, "version", version)
	return nil
}

// checkTrust refuses a release that the [trust] keys did not sign, for
// this data center and svc, unexpired and not older than what runs.
func (a *Agent) checkTrust(svc string, m roll.Manifest) error {
	if len(a.trusted) == 0 {
		return nil
	}
	return trust.Check(a.trusted, m.Release(a.cfg.ZooKeeper.Root, svc), m.Signatures,
		a.units[svc].Version(), time.Now(), state.CompareVersions)
}

// checkSpace refuses a release the disk cannot hold before any of it is
// written: the artifact (unless it is already here) and what it unpacks to.
func (a *Agent) checkSpace(m roll.Manifest, artifact, releases string, fetching bool) error {
	needs := []fetch.Need{{Dir: releases, Bytes: m.Unpacked, What: "unpacked release"}}
	if fetching {
		needs = append(needs, fetch.Need{Dir: filepath.Dir(artifact), Bytes: m.Size, What: "artifact"})
	}
	return fetch.CheckSpace(needs...)
}

// removeLeftovers removes what a fetch or an unpack that was killed midway
// left on disk (partial downloads, half-unpacked releases), before any new
// one starts: a restart must not strand the disk space they hold.
func (a *Agent) removeLeftovers() {
	for _, svc := range a.serviceNames() {
		for _, dir := range []string{filepath.Join(a.artifacts, svc), a.rels[svc].Dir} {
			removed, err := fetch.RemoveTemps(dir)
			if err != nil {
				a.log.Warn("cannot remove leftovers of an interrupted fetch", "dir", dir, "error", err)
			}
			if len(removed) > 0 {
				a.log.Info("removed leftovers of an interrupted fetch", "dir", dir, "removed", removed)
			}
		}
	}
}

// checkArtifact verifies, when this host holds it, the artifact a staged
// release was unpacked from; on a mismatch (a file changed on disk) it
// removes the release and the artifact so that they are fetched again.
// Releases installed by other means have no artifact and pass.
func (a *Agent) checkArtifact(svc string, m roll.Manifest) error {
	path := fetch.ArtifactPath(a.artifacts, svc, m.Version)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := fetch.Verify(path, fetch.Artifact{Service: svc, Version: m.Version, Size: m.Size, SHA256: m.SHA256})
	if err == nil {
		return nil
	}
	a.log.Error("the release on disk no longer matches its manifest; removing it to fetch it again", "service", svc, "version", m.Version, "error", err)
	if m.Infohash != "" && a.swarm != nil {
		a.swarm.Drop(m.Infohash)
	}
	_ = os.Remove(path)
	if m.Version != a.units[svc].Version() {
		_ = os.RemoveAll(a.rels[svc].Path(m.Version))
	}
	return err
}

func (a *Agent) fetchArtifact(ctx context.Context, store *roll.Store, svc string, m roll.Manifest, art fetch.Artifact, path string) error {
	var why string
	switch {
	case a.swarm == nil:
		why = "BitTorrent is off on this host (transfer.torrent_listen is empty)"
	case len(m.Metainfo) == 0:
		why = "the release was staged without BitTorrent (stage --torrent-listen \"\")"
	default:
		peers := append(slices.Clone(m.Seeders), a.torrentPeers(store)...)
		a.log.Info("fetching over BitTorrent", "service", svc, "version", m.Version, "size", m.Size, "peers", len(peers))
		a.pruneAbandoned(store)
		err := a.fetchTorrent(ctx, art, m, peers, a.torrentShare(store, svc), path)
		if err == nil {
			return nil
		}
		// HTTP starts from scratch: what BitTorrent got is of no use.
		if rerr := a.swarm.RemovePartial(m.Infohash); rerr != nil {
			a.log.Warn("cannot remove the failed download", "service", svc, "version", m.Version, "error", rerr)
		}
		if ctx.Err() != nil {
			return err
		}
		a.log.Warn("BitTorrent fetch failed; trying HTTP", "service", svc, "version", m.Version, "error", err)
		why = "BitTorrent failed: " + err.Error()
	}
	peerURLs := a.peerURLs(store, svc, m.Version)
	if len(peerURLs)+len(m.URLs) == 0 {
		return fmt.Errorf("no HTTP origin for %s %s (%s)", svc, m.Version, why)
	}
	a.log.Info("fetching over HTTP", "service", svc, "version", m.Version, "size", m.Size, "origins", len(peerURLs)+len(m.URLs), "why", why)
	// The bytes are not counted over HTTP while they come; what the host
	// shows is that the download bypasses BitTorrent, and why.
	a.setFetching(svc, &roll.Fetch{Version: m.Version, Size: m.Size, Via: roll.ViaHTTP, Why: truncate(why, roll.MaxFetchWhy)})
	defer a.setFetching(svc, nil)
	// Peers first, then the origins: the artifact comes whole from one
	// URL, so its bytes count for that URL's source.
	var errs []error
	for _, try := range []struct {
		source string
		urls   []string
	}{{SourceHTTPPeer, peerURLs}, {SourceOrigin, m.URLs}} {
		if len(try.urls) == 0 {
			continue
		}
		art.URLs = try.urls
		err := a.fetcher.Fetch(ctx, art, path)
		if err == nil {
			a.metrics.fetched(svc, try.source, m.Size)
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// pruneAbandoned removes the partial downloads of releases no longer
// staged (replaced, aborted, or cut short by a restart), so that they give
// their disk space back.
func (a *Agent) pruneAbandoned(store *roll.Store) {
	if a.swarm == nil {
		return
	}
	keep, err := a.stagedInfohashes(store)
	if err != nil {
		return // without knowing what is staged, nothing is abandoned
	}
	if removed, err := a.swarm.PrunePartials(keep...); err != nil {
		a.log.Warn("cannot remove abandoned downloads", "error", err)
	} else if len(removed) > 0 {
		a.log.Info("removed abandoned downloads", "infohashes", removed)
	}
}

// stagedInfohashes lists the infohashes of this host's services' staged
// releases, whose partial downloads are worth keeping.
func (a *Agent) stagedInfohashes(store *roll.Store) ([]string, error) {
	var out []string
	for _, svc := range a.serviceNames() {
		m, err := store.Manifest(svc)
		switch {
		case errors.Is(err, roll.ErrNotStaged), errors.Is(err, roll.ErrBadNode):
		case err != nil:
			return nil, err
		case m.Infohash != "":
			out = append(out, m.Infohash)
		}
	}
	return out, nil
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-len("…")]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// seed shares a verified artifact with the other hosts while it is staged.
func (a *Agent) seed(svc string, m roll.Manifest, path string) {
	if a.swarm == nil || m.Infohash == "" {
		return
	}
	a.mu.Lock()
	a.seeding[svc+"/"+m.Version] = m.Infohash
	a.mu.Unlock()
	if a.swarm.Has(m.Infohash) {
		return
	}
	if err := a.swarm.Seed(m.Metainfo, path); err != nil {
		a.log.Warn("cannot seed", "service", svc, "version", m.Version, "error", err)
	}
}

// torrentPeers lists the other hosts' BitTorrent addresses, those in this
// host's rack first, then those in its site, so that traffic stays off the
// links between sites where it can.
func (a *Agent) torrentPeers(store *roll.Store) []string {
	hosts, err := store.Hosts()
	if err != nil {
		return nil
	}
	type peer struct {
		addr  string
		close int
	}
	var peers []peer
	me := a.cfg.Host
	for name, h := range hosts {
		if name == a.host || h.TorrentAddr == "" {
			continue
		}
		close := 0
		if me.Site != "" && h.Site == me.Site {
			close = 1
			if me.Rack != "" && h.Rack == me.Rack {
				close = 2
			}
		}
		peers = append(peers, peer{h.TorrentAddr, close})
	}
	sort.Slice(peers, func(i, j int) bool {
		if peers[i].close != peers[j].close {
			return peers[i].close > peers[j].close
		}
		return peers[i].addr < peers[j].addr
	})
	addrs := make([]string, len(peers))
	for i, p := range peers {
		addrs[i] = p.addr
	}
	return addrs
}

// torrentShare is this host's place among the hosts that fetch svc's
// release at the same time: the online hosts in ZooKeeper that run svc and
// take BitTorrent peers, sorted by name, which every agent reads alike. A
// host that is not yet listed gets no Share and orders its pieces at random.
// The list may change while hosts fetch; a host ranked differently by two
// agents only fetches some pieces twice from the origin.
func (a *Agent) torrentShare(store *roll.Store, svc string) fetch.Share {
	hosts, err := store.Hosts()
	if err != nil {
		return fetch.Share{}
	}
	var names []string
	for name, h := range hosts {
		if h.TorrentAddr != "" && slices.Contains(h.Services, svc) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	rank := slices.Index(names, a.host)
	if rank < 0 {
		return fetch.Share{}
	}
	return fetch.Share{Rank: rank, Hosts: len(names)}
}

// peerURLs lists where hosts that run version serve its artifact.
func (a *Agent) peerURLs(store *roll.Store, svc, version string) []string {
	cur, err := store.CurrentOf(svc)
	if err != nil {
		return nil
	}
	hosts, err := store.Hosts()
	if err != nil {
		return nil
	}
	var urls []string
	for h, c := range cur {
		if h != a.host && c.Version == version && hosts[h].PeerAddr != "" {
			urls = append(urls, fetch.PeerURLWithToken(hosts[h].PeerAddr, svc, version, a.peerToken))
		}
	}
	return urls
}

// servePeers serves the artifacts this host holds, if configured.
func (a *Agent) servePeers() (*http.Server, error) {
	if a.cfg.Transfer.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", a.cfg.Transfer.Listen)
	if err != nil {
		return nil, err
	}
	ln = countingListener{Listener: ln, n: &a.metrics.httpUploaded}
	return fetch.Serve(ln, a.artifacts, fetch.ServerOptions{MaxConns: a.cfg.Transfer.MaxConns, Token: a.peerToken}), nil
}

// lockHotFiles locks svc's hot files in memory for the length of a
// transfer and returns what unlocks them. A memlock limit that is too low
// is reported and the transfer goes on without locking.
func (a *Agent) lockHotFiles(svc string) func() {
	files := a.cfg.Services[svc].HotFiles
	if len(files) == 0 {
		return func() {}
	}
	running := a.rels[svc].Path(state.CurrentName)
	paths := make([]string, len(files))
	for i, f := range files {
		if filepath.IsAbs(f) {
			paths[i] = f
		} else {
			paths[i] = filepath.Join(running, f)
		}
	}
	l, err := fetch.LockFiles(paths)
	if err != nil {
		a.log.Warn("not locking the hot files during the transfer", "service", svc, "error", err)
		return func() {}
	}
	a.log.Info("hot files locked in memory for the transfer", "service", svc, "bytes", l.Bytes())
	a.metrics.hotLocked.WithLabelValues(svc).Set(float64(l.Bytes()))
	return func() {
		l.Unlock()
		a.metrics.hotLocked.WithLabelValues(svc).Set(0)
	}
}

// prune removes the releases and artifacts of svc other than keep (the
// running version and the previous one, for a rollback).
func (a *Agent) prune(svc string, keep ...string) {
	removed, err := a.rels[svc].Prune(keep...)
	if err != nil {
		a.log.Warn("cannot remove old releases", "service", svc, "error", err)
	}
	for _, v := range removed {
		a.mu.Lock()
		ih, ok := a.seeding[svc+"/"+v]
		delete(a.seeding, svc+"/"+v)
		a.mu.Unlock()
		if ok {
			a.swarm.Drop(ih)
		}
		_ = os.Remove(fetch.ArtifactPath(a.artifacts, svc, v))
	}
	if len(removed) > 0 {
		a.log.Info("removed old releases", "service", svc, "versions", removed)
	}
}

// torrentStall is how long a BitTorrent fetch may go without receiving a
// byte before the agent gives up on it and tries HTTP.
const torrentStall = 30 * time.Second

// fetchTorrent runs a BitTorrent fetch, cancelling it when it stalls: no
// peer has the release yet, or none is reachable.
func (a *Agent) fetchTorrent(ctx context.Context, art fetch.Artifact, m roll.Manifest, peers []string, share fetch.Share, path string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	progress := make(chan struct{})
	// The progress loop ends before the progress is cleared: a tick after
	// the clear would show a finished download for good.
	defer func() {
		cancel(nil)
		<-progress
		a.setFetching(art.Service, nil)
	}()
	// The web seeds are the manifest's; their bytes count as the
	// origin's.
	art.URLs = m.WebSeeds
	// What an earlier fetch of the torrent in this process received is
	// counted already.
	counted, _, _ := a.swarm.Stats(m.Infohash)
	countedOrigin, countedWhole := a.swarm.FromOrigin(m.Infohash).Bytes, a.swarm.FromOrigin(m.Infohash).WholeBody
	go func() {
		defer close(progress)
		var last int64
		lastChange := time.Now()
		// The bytes received so far count at every tick and once more
		// at the end.
		defer func() {
			read, _, _ := a.swarm.Stats(m.Infohash)
			a.metrics.fetched(art.Service, SourceBitTorrent, read-counted)
			a.metrics.fetched(art.Service, SourceOrigin, a.swarm.FromOrigin(m.Infohash).Bytes-countedOrigin)
		}()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			read, _, peers := a.swarm.Stats(m.Infohash)
			origin := a.swarm.FromOrigin(m.Infohash)
			a.metrics.fetched(art.Service, SourceBitTorrent, read-counted)
			a.metrics.fetched(art.Service, SourceOrigin, origin.Bytes-countedOrigin)
			counted, countedOrigin = max(counted, read), max(countedOrigin, origin.Bytes)
			a.metrics.originWholeBody(art.Service, origin.WholeBody-countedWhole)
			countedWhole = max(countedWhole, origin.WholeBody)
			a.setFetching(art.Service, &roll.Fetch{Version: m.Version, Bytes: read + origin.Bytes, Origin: origin.Bytes, Size: m.Size, Peers: peers, Via: roll.ViaBitTorrent})
			// Bytes from the web seeds are progress too.
			if got := read + origin.Bytes; got != last {
				last, lastChange = got, time.Now()
			} else if time.Since(lastChange) > torrentStall {
				cancel(fmt.Errorf("no data for %s", torrentStall))
				return
			}
		}
	}()
	err := a.swarm.Fetch(ctx, art, m.Metainfo, peers, path, share)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// setFetching records the progress of svc's download (nil: none) for
// /hosts/<host>, which status shows.
func (a *Agent) setFetching(svc string, f *roll.Fetch) {
	a.mu.Lock()
	old, had := a.fetching[svc]
	switch {
	case f == nil:
		delete(a.fetching, svc)
	case had && f.Bytes-old.Bytes < max(f.Size/50, 1) && f.Peers == old.Peers && f.Via == old.Via:
		a.mu.Unlock()
		return // publish every 2% or so, not every tick
	default:
		a.fetching[svc] = *f
	}
	a.mu.Unlock()
	a.kickPublish()
}
