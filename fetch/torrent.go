package fetch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"github.com/dcroll/dcroll/internal/classicio"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// The storage package has read its file I/O choice by now (this package
// imports it): put the environment back for the processes dcroll starts.
func init() { classicio.Restore() }

// ErrSwarmClosed means the Swarm was closed, or the torrent dropped, while a
// Fetch waited for it.
var ErrSwarmClosed = errors.New("fetch: swarm closed")

// SwarmConfig configures a Swarm.
type SwarmConfig struct {
	// DataDir holds partial downloads, one directory per infohash, and the
	// piece-completion database that lets a restarted Swarm resume them.
	DataDir string
	// Listen is the host:port peers connect to; port 0 picks a free one.
	Listen string
	// UploadRate and DownloadRate cap peer traffic in bytes/s; 0 is no cap.
	UploadRate, DownloadRate int64
	// Logger receives the swarm's and the BitTorrent client's logs; nil
	// discards them.
	Logger hclog.Logger
	// Resolver looks up the host names in peer addresses; nil is
	// net.DefaultResolver.
	Resolver Resolver
	// PeerRefresh is how often a Fetch looks the peers' names up again and
	// asks the client to dial the peers it is not connected to; 0 is
	// DefaultPeerRefresh.
	PeerRefresh time.Duration
	// DropCache asks the kernel, once a fetched release is verified and on
	// disk, to drop its pages from the page cache (posix_fadvise
	// DONTNEED), so that they do not crowd out the running service's.
	// Seeding it then reads from disk.
	DropCache bool
	// GrowPipeline lets the library size the request pipeline to each
	// peer: twice the most requests it could add at once, up to the queue
	// the peer advertises (1024 for dcroll), instead of maxPeerRequests.
	GrowPipeline bool
	// ShareFromBack orders the other hosts' pieces of a Share by their
	// place in their owner's share, last first (backLevel), instead of by
	// owner (shareLevel).
	ShareFromBack bool
	// SyncEachPiece lets the library fsync the download each time a piece
	// passes its hash check, as it does by default; without it the file is
	// synced once, verified, before it is installed (noPieceSync).
	SyncEachPiece bool
	// OriginRequests caps the ranged HTTP requests one Fetch has open to
	// its web seeds (the artifact's URLs) at once; 0 is
	// DefaultOriginRequests.
	OriginRequests int
	// OriginRedirectHosts are the hosts (host or host:port) a web seed
	// may redirect to besides its own, such as an artifact store's storage
	// host. Never from https to http.
	OriginRedirectHosts []string
	// OriginGrace is how long a host that has its own share of the pieces
	// waits for the other hosts' before it takes them from a web seed; 0
	// is DefaultOriginGrace.
	OriginGrace time.Duration
	// OriginClient makes the requests to web seeds; nil is a client with
	// connect and header timeouts. Its redirect policy is replaced.
	OriginClient *http.Client
}

// Resolver looks up the addresses of a host name, as net.Resolver does.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DefaultPeerRefresh is how often a Fetch resolves its peers again by
// default: a host whose address changed, or whose client was not up yet, is
// reached within this long.
const DefaultPeerRefresh = 15 * time.Second

// Swarm is this host's BitTorrent client: it fetches releases from peers
// named by the caller and seeds every release it has. Peers are only ever the
// ones the caller names: there is no tracker, DHT or peer exchange.
type Swarm struct {
	cfg   SwarmConfig
	log   hclog.Logger
	slog  *slog.Logger // log, for the BitTorrent client
	cl    *torrent.Client
	ln    net.Listener             // where peers connect; the client does not close it
	pc    storage.PieceCompletion  // completion of downloads in DataDir
	store storage.ClientImplCloser // file storage in DataDir

	mu       sync.Mutex
	torrents map[metainfo.Hash]*swarmTorrent

	uploads *uploads      // the peers each torrent's data went to
	down    *rate.Limiter // the download cap, peers and web seeds together; nil: none
}

// swarmTorrent is the Swarm's record of one torrent in the client.
type swarmTorrent struct {
	t *torrent.Torrent
	// seed is the storage of a torrent seeded from file, a verified
	// artifact outside DataDir; nil while the torrent downloads into DataDir.
	seed storage.ClientImplCloser
	// file is the verified artifact the torrent seeds: the file of seed,
	// or the destination of a fetch that the download in DataDir is a
	// hard link of (linked).
	file   string
	linked bool
	// read and written carry the data counters of an earlier incarnation
	// of the torrent (download, then seed), so Stats does not go backwards.
	read, written int64
	// origin counts what fetches of the torrent took from web seeds.
	origin *originCounters
}

// seeding reports whether the torrent serves a verified artifact, as
// opposed to downloading one.
func (st *swarmTorrent) seeding() bool { return st.seed != nil || st.linked }

// NewSwarm starts a BitTorrent client listening on cfg.Listen.
func NewSwarm(cfg SwarmConfig) (*Swarm, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("new swarm: empty DataDir")
	}
	if cfg.UploadRate < 0 || cfg.DownloadRate < 0 {
		return nil, fmt.Errorf("new swarm: rates must not be negative: upload %d, download %d", cfg.UploadRate, cfg.DownloadRate)
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("new swarm: listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("new swarm: listen %q: bad port", cfg.Listen)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.PeerRefresh <= 0 {
		cfg.PeerRefresh = DefaultPeerRefresh
	}
	if cfg.OriginRequests < 0 || cfg.OriginGrace < 0 {
		return nil, fmt.Errorf("new swarm: origin requests %d and grace %s must not be negative", cfg.OriginRequests, cfg.OriginGrace)
	}
	if cfg.OriginRequests == 0 {
		cfg.OriginRequests = DefaultOriginRequests
	}
	if cfg.OriginGrace == 0 {
		cfg.OriginGrace = DefaultOriginGrace
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("new swarm: %w", err)
	}
	slogger := slog.New(hclogHandler{l: logger.Named("torrent")})

	// Bolt keeps completion per piece across restarts. Part files are off:
	// with them the client trusts only whole finished files and would forget
	// the pieces of an interrupted download.
	pc, err := storage.NewBoltPieceCompletion(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("new swarm: open piece completion in %s: %w", cfg.DataDir, err)
	}
	store := storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   cfg.DataDir,
		TorrentDirMaker: downloadDir,
		PieceCompletion: pc,
		UsePartFiles:    g.Some(false),
		Logger:          slogger,
	})

	cc := torrent.NewDefaultClientConfig()
	cc.Slogger = slogger
	cc.Bep20 = PeerIDPrefix
	cc.DefaultStorage = store
	if !cfg.SyncEachPiece {
		cc.DefaultStorage = noPieceSync{store}
	}
	cc.ListenHost = func(string) string { return host }
	cc.ListenPort = int(port)
	cc.NoDHT = true
	cc.DisablePEX = true
	cc.DisableTrackers = true
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	cc.NoDefaultPortForwarding = true
	cc.Seed = true
	// uTP backs off for other traffic on consumer links; on a LAN with
	// explicit rate caps plain TCP is simpler and cheaper.
	cc.DisableUTP = true
	// Obfuscation hides BitTorrent from ISPs; inside the data center it
	// only costs CPU.
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	if ip, err := netip.ParseAddr(host); err == nil {
		// Listening on one address family only; the other would fail to
		// bind to this host.
		cc.DisableIPv6 = ip.Unmap().Is4()
		cc.DisableIPv4 = !cc.DisableIPv6
	}
	// anacrolix/torrent v1.59.1 grants a connection's upload buffer to
	// requests first come first served but serves them in map order, and
	// stalls for good once it waits for a request queued behind granted,
	// unserved ones. A budget covering every request a peer may have
	// outstanding (1024 chunks of 16 KiB) means no request ever queues. It is
	// a bound, not an allocation: dcroll peers keep at most maxPeerRequests
	// outstanding (below), 1 MiB a connection.
	cc.MaxAllocPeerRequestDataPerConn = 1024 * 16 << 10
	// Pieces the client may request at once, counted in priority order;
	// left at the default of 64 MiB, a host would ask only for its own share
	// and the next host's (see spreadPieces) and ignore what the others have
	// to trade. The data goes to disk as it comes, so no cap is needed.
	cc.MaxUnverifiedBytes = 0
	// Every peer advertises how many requests it queues (1024 for this
	// client), and the client keeps up to that many outstanding. A deep queue
	// at the origin is served in no particular order, so near the end of a
	// host's share it holds other hosts' pieces that the origin then sends
	// twice. Asking for at most maxPeerRequests chunks per peer (1 MiB)
	// still keeps a 10 Gbit/s link busy at a millisecond's round trip.
	if !cfg.GrowPipeline {
		cc.Callbacks.ReadExtendedHandshake = func(_ *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
			// The client reads Reqq after this callback.
			if m.Reqq == 0 || m.Reqq > maxPeerRequests {
				m.Reqq = maxPeerRequests
			}
		}
	}
	// The upload cap is applied to the connections themselves (pace.go);
	// the client's TCP is off and the swarm brings its own listener and
	// dialer.
	up := newUploads()
	cc.Callbacks.PeerConnAdded = append(cc.Callbacks.PeerConnAdded, up.add)
	cc.DisableTCP = true
	var upload, down *rate.Limiter
	if cfg.UploadRate > 0 {
		upload = rate.NewLimiter(rate.Limit(cfg.UploadRate), uploadBurst)
	}
	if cfg.DownloadRate > 0 {
		// A zero burst lets the client choose one that fits its reads.
		down = rate.NewLimiter(rate.Limit(cfg.DownloadRate), 0)
		cc.DownloadRateLimiter = down
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("new swarm: %w", err)
	}
	cl, err := torrent.NewClient(cc)
	if err != nil {
		ln.Close()
		store.Close()
		return nil, fmt.Errorf("new swarm: listen %s: %w", cfg.Listen, err)
	}
	cl.AddListener(pacedListener{Listener: ln, lim: upload})
	cl.AddDialer(&pacedDialer{lim: upload})
	return &Swarm{
		cfg:      cfg,
		log:      logger,
		slog:     slogger,
		cl:       cl,
		ln:       ln,
		pc:       pc,
		store:    store,
		torrents: make(map[metainfo.Hash]*swarmTorrent),
		uploads:  up,
		down:     down,
	}, nil
}

// PeerIDPrefix begins the peer ID of every dcroll swarm (BEP 20), so that
// peer lists and packet captures say what a peer is.
const PeerIDPrefix = "-DC0100-"

// uploadBurst is the upload limiter's burst: a few 16 KiB chunks.
const uploadBurst = 256 << 10

// maxPeerRequests is how many 16 KiB chunks the swarm asks a peer for at
// once.
const maxPeerRequests = 64

// downloadDir keeps each download in DataDir/<infohash>/<name>, so two
// releases with the same name never share a file.
func downloadDir(baseDir string, _ *metainfo.Info, ih metainfo.Hash) string {
	return filepath.Join(baseDir, ih.HexString())
}

// Addr is the address peers connect to, host:port.
func (s *Swarm) Addr() string {
	addrs := s.cl.ListenAddrs()
	if len(addrs) == 0 {
		return ""
	}
	return addrs[0].String()
}

// Seed makes the swarm serve the release described by mi from file, which
// must already be verified: its pieces are trusted without hashing them.
func (s *Swarm) Seed(mi []byte, file string) error {
	m, info, err := parseMetainfo(mi, MaxMetainfoBytes, "")
	if err != nil {
		return fmt.Errorf("seed %s: %w", file, err)
	}
	return s.seed(m, info, file, nil)
}

func (s *Swarm) seed(m *metainfo.MetaInfo, info *metainfo.Info, file string, peers []torrent.PeerInfo) error {
	ih := m.HashInfoBytes()
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("seed %s: %w", ih.HexString(), err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != info.Length {
		return fmt.Errorf("seed %s: %w: %s is not a regular file of %d bytes", ih.HexString(), ErrMismatch, file, info.Length)
	}
	// The file was verified against the manifest's sha256, so every piece
	// starts complete; hashing a multi-GB file at each start would be waste.
	pc := storage.NewMapPieceCompletion()
	for i := range info.NumPieces() {
		pc.Set(metainfo.PieceKey{InfoHash: ih, Index: i}, true)
	}
	base := filepath.Base(file)
	st := storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   filepath.Dir(file),
		FilePathMaker:   func(storage.FilePathMakerOpts) string { return base },
		PieceCompletion: pc,
		UsePartFiles:    g.Some(false),
		Logger:          s.slog,
	})

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.torrents[ih]; ok {
		st.Close()
		return fmt.Errorf("seed %s: torrent already in the swarm", ih.HexString())
	}
	// A download an earlier Swarm finished and linked to the artifact is
	// another name for file; it would outlive the artifact's removal.
	if d := downloadDir(s.cfg.DataDir, info, ih); s.sameFileIn(d, info.Name, file) {
		s.removeLinked(ih, info.NumPieces())
	}
	t, _ := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: m.InfoBytes, Storage: st})
	s.torrents[ih] = &swarmTorrent{t: t, seed: st, file: file}
	t.AddPeers(peers)
	s.log.Debug("seeding", "infohash", ih.HexString(), "file", file)
	return nil
}

// sameFileIn reports whether dir/name is the same file as file.
func (s *Swarm) sameFileIn(dir, name, file string) bool {
	a, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return false
	}
	b, err := os.Stat(file)
	return err == nil && os.SameFile(a, b)
}

// Fetch downloads the release a described by mi from peers (host:port, the
// host a name or an address) into DataDir, verifies its size and sha256
// against a, installs it at dst (a hard link of the download where the file
// system allows, else a move) and keeps seeding it. a's http(s) URLs are web
// seeds: the pieces no peer gives come from them (webseed.go). An interrupted
// Fetch resumes, in this or a later Swarm with the same DataDir, without
// fetching verified pieces again. Peers named, none of which resolves, are
// an ErrNoPeers.
func (s *Swarm) Fetch(ctx context.Context, a Artifact, mi []byte, peers []string, dst string, share Share) error {
	if err := validateContent(a); err != nil {
		return err
	}
	m, info, err := parseMetainfo(mi, MaxMetainfoBytes, "")
	if err != nil {
		return fmt.Errorf("fetch %s %s: %w", a.Service, a.Version, err)
	}
	ih := m.HashInfoBytes()
	name := fmt.Sprintf("%s %s torrent %s", a.Service, a.Version, ih.HexString())
	if info.Length != a.Size {
		return fmt.Errorf("fetch %s: %w: metainfo length %d, artifact size %d", name, ErrBadArtifact, info.Length, a.Size)
	}
	dir := downloadDir(s.cfg.DataDir, info, ih)
	data := filepath.Join(dir, info.Name)
	addrs, err := s.resolve(ctx, peers)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}

	s.mu.Lock()
	if st, ok := s.torrents[ih]; ok {
		seeding, file := st.seeding(), st.file // set by a Fetch, under mu
		s.mu.Unlock()
		if !seeding {
			return fmt.Errorf("fetch %s: already being fetched", name)
		}
		// Already seeding it from a verified file: copy that.
		return copyFile(a, file, dst, name)
	}
	// The completion database can only be trusted about a file that is
	// there; a previous Fetch moved it away, or someone removed it.
	if _, err := os.Stat(data); errors.Is(err, fs.ErrNotExist) {
		s.forgetPieces(ih, info.NumPieces())
	}
	t, _ := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: m.InfoBytes})
	st := &swarmTorrent{t: t, origin: &originCounters{}}
	s.torrents[ih] = st
	s.mu.Unlock()

	t.AddPeers(addrs)
	t.DownloadAll()
	spreadPieces(t, share, s.cfg.ShareFromBack)
	s.log.Debug("fetching", "torrent", name, "peers", len(peers), "addresses", len(addrs))
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	refreshed, seeded := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(refreshed)
		s.refreshPeers(refreshCtx, t, peers)
	}()
	if seeds := webSeeds(a.URLs); len(seeds) > 0 {
		ws := newWebSeed(t, info, seeds, share, s.cfg, s.down, st.origin, s.log.Named("webseed"))
		go func() {
			defer close(seeded)
			ws.run(refreshCtx, s.cfg.OriginRequests)
		}()
	} else {
		close(seeded)
	}
	// The refresh and the web seed end before the torrent is dropped or
	// its file moved, and before Fetch returns, so they never touch a
	// torrent a later Fetch or Seed of the same release owns, nor write
	// to a file that is gone.
	stopAux := sync.OnceFunc(func() {
		stopRefresh()
		<-refreshed
		<-seeded
	})
	defer stopAux()

	// Pieces are hash-checked, so a complete torrent differs from the
	// artifact only if the metainfo does, or if the completion database
	// claimed pieces the disk lost (it is not synced). Rehashing every piece
	// once tells the two apart.
	for attempt := 0; ; attempt++ {
		if err := s.waitComplete(ctx, t, name); err != nil {
			stopAux()
			s.Drop(ih.HexString())
			return err
		}
		err := Verify(data, a)
		if err == nil {
			break
		}
		if attempt > 0 || !errors.Is(err, ErrMismatch) {
			stopAux()
			s.Drop(ih.HexString())
			return fmt.Errorf("fetch %s: %w", name, err)
		}
		s.log.Warn("complete torrent fails verification; rehashing pieces", "torrent", name, "error", err)
		if err := t.VerifyDataContext(ctx); err != nil {
			stopAux()
			s.Drop(ih.HexString())
			return fmt.Errorf("fetch %s: rehash: %w", name, err)
		}
	}
	stopAux()

	// The verified file is installed at dst as a hard link, and the
	// torrent goes on seeding it as it is: its peers stay connected.
	err = linkVerified(data, dst, name, s.cfg.DropCache)
	if err == nil {
		s.mu.Lock()
		st.linked, st.file = true, dst
		s.mu.Unlock()
		return nil
	}
	s.log.Debug("cannot link the download to its destination; moving it", "torrent", name, "error", err)

	// Swap the download for a seed of dst: the verified file moves instead
	// of being copied, and the swarm serves it from where it now lives.
	s.mu.Lock()
	stats := t.Stats()
	st.read += stats.BytesReadData.Int64()
	st.written += stats.BytesWrittenData.Int64()
	t.Drop()
	delete(s.torrents, ih)
	s.mu.Unlock()

	if err := moveVerified(a, data, dst, name, s.cfg.DropCache); err != nil {
		return err
	}
	s.forgetPieces(ih, info.NumPieces())
	os.Remove(dir)
	if err := s.seed(m, info, dst, addrs); err != nil {
		// dst holds the verified artifact, which is what the caller asked
		// for; not seeding it only costs the other hosts some speed.
		s.log.Warn("cannot seed fetched artifact", "torrent", name, "error", err)
		return nil
	}
	s.mu.Lock()
	if nst, ok := s.torrents[ih]; ok {
		nst.read, nst.written = st.read, st.written
	}
	s.mu.Unlock()
	return nil
}

func (s *Swarm) waitComplete(ctx context.Context, t *torrent.Torrent, name string) error {
	select {
	case <-t.Complete().On():
		return nil
	case <-t.Closed():
		return fmt.Errorf("fetch %s: %w", name, ErrSwarmClosed)
	case <-ctx.Done():
		return fmt.Errorf("fetch %s: %w", name, context.Cause(ctx))
	}
}

// copyFile installs a verified copy of file at dst.
func copyFile(a Artifact, file, dst, name string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	defer f.Close()
	return install(a, dst, name, f)
}

// linkVerified makes dst a hard link of the verified file data, durably:
// both names are then the same file, and the download in DataDir keeps
// seeding it. It fails where the two are on different file systems, or
// dst exists. With dropCache, the file's pages leave the page cache once
// they are on disk.
func linkVerified(data, dst, name string, dropCache bool) error {
	f, err := os.Open(data)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fetch %s: sync: %w", name, err)
	}
	if dropCache {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	if err := os.Link(data, dst); err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// moveVerified renames the verified file data to dst, durably, falling back
// to a verifying copy when they are on different file systems. With
// dropCache, the file's pages leave the page cache once they are on disk.
func moveVerified(a Artifact, data, dst, name string, dropCache bool) error {
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	err = f.Sync()
	if err != nil {
		f.Close()
		return fmt.Errorf("fetch %s: sync: %w", name, err)
	}
	if dropCache {
		// Only clean pages can be dropped, hence after the sync; the
		// advice is best effort.
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	if err := os.Rename(data, dst); err == nil {
		f.Close()
		if d, err := os.Open(filepath.Dir(dst)); err == nil {
			d.Sync()
			d.Close()
		}
		return nil
	}
	defer f.Close()
	if err := install(a, dst, name, f); err != nil {
		return err
	}
	os.Remove(data)
	return nil
}

// forgetPieces marks every piece of ih incomplete in the completion database.
func (s *Swarm) forgetPieces(ih metainfo.Hash, n int) {
	for i := range n {
		if err := s.pc.Set(metainfo.PieceKey{InfoHash: ih, Index: i}, false); err != nil {
			s.log.Warn("cannot reset piece completion", "infohash", ih.HexString(), "error", err)
			return
		}
	}
}

// Stats reports the data bytes received from and sent to peers for the
// torrent with the given hex infohash, and how many peers are connected.
func (s *Swarm) Stats(infohash string) (bytesRead, bytesWritten int64, peers int) {
	ih, ok := parseInfohash(infohash)
	if !ok {
		return 0, 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.torrents[ih]
	if !ok {
		return 0, 0, 0
	}
	ts := st.t.Stats()
	return st.read + ts.BytesReadData.Int64(), st.written + ts.BytesWrittenData.Int64(), ts.ActivePeers
}

// FromOrigin reports what fetches of the torrent with the given hex
// infohash took from web seeds, in this Swarm.
func (s *Swarm) FromOrigin(infohash string) OriginStats {
	ih, ok := parseInfohash(infohash)
	if !ok {
		return OriginStats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.torrents[ih]
	if !ok {
		return OriginStats{}
	}
	return st.origin.stats()
}

// webSeeds are the http(s) URLs among urls.
func webSeeds(urls []string) []string {
	var out []string
	for _, u := range urls {
		if isHTTPURL(u) {
			out = append(out, u)
		}
	}
	return out
}

// Uploaded returns the data bytes this swarm has sent to peers, over every
// torrent, since it started.
func (s *Swarm) Uploaded() int64 {
	st := s.cl.ConnStats()
	return st.BytesWrittenData.Int64()
}

// UploadedTo returns how many distinct peers this swarm has sent data of
// the torrent with the given hex infohash to, connected or not any more.
func (s *Swarm) UploadedTo(infohash string) int {
	ih, ok := parseInfohash(infohash)
	if !ok {
		return 0
	}
	s.mu.Lock()
	st, ok := s.torrents[ih]
	s.mu.Unlock()
	if !ok {
		return 0
	}
	return s.uploads.count(st.t)
}

// Drop stops fetching or seeding the torrent with the given hex infohash. The
// data of a partial download stays in DataDir for a later Fetch to resume;
// that of a finished one, which the artifact installed by Fetch holds too,
// goes.
func (s *Swarm) Drop(infohash string) {
	ih, ok := parseInfohash(infohash)
	if !ok {
		return
	}
	s.mu.Lock()
	st, ok := s.torrents[ih]
	delete(s.torrents, ih)
	linked := ok && st.linked
	s.mu.Unlock()
	if !ok {
		return
	}
	s.uploads.forget(ih)
	st.t.Drop()
	if st.seed != nil {
		st.seed.Close()
	}
	if linked {
		s.removeLinked(ih, st.t.NumPieces())
	}
}

// removeLinked removes the download of ih from DataDir once the artifact it
// is a hard link of is installed: nothing is left to resume.
func (s *Swarm) removeLinked(ih metainfo.Hash, pieces int) {
	if err := os.RemoveAll(downloadDir(s.cfg.DataDir, nil, ih)); err != nil {
		s.log.Warn("cannot remove a finished download", "infohash", ih.HexString(), "error", err)
		return
	}
	s.forgetPieces(ih, pieces)
}

// Close stops all transfers and closes the listener and the completion
// database. Fetches in progress return ErrSwarmClosed.
func (s *Swarm) Close() error {
	errs := s.cl.Close()
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	s.mu.Lock()
	for ih, st := range s.torrents {
		if st.seed != nil {
			errs = append(errs, st.seed.Close())
		}
		delete(s.torrents, ih)
	}
	s.mu.Unlock()
	errs = append(errs, s.store.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close swarm: %w", err)
	}
	return nil
}

func parseInfohash(s string) (metainfo.Hash, bool) {
	var ih metainfo.Hash
	return ih, ih.FromHexString(s) == nil
}

// ErrNoPeers means a Fetch was given peers but none of their names resolves.
var ErrNoPeers = errors.New("fetch: no peer address resolves")

// resolve turns peers (host:port) into the addresses the client dials: it
// takes only IP addresses, and drops a peer named by a host name without a
// word. A name that does not resolve is logged and skipped; when peers were
// given and none resolves, the error, an ErrNoPeers, names them.
func (s *Swarm) resolve(ctx context.Context, peers []string) ([]torrent.PeerInfo, error) {
	var ps []torrent.PeerInfo
	var errs []error
	for _, p := range peers {
		host, portStr, err := net.SplitHostPort(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			errs = append(errs, fmt.Errorf("%s: bad port", p))
			continue
		}
		ips, err := s.lookup(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		for _, ip := range ips {
			ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
			ps = append(ps, torrent.PeerInfo{Addr: torrent.StringAddr(ap.String()), Source: torrent.PeerSourceDirect})
		}
	}
	err := errors.Join(errs...)
	if err != nil && len(ps) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrNoPeers, err)
	}
	if err != nil {
		s.log.Warn("some peers do not resolve", "error", err)
	}
	return ps, nil
}

// lookup returns the addresses of host, an IP address or a name.
func (s *Swarm) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	return s.cfg.Resolver.LookupNetIP(ctx, "ip", host)
}

// refreshPeers resolves peers again every PeerRefresh until ctx ends and
// hands the addresses to t: a host whose name now points elsewhere is
// dialed at its new address, and one that could not be dialed before is
// tried again. The client skips peers it is connected to.
func (s *Swarm) refreshPeers(ctx context.Context, t *torrent.Torrent, peers []string) {
	if len(peers) == 0 {
		return
	}
	tick := time.NewTicker(s.cfg.PeerRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if addrs, err := s.resolve(ctx, peers); err == nil {
			t.AddPeers(addrs)
		} else if ctx.Err() == nil {
			s.log.Warn("no peer resolves", "error", err)
		}
	}
}

// validateContent is Artifact.Validate without the URL requirement: over
// BitTorrent the origins are peers, not URLs.
func validateContent(a Artifact) error {
	b := a
	b.URLs = []string{"http://peers.invalid/"}
	return b.Validate()
}

// SwarmFetcher is a Fetcher over a Swarm. Source supplies an artifact's
// metainfo and the peers to ask; in the agent they come from ZooKeeper.
type SwarmFetcher struct {
	Swarm  *Swarm
	Source func(ctx context.Context, a Artifact) (mi []byte, peers []string, err error)
	// Share is this host's place among the hosts fetching at the same time.
	Share Share
}

var _ Fetcher = SwarmFetcher{}

// Fetch looks up a's metainfo and peers and fetches it with the Swarm.
func (f SwarmFetcher) Fetch(ctx context.Context, a Artifact, dst string) error {
	mi, peers, err := f.Source(ctx, a)
	if err != nil {
		return fmt.Errorf("fetch %s %s: torrent source: %w", a.Service, a.Version, err)
	}
	return f.Swarm.Fetch(ctx, a, mi, peers, dst, f.Share)
}

// hclogHandler sends the BitTorrent client's slog records to hclog, one
// level lower: the client reports routine peer events at Info.
type hclogHandler struct {
	l      hclog.Logger
	attrs  []any
	prefix string
}

func (h hclogHandler) level(l slog.Level) hclog.Level {
	switch {
	case l >= slog.LevelError:
		return hclog.Error
	case l >= slog.LevelWarn:
		return hclog.Warn
	case l >= slog.LevelInfo:
		return hclog.Debug
	default:
		return hclog.Trace
	}
}

func (h hclogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.l.GetLevel() <= h.level(l)
}

func (h hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = append(args, h.prefix+a.Key, a.Value.Resolve().Any())
		return true
	})
	h.l.Log(h.level(r.Level), r.Message, args...)
	return nil
}

func (h hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.attrs = append([]any(nil), h.attrs...)
	for _, a := range attrs {
		h.attrs = append(h.attrs, h.prefix+a.Key, a.Value.Resolve().Any())
	}
	return h
}

func (h hclogHandler) WithGroup(name string) slog.Handler {
	if name != "" {
		h.prefix += name + "."
	}
	return h
}

// Has reports whether the swarm holds the torrent (downloading or seeding).
func (s *Swarm) Has(infohash string) bool {
	ih, ok := parseInfohash(infohash)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok = s.torrents[ih]
	return ok
}

// Share is a host's place among the Hosts hosts that fetch a release at the
// same time: Rank is its index, from 0, in an order all of them agree on.
// The zero Share says nothing is known.
type Share struct {
	Rank, Hosts int
}

func (sh Share) valid() bool {
	return sh.Hosts > 1 && sh.Rank >= 0 && sh.Rank < sh.Hosts
}

// pieceLevels are the priorities spreadPieces uses, lowest first.
var pieceLevels = []torrent.PiecePriority{
	torrent.PiecePriorityNormal, torrent.PiecePriorityHigh,
	torrent.PiecePriorityReadahead, torrent.PiecePriorityNext,
	torrent.PiecePriorityNow,
}

// spreadPieces sets the order in which the host asks for the pieces. The
// client requests pieces by priority, then rarity, then index; when many
// hosts start at once nothing is rarer than anything else yet, so without
// this they would all ask the origin for the same pieces first, and the
// origin, whose upload is the bottleneck, would send the same piece to
// several hosts.
//
// With a Share, the pieces are dealt out like cards: the host of rank r owns
// the pieces i with i mod n = r and asks for them first, so the origin sends
// each piece to one host only; the other hosts' pieces follow, the next
// host's first, so the hosts trade among themselves from the start. Without
// one, each piece gets one of the levels at random, and hosts that overlap
// by chance still trade much.
func spreadPieces(t *torrent.Torrent, sh Share, fromBack bool) {
	for i := range t.NumPieces() {
		level := rand.IntN(len(pieceLevels))
		switch {
		case sh.valid() && fromBack:
			level = backLevel(i, t.NumPieces(), sh)
		case sh.valid():
			level = shareLevel(i, sh)
		}
		t.Piece(i).SetPriority(pieceLevels[level])
	}
}

// backLevel is the index in pieceLevels of piece i of n for the host sh:
// the top one for its own pieces; below it, another host's pieces by their
// place in that host's share, the last quarter highest. Each owner asks
// the origin for its share from the front; a host that is done with its own
// asks for the others' from the back, so the two meet only at the end
// instead of asking the origin for the same pieces at once.
func backLevel(i, n int, sh Share) int {
	top := len(pieceLevels) - 1
	owner := i % sh.Hosts
	if owner == sh.Rank {
		return top
	}
	size := (n - owner + sh.Hosts - 1) / sh.Hosts // pieces in owner's share
	return (i / sh.Hosts) * top / size
}

// shareLevel is the index in pieceLevels of piece i for the host sh: the top
// one for its own pieces, then lower the further, counting ranks upwards,
// the piece's owner is from sh.Rank.
func shareLevel(i int, sh Share) int {
	top := len(pieceLevels) - 1
	d := (i%sh.Hosts - sh.Rank + sh.Hosts) % sh.Hosts
	if d == 0 {
		return top
	}
	return top - 1 - (d-1)*top/(sh.Hosts-1)
}
