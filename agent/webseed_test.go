package agent_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/testutil"
)

// countingResponse counts the body bytes a handler writes.
type countingResponse struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// A release staged as `stage --detach` stages it, with nobody seeding: the
// hosts take their shares of the pieces from the origin as a web seed and
// the rest from each other, so the origin sends it about once, not once
// per host; each host's metrics say how much came from where.
func TestIntegration_DetachedStageTakesTheOriginAsWebSeed(t *testing.T) {
	const n = 3
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "10s"), []string{"web"}, n)
	var sent atomic.Int64
	files := fetch.NewServer(f.artDir)
	f.origin.Close()
	f.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files.ServeHTTP(countingResponse{w, &sent}, r)
	}))
	t.Cleanup(f.origin.Close)
	f.startAll()
	f.webSeed = true
	f.payload = 4 << 20
	f.stage("web", "v2", false)
	m, err := f.admin.Manifest("web")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		q, err := f.admin.ReadyQueue("web")
		if err != nil {
			return err
		}
		if len(q) != n {
			return fmt.Errorf("ready queue %v, want all %d hosts", q, n)
		}
		return nil
	})
	if got := sent.Load(); float64(got) > 1.5*float64(m.Size) {
		t.Errorf("the origin sent %d bytes, %.2f times the release; want at most 1.5 (it sends %d without web seeds)", got, float64(got)/float64(m.Size), n)
	}
	for _, h := range f.hosts {
		testutil.Eventually(t, 30*time.Second, func() error {
			got, err := scrape(h.metrics)
			if err != nil {
				return err
			}
			return errors.Join(
				expect(got, "dcroll_fetch_bytes_total{service=web,source=origin}", positive, "its share from the origin"),
				expect(got, "dcroll_fetch_bytes_total{service=web,source=bittorrent}", positive, "the rest from peers"),
				expect(got, "dcroll_fetch_bytes_total{service=web,source=http_peer}", eq(0), "none"),
				expect(got, "dcroll_origin_whole_body_total{service=web}", eq(0), "none: the origin answers ranges"),
			)
		})
	}
	t.Logf("origin sent %d bytes for a release of %d", sent.Load(), m.Size)
}
