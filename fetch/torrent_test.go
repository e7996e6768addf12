package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/dcroll/dcroll/internal/classicio"
	"github.com/dcroll/dcroll/internal/memstat"
	"github.com/hashicorp/go-hclog"
)

const testPiece = 64 << 10

// testLogger discards logs unless DCROLL_TEST_TORRENT_LOG is set.
func testLogger(name string) hclog.Logger {
	if os.Getenv("DCROLL_TEST_TORRENT_LOG") == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Trace})
}

// newTestSwarm starts a swarm on listen (host:0), filling in a DataDir and a
// logger, and closes it when the test ends.
func newTestSwarm(t *testing.T, name, listen string, cfg SwarmConfig) *Swarm {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Listen = listen
	cfg.Logger = testLogger(name)
	s, err := NewSwarm(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// release writes n random bytes as a release file and returns its path, the
// artifact describing it, its metainfo and infohash.
func release(t *testing.T, n int) (path string, a Artifact, mi []byte, ih string) {
	t.Helper()
	path, data := writeRandom(t, t.TempDir(), "web-1.2.3.artifact", n)
	sum := sha256.Sum256(data)
	a = Artifact{Service: "web", Version: "1.2.3", Size: int64(n), SHA256: hex.EncodeToString(sum[:])}
	mi, ih, err := BuildMetainfo(path, "web-1.2.3.artifact", testPiece)
	if err != nil {
		t.Fatal(err)
	}
	return path, a, mi, ih
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// piecesComplete is how many pieces of ih s holds verified.
func piecesComplete(s *Swarm, ih string) int {
	h, _ := parseInfohash(ih)
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.torrents[h]
	if !ok {
		return 0
	}
	return st.t.Stats().PiecesComplete
}

func TestIntegration_SwarmSharesAmongPeers(t *testing.T) {
	const size = 8 << 20
	const fetchers = 4
	path, a, mi, ih := release(t, size)

	// The seeder's upload is capped well below what the fetchers can take,
	// so they finish sooner by trading pieces among themselves.
	seeder := newTestSwarm(t, "seeder", "127.0.0.1:0", SwarmConfig{UploadRate: 2 << 20})
	if err := seeder.Seed(mi, path); err != nil {
		t.Fatal(err)
	}
	swarms := make([]*Swarm, fetchers)
	for i := range swarms {
		swarms[i] = newTestSwarm(t, "fetcher", "127.0.0.1:0", SwarmConfig{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out := t.TempDir()
	dsts := make([]string, fetchers)
	errs := make([]error, fetchers)
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range swarms {
		peers := []string{seeder.Addr()}
		for j, o := range swarms {
			if j != i {
				peers = append(peers, o.Addr())
			}
		}
		dsts[i] = filepath.Join(out, "dst"+string(rune('a'+i)))
		wg.Go(func() { errs[i] = s.Fetch(ctx, a, mi, peers, dsts[i], Share{Rank: i, Hosts: fetchers}) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	var downloaded int64
	for i, s := range swarms {
		if errs[i] != nil {
			t.Fatalf("fetcher %d: %v", i, errs[i])
		}
		if err := Verify(dsts[i], a); err != nil {
			t.Errorf("fetcher %d: %v", i, err)
		}
		read, _, _ := s.Stats(ih)
		downloaded += read
	}
	_, uploaded, _ := seeder.Stats(ih)
	t.Logf("%d fetchers in %s: seeder uploaded %.1f MiB, fetchers downloaded %.1f MiB (%.2f)",
		fetchers, elapsed.Round(time.Millisecond), float64(uploaded)/(1<<20), float64(downloaded)/(1<<20),
		float64(uploaded)/float64(downloaded))
	if downloaded < fetchers*size {
		t.Errorf("fetchers downloaded %d bytes, less than %d", downloaded, fetchers*size)
	}
	if float64(uploaded) >= 0.75*float64(downloaded) {
		t.Errorf("seeder uploaded %d of %d bytes downloaded; peers did not share", uploaded, downloaded)
	}
	// Two peers that both hold every piece drop their connection: the
	// seeder ends connected to nobody, and still counts whom it sent to.
	waitFor(t, 20*time.Second, "the seeder's connections to close", func() bool {
		_, _, open := seeder.Stats(ih)
		return open == 0
	})
	if n := seeder.UploadedTo(ih); n < 1 || n > fetchers {
		t.Errorf("seeder uploaded to %d peers, want 1 to %d", n, fetchers)
	}

	// A fetcher now seeds its download, which dst is another name of: a
	// newcomer that only knows it gets the release, and the disk holds one
	// copy.
	// With a deadline of its own: on a loaded machine the first part may
	// have used most of the one above.
	ctx, cancel = context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	late := newTestSwarm(t, "late", "127.0.0.1:0", SwarmConfig{})
	lateDst := filepath.Join(out, "late")
	f := SwarmFetcher{Swarm: late, Source: func(context.Context, Artifact) ([]byte, []string, error) {
		return mi, []string{swarms[0].Addr()}, nil
	}}
	if err := f.Fetch(ctx, a, lateDst); err != nil {
		t.Fatal(err)
	}
	if err := Verify(lateDst, a); err != nil {
		t.Error(err)
	}
	if !sameFile(t, dsts[0], filepath.Join(swarms[0].cfg.DataDir, ih, "web-1.2.3.artifact")) {
		t.Error("the fetched artifact is not the file the fetcher seeds")
	}

	// Fetching what a swarm already seeds copies its file.
	copyDst := filepath.Join(out, "copy")
	if err := seeder.Fetch(ctx, a, mi, nil, copyDst, Share{}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(copyDst, a); err != nil {
		t.Error(err)
	}
}

func TestIntegration_SwarmIgnoresCorruptPeer(t *testing.T) {
	const size = 2 << 20
	path, a, mi, ih := release(t, size)

	// The bad peer claims every piece but serves every other one flipped.
	// It has its own address because the client bans bad peers by IP.
	bad, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < size; off += 2 * testPiece {
		bad[off+100] ^= 0xff
	}
	badPath := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(badPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	liar := newTestSwarm(t, "liar", "127.0.0.2:0", SwarmConfig{})
	if err := liar.Seed(mi, badPath); err != nil {
		t.Fatal(err)
	}
	// The good seeder is slow, so the fetcher asks the liar for much.
	good := newTestSwarm(t, "good", "127.0.0.1:0", SwarmConfig{UploadRate: 1 << 20})
	if err := good.Seed(mi, path); err != nil {
		t.Fatal(err)
	}
	fetcher := newTestSwarm(t, "fetcher", "127.0.0.1:0", SwarmConfig{})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "dst")
	if err := fetcher.Fetch(ctx, a, mi, []string{liar.Addr(), good.Addr()}, dst, Share{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != a.SHA256 {
		t.Fatalf("sha256 %x, want %s", sum, a.SHA256)
	}
	_, lied, _ := liar.Stats(ih)
	_, honest, _ := good.Stats(ih)
	banned := fetcher.cl.BadPeerIPs()
	t.Logf("liar sent %d KiB, good seeder %d KiB; fetcher banned %v", lied>>10, honest>>10, banned)
	if lied == 0 {
		t.Error("the liar sent nothing; the test did not exercise bad data")
	}
	// The client records a ban in both the IPv4 and the v4-in-v6 form.
	if len(banned) == 0 {
		t.Error("the liar was not banned")
	}
	for _, ip := range banned {
		if strings.TrimPrefix(ip, "::ffff:") != "127.0.0.2" {
			t.Errorf("banned %s, want only the liar's 127.0.0.2", ip)
		}
	}
}

func TestIntegration_SwarmResumes(t *testing.T) {
	const size = 4 << 20
	path, a, mi, ih := release(t, size)
	seeder := newTestSwarm(t, "seeder", "127.0.0.1:0", SwarmConfig{})
	if err := seeder.Seed(mi, path); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	dst := filepath.Join(t.TempDir(), "dst")

	// First run: slow, stopped once a good part has verified.
	first, err := NewSwarm(SwarmConfig{DataDir: dataDir, Listen: "127.0.0.1:0", DownloadRate: 512 << 10, Logger: testLogger("first")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Fetch(context.Background(), a, mi, []string{seeder.Addr()}, dst, Share{}) }()
	waitFor(t, 20*time.Second, "a third of the pieces", func() bool {
		return piecesComplete(first, ih) >= size/testPiece/3
	})
	verified := int64(piecesComplete(first, ih)) * testPiece
	read1, _, _ := first.Stats(ih)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrSwarmClosed) {
		t.Fatalf("interrupted fetch: got %v, want ErrSwarmClosed", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial download at dst: %v", err)
	}

	// Second run, same DataDir: only the missing pieces travel.
	second := newTestSwarm(t, "second", "127.0.0.1:0", SwarmConfig{DataDir: dataDir})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := second.Fetch(ctx, a, mi, []string{seeder.Addr()}, dst, Share{}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
	read2, _, _ := second.Stats(ih)
	t.Logf("size %d KiB: first run read %d KiB with %d KiB verified, second run read %d KiB",
		size>>10, read1>>10, verified>>10, read2>>10)
	if limit := size - verified + 4*testPiece; read2 >= limit {
		t.Errorf("second run read %d bytes, want < %d (size - verified + 4 pieces)", read2, limit)
	}
}

func TestSwarmFetchRejectsAndCancels(t *testing.T) {
	_, a, mi, _ := release(t, 300<<10)
	s := newTestSwarm(t, "s", "127.0.0.1:0", SwarmConfig{})
	dir := t.TempDir()
	dst := filepath.Join(dir, "dst")

	wrong := a
	wrong.Size++
	if err := s.Fetch(context.Background(), wrong, mi, nil, dst, Share{}); !errors.Is(err, ErrBadArtifact) {
		t.Errorf("size differing from metainfo: got %v, want ErrBadArtifact", err)
	}
	if err := s.Fetch(context.Background(), a, []byte("junk"), nil, dst, Share{}); !errors.Is(err, ErrBadArtifact) {
		t.Errorf("junk metainfo: got %v, want ErrBadArtifact", err)
	}
	noSum := a
	noSum.SHA256 = ""
	if err := s.Fetch(context.Background(), noSum, mi, nil, dst, Share{}); !errors.Is(err, ErrBadArtifact) {
		t.Errorf("no sha256: got %v, want ErrBadArtifact", err)
	}

	// Nobody to fetch from: the caller's deadline ends it, nothing at dst.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Fetch(ctx, a, mi, nil, dst, Share{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no peers: got %v, want DeadlineExceeded", err)
	}
	assertEmptyDir(t, dir)
}

func TestNewSwarmRejects(t *testing.T) {
	for _, cfg := range []SwarmConfig{
		{Listen: "127.0.0.1:0"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1:http"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1:0", UploadRate: -1},
	} {
		if s, err := NewSwarm(cfg); err == nil {
			s.Close()
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestBackLevel(t *testing.T) {
	top := len(pieceLevels) - 1
	for hosts := 2; hosts <= 12; hosts++ {
		for n := 1; n <= 5*hosts; n++ {
			for r := range hosts {
				sh := Share{Rank: r, Hosts: hosts}
				for i := range n {
					l := backLevel(i, n, sh)
					if l < 0 || l > top || (l == top) != (i%hosts == r) {
						t.Fatalf("hosts %d rank %d piece %d of %d: level %d", hosts, r, i, n, l)
					}
					// Within another host's share, later pieces come no
					// later.
					if j := i + hosts; j < n && i%hosts != r && backLevel(j, n, sh) < l {
						t.Errorf("hosts %d rank %d: piece %d at level %d, below piece %d", hosts, r, j, backLevel(j, n, sh), i)
					}
				}
			}
		}
	}
}

func TestShareLevel(t *testing.T) {
	top := len(pieceLevels) - 1
	for n := 2; n <= 12; n++ {
		for i := range 3 * n {
			owners := 0
			for r := range n {
				sh := Share{Rank: r, Hosts: n}
				l := shareLevel(i, sh)
				if l < 0 || l > top {
					t.Fatalf("n %d rank %d piece %d: level %d out of range", n, r, i, l)
				}
				if l == top {
					owners++
					if i%n != r {
						t.Errorf("n %d: piece %d is on top for rank %d", n, i, r)
					}
				}
				// The next rank's pieces come no later than the one after.
				if next := shareLevel(i+1, sh); i%n == r && n > 2 && next < shareLevel(i+2, sh) {
					t.Errorf("n %d rank %d: piece %d at level %d, below piece %d", n, r, i+1, next, i+2)
				}
			}
			if owners != 1 {
				t.Errorf("n %d: piece %d on top for %d ranks, want 1", n, i, owners)
			}
		}
	}
}

// TestIntegration_SwarmPeersByName fetches from peers named as dcroll names
// them by default, by host name: the seeder and the fetchers are known to
// each other only as localhost:PORT and as this machine's name.
func TestIntegration_SwarmPeersByName(t *testing.T) {
	const size = 2 << 20
	path, a, mi, ih := release(t, size)
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "localhost" {
		if _, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip4", h); err == nil {
			names = append(names, h)
		} else {
			t.Logf("this machine's name %s does not resolve; peers are named localhost only", h)
		}
	}
	// byName is the address a swarm on 127.0.0.1 is known by to its peers.
	byName := func(s *Swarm, i int) string {
		_, port, err := net.SplitHostPort(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return net.JoinHostPort(names[i%len(names)], port)
	}
	seeder := newTestSwarm(t, "seeder", "127.0.0.1:0", SwarmConfig{UploadRate: 1 << 20})
	if err := seeder.Seed(mi, path); err != nil {
		t.Fatal(err)
	}
	fetchers := []*Swarm{
		newTestSwarm(t, "fetcher0", "127.0.0.1:0", SwarmConfig{}),
		newTestSwarm(t, "fetcher1", "127.0.0.1:0", SwarmConfig{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := t.TempDir()
	errs := make([]error, len(fetchers))
	var wg sync.WaitGroup
	for i, f := range fetchers {
		peers := []string{byName(seeder, 0), byName(fetchers[1-i], 1)}
		t.Logf("fetcher %d: peers %v", i, peers)
		wg.Go(func() {
			errs[i] = f.Fetch(ctx, a, mi, peers, filepath.Join(out, fmt.Sprint(i)), Share{Rank: i, Hosts: len(fetchers)})
		})
	}
	wg.Wait()
	for i, f := range fetchers {
		if errs[i] != nil {
			t.Fatalf("fetcher %d: %v", i, errs[i])
		}
		if err := Verify(filepath.Join(out, fmt.Sprint(i)), a); err != nil {
			t.Error(err)
		}
		if read, _, _ := f.Stats(ih); read < size/2 {
			t.Errorf("fetcher %d read %d bytes from peers, want at least half the release (%d)", i, read, size/2)
		}
	}
}

// switchingResolver answers with one address until it has been asked
// first times, then with another: a host that moved.
type switchingResolver struct {
	mu          sync.Mutex
	asked       int
	first       int
	before, now netip.Addr
}

func (r *switchingResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if host != "origin.test" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r.asked++
	if r.asked <= r.first {
		return []netip.Addr{r.before}, nil
	}
	return []netip.Addr{r.now}, nil
}

func (r *switchingResolver) lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked
}

// TestIntegration_SwarmResolvesAgain names the seeder by a name that first
// points where nothing listens, then at the seeder: the fetch finds it by
// looking the name up again, and a name that never resolves fails at once.
func TestIntegration_SwarmResolvesAgain(t *testing.T) {
	path, a, mi, _ := release(t, 512<<10)
	seeder := newTestSwarm(t, "seeder", "127.0.0.1:0", SwarmConfig{})
	if err := seeder.Seed(mi, path); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(seeder.Addr())
	r := &switchingResolver{first: 2, before: netip.MustParseAddr("127.0.0.3"), now: netip.MustParseAddr("127.0.0.1")}
	fetcher := newTestSwarm(t, "fetcher", "127.0.0.1:0", SwarmConfig{Resolver: r, PeerRefresh: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "dst")
	if err := fetcher.Fetch(ctx, a, mi, []string{net.JoinHostPort("origin.test", port)}, dst, Share{}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
	if n := r.lookups(); n <= r.first {
		t.Errorf("the name was looked up %d times, want more than %d", n, r.first)
	}

	_, b, mi2, _ := release(t, 64<<10)
	err := fetcher.Fetch(ctx, b, mi2, []string{"nowhere.test:" + port}, filepath.Join(t.TempDir(), "dst"), Share{})
	if !errors.Is(err, ErrNoPeers) || !strings.Contains(err.Error(), "nowhere.test") {
		t.Errorf("fetch from a name that does not resolve: got %v, want ErrNoPeers naming it", err)
	}
}

// sameFile reports whether paths a and b name one file.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// oneFetch is a release that one swarm seeds for another to fetch into its
// DataDir, data, and install at dst.
type oneFetch struct {
	path, ih, data, dst string
	a                   Artifact
	mi                  []byte
	seeder, fetcher     *Swarm
}

// newOneFetch writes a release of size bytes and starts its seeder, with
// seederCfg, and a fetcher.
func newOneFetch(t *testing.T, size int, seederCfg SwarmConfig) *oneFetch {
	t.Helper()
	f := &oneFetch{data: t.TempDir(), dst: filepath.Join(t.TempDir(), "web.artifact")}
	f.path, f.a, f.mi, f.ih = release(t, size)
	f.seeder = newTestSwarm(t, "seeder", "127.0.0.1:0", seederCfg)
	if err := f.seeder.Seed(f.mi, f.path); err != nil {
		t.Fatal(err)
	}
	f.fetcher = newTestSwarm(t, "fetcher", "127.0.0.1:0", SwarmConfig{DataDir: f.data})
	return f
}

// run fetches the release from the seeder, within 30 seconds.
func (f *oneFetch) run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.fetcher.Fetch(ctx, f.a, f.mi, []string{f.seeder.Addr()}, f.dst, Share{})
}

// TestIntegration_SwarmSeedsWhatItFetched checks that a fetched release is
// seeded by the very torrent that fetched it: not dropped and added again,
// which would dial every peer anew. The installed artifact and the seeded
// download are one file; Drop removes the download and leaves the
// artifact, and a later Swarm seeding the artifact removes a download an
// earlier one left.
func TestIntegration_SwarmSeedsWhatItFetched(t *testing.T) {
	// A capped seeder makes the fetch last long enough to look at its
	// torrent while it runs.
	f := newOneFetch(t, 4<<20, SwarmConfig{UploadRate: 2 << 20})
	fetcher, ih, a, mi, data, dst := f.fetcher, f.ih, f.a, f.mi, f.data, f.dst
	h, _ := parseInfohash(ih)
	done := make(chan error, 1)
	go func() { done <- f.run() }()
	torrentOf := func() *torrent.Torrent {
		fetcher.mu.Lock()
		defer fetcher.mu.Unlock()
		if st, ok := fetcher.torrents[h]; ok {
			return st.t
		}
		return nil
	}
	waitFor(t, 10*time.Second, "the fetch to start", func() bool { return torrentOf() != nil })
	fetching := torrentOf()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if seeding := torrentOf(); seeding != fetching {
		t.Errorf("after the fetch the swarm seeds torrent %p, want %p, the one that fetched", seeding, fetching)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
	download := filepath.Join(data, ih, "web-1.2.3.artifact")
	if !sameFile(t, dst, download) {
		t.Error("the installed artifact is not the seeded download")
	}
	if id := fetcher.cl.PeerID(); !strings.HasPrefix(string(id[:]), PeerIDPrefix) {
		t.Errorf("peer ID %q, want the prefix %q", id[:], PeerIDPrefix)
	}

	// A restart: the next Swarm on the same DataDir seeds the artifact and
	// removes the old download's name for it.
	fetcher.Close()
	again := newTestSwarm(t, "again", "127.0.0.1:0", SwarmConfig{DataDir: data})
	if err := again.Seed(mi, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(download); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after seeding the artifact in a new swarm, the old download: %v; want it gone", err)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
}

// TestIntegration_SwarmDropRemovesFinishedDownload checks that dropping a
// fetched release takes its download out of DataDir, and leaves the
// installed artifact.
func TestIntegration_SwarmDropRemovesFinishedDownload(t *testing.T) {
	f := newOneFetch(t, 1<<20, SwarmConfig{})
	if err := f.run(); err != nil {
		t.Fatal(err)
	}
	fetcher, ih, a, data, dst := f.fetcher, f.ih, f.a, f.data, f.dst
	fetcher.Drop(ih)
	if ents, _ := os.ReadDir(data); len(ents) != 1 || ents[0].Name() != ".torrent.bolt.db" {
		t.Errorf("DataDir after Drop holds %v, want only the completion db", ents)
	}
	if err := Verify(dst, a); err != nil {
		t.Error(err)
	}
}

// TestIntegration_SwarmMapsNoFile checks that neither the seeder nor a
// fetcher holds a release's pages in its resident set once the fetch is
// done (internal/classicio): the bytes resident from mappings of the
// release's files are counted, and must be none.
func TestIntegration_SwarmMapsNoFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts mappings in Linux's /proc")
	}
	const size = 4 << 20
	f := newOneFetch(t, size, SwarmConfig{})
	if err := f.run(); err != nil {
		t.Fatal(err)
	}
	fetcher, ih, path, data, dst := f.fetcher, f.ih, f.path, f.data, f.dst
	if read, _, _ := fetcher.Stats(ih); read < size {
		t.Fatalf("fetcher read %d bytes from its peer, want %d", read, size)
	}
	// The completion database in data is mapped, and small; the release's
	// files are not.
	n, err := memstat.MappedResident(memstat.Self, path, filepath.Join(data, ih), dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d bytes of the release's files are resident in mappings (file I/O %s), want 0", n, classicio.Chosen())
	}
}
