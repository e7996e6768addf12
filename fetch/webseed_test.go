package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// origin is a real HTTP server of one file, as an artifact store is, that
// counts the body bytes it sends.
type origin struct {
	srv      *httptest.Server
	data     []byte
	sent     atomic.Int64
	requests atomic.Int64
	// open and maxOpen count the requests being answered at once.
	open, maxOpen atomic.Int64
	// noRanges answers every GET with 200 and the whole file; delay
	// holds each answer back before its first byte.
	noRanges bool
	delay    time.Duration
}

func newOrigin(t *testing.T, path string, configure func(*origin)) *origin {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{data: data}
	if configure != nil {
		configure(o)
	}
	o.srv = httptest.NewServer(o)
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) url() string { return o.srv.URL + "/web-1.2.3.tar.gz" }

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	n := o.open.Add(1)
	defer o.open.Add(-1)
	for m := o.maxOpen.Load(); n > m && !o.maxOpen.CompareAndSwap(m, n); m = o.maxOpen.Load() {
	}
	if o.delay > 0 {
		select {
		case <-time.After(o.delay):
		case <-r.Context().Done():
			return
		}
	}
	cw := &countingWriter{ResponseWriter: w, n: &o.sent}
	if o.noRanges {
		w.Header().Set("Content-Length", fmt.Sprint(len(o.data)))
		w.WriteHeader(http.StatusOK)
		cw.Write(o.data)
		return
	}
	// net/http's own range support: 206 with Content-Range.
	http.ServeContent(cw, r, "web-1.2.3.tar.gz", time.Time{}, bytes.NewReader(o.data))
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// fetchAll fetches a with one swarm per cfg, each knowing the others as
// peers and holding rank i of len(cfgs), and fails the test unless every
// copy arrives verified.
func fetchAll(t *testing.T, a Artifact, mi []byte, cfgs []SwarmConfig, share bool) []*Swarm {
	t.Helper()
	swarms := make([]*Swarm, len(cfgs))
	for i, cfg := range cfgs {
		swarms[i] = newTestSwarm(t, fmt.Sprintf("host%d", i), "127.0.0.1:0", cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := t.TempDir()
	errs := make([]error, len(swarms))
	var wg sync.WaitGroup
	for i, s := range swarms {
		var peers []string
		for j, o := range swarms {
			if j != i {
				peers = append(peers, o.Addr())
			}
		}
		sh := Share{}
		if share {
			sh = Share{Rank: i, Hosts: len(swarms)}
		}
		wg.Go(func() { errs[i] = s.Fetch(ctx, a, mi, peers, filepath.Join(out, fmt.Sprint(i)), sh) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		if err := Verify(filepath.Join(out, fmt.Sprint(i)), a); err != nil {
			t.Fatal(err)
		}
	}
	return swarms
}

// Hosts with no seeder at all get the release from a plain HTTP origin, and
// the origin sends each piece once: each host takes its own share from it
// and the rest from the others.
func TestIntegration_WebSeedSendsEachPieceOnce(t *testing.T) {
	const size, hosts = 4 << 20, 4
	path, a, mi, ih := release(t, size)
	o := newOrigin(t, path, nil)
	a.URLs = []string{o.url()}
	cfgs := make([]SwarmConfig, hosts)
	for i := range cfgs {
		// The others' shares never come from the origin in this test.
		cfgs[i] = SwarmConfig{OriginGrace: time.Hour}
	}
	swarms := fetchAll(t, a, mi, cfgs, true)
	if got := o.sent.Load(); got > size {
		t.Errorf("origin sent %d bytes (%.2f F); want at most F = %d: each piece once", got, float64(got)/size, size)
	}
	var pieces int64
	for i, s := range swarms {
		st := s.FromOrigin(ih)
		read, _, _ := s.Stats(ih)
		t.Logf("host %d: origin %+v, from peers %d bytes", i, st, read)
		if st.Pieces == 0 || read == 0 {
			t.Errorf("host %d took %d pieces from the origin and %d bytes from peers; want some of both", i, st.Pieces, read)
		}
		if st.WholeBody != 0 {
			t.Errorf("host %d counted %d whole-body answers from an origin that serves ranges", i, st.WholeBody)
		}
		pieces += st.Pieces
	}
	if n := int64((size + testPiece - 1) / testPiece); pieces > n {
		t.Errorf("the hosts took %d pieces from the origin; the release has %d", pieces, n)
	}
}

// A host alone in its share takes the other hosts' pieces from the origin
// once they have not come within the grace: a host that is gone does not
// hold the others up.
func TestIntegration_WebSeedTakesAbsentHostsShare(t *testing.T) {
	const size = 1 << 20
	path, a, mi, ih := release(t, size)
	o := newOrigin(t, path, nil)
	a.URLs = []string{o.url()}
	s := newTestSwarm(t, "alone", "127.0.0.1:0", SwarmConfig{OriginGrace: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "a")
	if err := s.Fetch(ctx, a, mi, nil, dst, Share{Rank: 1, Hosts: 3}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
	if got := o.sent.Load(); got != size {
		t.Errorf("origin sent %d bytes, want each piece once: %d", got, size)
	}
	if st := s.FromOrigin(ih); st.Bytes != size {
		t.Errorf("host counted %d bytes from the origin, want %d", st.Bytes, size)
	}
}

// An origin that ignores ranges (200 with the whole file) is read through
// once per host instead, and counted.
func TestIntegration_WebSeedOriginIgnoresRanges(t *testing.T) {
	const size, hosts = 2 << 20, 2
	path, a, mi, ih := release(t, size)
	o := newOrigin(t, path, func(o *origin) { o.noRanges = true })
	a.URLs = []string{o.url()}
	cfgs := make([]SwarmConfig, hosts)
	swarms := fetchAll(t, a, mi, cfgs, true)
	for i, s := range swarms {
		st := s.FromOrigin(ih)
		t.Logf("host %d: origin %+v", i, st)
		// One request learns that it ignores ranges, and its answer is
		// read through: no more.
		if st.WholeBody != 1 || st.Requests != 1 || st.Bytes > size {
			t.Errorf("host %d: %d whole-body answers, %d requests, %d bytes; want 1, 1 and at most %d", i, st.WholeBody, st.Requests, st.Bytes, size)
		}
	}
	if got := o.sent.Load(); got > hosts*size {
		t.Errorf("origin sent %d bytes, want at most one whole file per host (%d)", got, hosts*size)
	}
}

// An origin slow to send its first bytes still gives the release, each
// piece once.
func TestIntegration_WebSeedSlowFirstBytes(t *testing.T) {
	const size = 1 << 20
	path, a, mi, _ := release(t, size)
	o := newOrigin(t, path, func(o *origin) { o.delay = 100 * time.Millisecond })
	a.URLs = []string{o.url()}
	fetchAll(t, a, mi, []SwarmConfig{{}}, false)
	if got := o.sent.Load(); got != size {
		t.Errorf("origin sent %d bytes, want %d", got, size)
	}
}

// A host has at most OriginRequests ranged requests open to the origin at
// once.
func TestIntegration_WebSeedCapsRequests(t *testing.T) {
	const size = 1 << 20
	path, a, mi, _ := release(t, size)
	o := newOrigin(t, path, func(o *origin) { o.delay = 20 * time.Millisecond })
	a.URLs = []string{o.url()}
	fetchAll(t, a, mi, []SwarmConfig{{OriginRequests: 2}}, false)
	if m := o.maxOpen.Load(); m < 1 || m > 2 {
		t.Errorf("the origin answered %d requests at once, want 1 to 2 (OriginRequests)", m)
	}
	t.Logf("%d requests, at most %d at once", o.requests.Load(), o.maxOpen.Load())
}

// An origin that redirects to a storage host is followed there only if
// OriginRedirectHosts names it.
func TestIntegration_WebSeedRedirects(t *testing.T) {
	const size = 1 << 20
	path, a, mi, ih := release(t, size)
	storage := newOrigin(t, path, nil)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, storage.url(), http.StatusFound)
	}))
	t.Cleanup(front.Close)
	a.URLs = []string{front.URL + "/web-1.2.3.tar.gz"}

	t.Run("refused", func(t *testing.T) {
		s := newTestSwarm(t, "host", "127.0.0.1:0", SwarmConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- s.Fetch(ctx, a, mi, nil, filepath.Join(t.TempDir(), "a"), Share{}) }()
		waitFor(t, 30*time.Second, "a failed web seed request", func() bool { return s.FromOrigin(ih).Failures > 0 })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("fetch: %v, want it cancelled", err)
		}
		if n := storage.requests.Load(); n != 0 {
			t.Errorf("storage host got %d requests through a redirect not allowed", n)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		u, _ := url.Parse(storage.srv.URL)
		fetchAll(t, a, mi, []SwarmConfig{{OriginRedirectHosts: []string{u.Host}}}, false)
		if got := storage.sent.Load(); got != size {
			t.Errorf("storage host sent %d bytes, want %d", got, size)
		}
	})
}

// An origin that sends other bytes than the release's is caught by the
// piece hashes; the next origin gives the release.
func TestIntegration_WebSeedBadOrigin(t *testing.T) {
	const size = 1 << 20
	path, a, mi, ih := release(t, size)
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, bytes.Repeat([]byte{7}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong, good := newOrigin(t, bad, nil), newOrigin(t, path, nil)
	a.URLs = []string{wrong.url(), good.url()}
	swarms := fetchAll(t, a, mi, []SwarmConfig{{}}, false)
	if st := swarms[0].FromOrigin(ih); st.Failures == 0 {
		t.Errorf("no failure counted for the wrong origin: %+v", st)
	}
}

func TestBackupRank(t *testing.T) {
	for hosts := 2; hosts <= 9; hosts++ {
		for owner := range hosts {
			seen := map[int]int{}
			for k := range 10 * (hosts - 1) {
				i := owner + k*hosts
				b := backupRank(i, Share{Rank: 0, Hosts: hosts})
				if b == owner || b < 0 || b >= hosts {
					t.Fatalf("hosts %d: piece %d of owner %d backed up by %d", hosts, i, owner, b)
				}
				seen[b]++
			}
			// The owner's pieces go round every other host alike.
			for r := range hosts {
				if r != owner && seen[r] != 10 {
					t.Errorf("hosts %d owner %d: host %d backs up %d pieces of 10(hosts-1), want 10", hosts, owner, r, seen[r])
				}
			}
		}
	}
}

func TestCheckContentRange(t *testing.T) {
	for _, c := range []struct {
		h  string
		ok bool
	}{
		{"bytes 10-19/100", true},
		{"bytes 10-19/*", true},
		{"bytes 10-20/100", false},
		{"bytes 0-9/100", false},
		{"bytes 10-19/99", false},
		{"", false},
	} {
		if err := checkContentRange(c.h, 10, 10, 100); (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok %v", c.h, err, c.ok)
		}
	}
}
