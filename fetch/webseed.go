package fetch

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"
)

// A web seed (the role of BEP 19) is an HTTP origin of a release, such as an
// artifact store, that a BitTorrent fetch takes pieces from with ranged
// requests when no peer can give them. dcroll asks for them itself rather
// than through anacrolix/torrent's web seeds: in v1.59.1 the library asks
// for aligned 64 MiB spans and reads on while any piece in the next 48 KiB
// is wanted, whether or not a peer has it, so every host would take most of
// the release from the origin; its cap on requests per host is read once
// from an environment variable; and an origin that ignores ranges gets the
// whole body asked for again and again. Here each piece is asked for by
// itself, checked against its SHA-1 before it is written, and handed to the
// client, which checks it again and offers it to the peers.
//
// Which pieces a host takes from the origin: first its own share (see
// Share), which no other host asks the origin for; then, once its own share
// is done and OriginGrace has passed, the pieces of another host's share
// that no connected peer has, dealt out among the other hosts (a host that
// is gone or stuck leaves its share to them); and after twice OriginGrace,
// any piece no peer has. Twice, not more: the agent gives a BitTorrent
// fetch up after 30 s without a byte, and a host whose backup pieces are
// done waits for the rest without one. A piece a connected peer has is left
// to BitTorrent; one partly received from a peer that has gone is taken
// whole.

// DefaultOriginRequests is how many ranged requests a host has open to the
// web seeds at once by default (SwarmConfig.OriginRequests).
const DefaultOriginRequests = 4

// DefaultOriginGrace is how long, by default, a host that has its own
// share of the pieces waits for the other hosts' before it takes them from
// the origin.
const DefaultOriginGrace = 10 * time.Second

// originBufferBudget bounds the memory a fetch holds in pieces read from
// the origin and not yet checked: with large pieces, fewer requests are open
// at once than OriginRequests.
const originBufferBudget = 64 << 20

// originBackoff is how long an origin that failed is left alone, doubling
// with each failure in a row up to originMaxBackoff.
const (
	originBackoff    = time.Second
	originMaxBackoff = 30 * time.Second
)

// webSeedPoll is how often an idle web seed worker looks again for a piece
// to take from the origin.
const webSeedPoll = 200 * time.Millisecond

// OriginStats counts what a fetch took from its web seeds.
type OriginStats struct {
	// Bytes is every body byte received from the origins, discarded ones
	// included.
	Bytes int64
	// Pieces is how many pieces came from the origins and passed the hash
	// check.
	Pieces int64
	// Requests counts the HTTP requests made, Failures those that gave no
	// piece (an error, a bad status, a bad piece).
	Requests, Failures int64
	// WholeBody counts answers of 200 with the whole file to a ranged
	// request: an origin that ignores ranges, read through once instead.
	WholeBody int64
}

// originCounters are the live counters behind OriginStats.
type originCounters struct {
	bytes, pieces, requests, failures, wholeBody atomic.Int64
}

func (c *originCounters) stats() OriginStats {
	if c == nil {
		return OriginStats{}
	}
	return OriginStats{Bytes: c.bytes.Load(), Pieces: c.pieces.Load(), Requests: c.requests.Load(),
		Failures: c.failures.Load(), WholeBody: c.wholeBody.Load()}
}

// webSeed takes the pieces of one torrent that no peer gives from the
// origins, for one Fetch.
type webSeed struct {
	t      *torrent.Torrent
	info   *metainfo.Info
	urls   []string
	share  Share
	client *http.Client
	down   *rate.Limiter // the host's download cap; nil: none
	grace  time.Duration
	count  *originCounters
	log    hclog.Logger
	order  []int // the host's own pieces, in the order it asks for them

	mu       sync.Mutex
	inflight map[int]bool
	origins  map[string]*originState
	ownDone  time.Time // when the host first had every piece of its share
}

// originState is what a fetch knows of one origin.
type originState struct {
	failures  int
	until     time.Time // left alone until then
	ranged    bool      // answered a range with 206
	noRanges  bool      // answered a range with the whole body
	streaming bool      // a worker is reading the whole body
	open      int       // requests open to it
}

// webSeedWork is one piece to ask for, or a whole body to read.
type webSeedWork struct {
	url   string
	piece int  // -1 with whole
	whole bool // read the whole body of an origin that ignores ranges
}

func newWebSeed(t *torrent.Torrent, info *metainfo.Info, urls []string, share Share, cfg SwarmConfig, down *rate.Limiter, count *originCounters, log hclog.Logger) *webSeed {
	client := cfg.OriginClient
	if client == nil {
		client = defaultClient
	}
	ws := &webSeed{
		t: t, info: info, urls: urls, share: share,
		client:   redirectsTo(client, cfg.OriginRedirectHosts),
		down:     down,
		grace:    cfg.OriginGrace,
		count:    count,
		log:      log,
		inflight: map[int]bool{},
		origins:  map[string]*originState{},
	}
	n := info.NumPieces()
	if share.valid() {
		for i := share.Rank; i < n; i += share.Hosts {
			ws.order = append(ws.order, i)
		}
	} else {
		// Nothing known of the other hosts: every piece is this host's,
		// in an order of its own, so that hosts that start together still
		// take different pieces first and trade the rest.
		ws.order = rand.Perm(n)
	}
	for _, u := range urls {
		ws.origins[u] = &originState{}
	}
	return ws
}

// run takes pieces from the origins until the torrent is complete or ctx
// ends, with at most conc requests open at once.
func (ws *webSeed) run(ctx context.Context, conc int) {
	if l := ws.info.PieceLength; l > 0 {
		conc = max(1, min(conc, int(originBufferBudget/l)))
	}
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() { ws.worker(ctx) })
	}
	wg.Wait()
}

func (ws *webSeed) worker(ctx context.Context) {
	tick := time.NewTicker(webSeedPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ws.t.Complete().On():
			return
		default:
		}
		w, ok := ws.pick()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-ws.t.Complete().On():
				return
			case <-tick.C:
			}
			continue
		}
		err := ws.do(ctx, w)
		ws.done(w, err)
		if err != nil && ctx.Err() == nil && !errors.Is(err, errNoRanges) {
			ws.count.failures.Add(1)
			ws.log.Warn("web seed request failed", "origin", redact(w.url), "piece", w.piece, "error", err)
		}
	}
}

// pick chooses the next piece to take from an origin, if any should be.
func (ws *webSeed) pick() (webSeedWork, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	now := time.Now()
	url, st := ws.origin(now)
	if url == "" {
		return webSeedWork{}, false
	}
	// Read under ws.mu: a piece another worker has just delivered is
	// complete by now, not only out of flight.
	complete := ws.pieceStates()
	peers := ws.peerPieces()
	i, ok := ws.choose(now, complete, peers)
	if !ok {
		return webSeedWork{}, false
	}
	st.open++
	if st.noRanges {
		// One read of the whole body gives every piece; no other request
		// to that origin meanwhile.
		st.streaming = true
		return webSeedWork{url: url, piece: -1, whole: true}, true
	}
	ws.inflight[i] = true
	return webSeedWork{url: url, piece: i}, true
}

// choose returns the piece to take from the origin next, if any. ws.mu is
// held.
func (ws *webSeed) choose(now time.Time, complete, peers []bool) (int, bool) {
	wanted := func(i int) bool {
		return !complete[i] && !ws.inflight[i] && !peers[i]
	}
	ownLeft := false
	for _, i := range ws.order {
		if complete[i] {
			continue
		}
		ownLeft = true
		if wanted(i) {
			return i, true
		}
	}
	if ownLeft || !ws.share.valid() {
		return 0, false
	}
	if ws.ownDone.IsZero() {
		ws.ownDone = now
	}
	waited := now.Sub(ws.ownDone)
	if waited < ws.grace {
		return 0, false
	}
	n := len(complete)
	for i := range n {
		if wanted(i) && backupRank(i, ws.share) == ws.share.Rank {
			return i, true
		}
	}
	if waited < 2*ws.grace {
		return 0, false
	}
	// From a place of the host's own, so hosts that get here together
	// take different pieces first.
	for k := range n {
		if i := (k + ws.share.Rank*n/ws.share.Hosts) % n; wanted(i) {
			return i, true
		}
	}
	return 0, false
}

// backupRank is the host that takes piece i from the origin when its owner
// in sh has not: the owner's pieces go round the other hosts in turn.
func backupRank(i int, sh Share) int {
	owner := i % sh.Hosts
	return (owner + 1 + (i/sh.Hosts)%(sh.Hosts-1)) % sh.Hosts
}

// origin returns the first origin, in the manifest's order, that can take
// a request now; "" if none can. ws.mu is held.
func (ws *webSeed) origin(now time.Time) (string, *originState) {
	for _, u := range ws.urls {
		st := ws.origins[u]
		// Until it has answered a range with 206, one request at a
		// time: an origin that ignores ranges sends the whole file to
		// each.
		if now.Before(st.until) || st.streaming || (!st.ranged && st.open > 0) {
			continue
		}
		return u, st
	}
	return "", nil
}

// done records the outcome of w.
func (ws *webSeed) done(w webSeedWork, err error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w.piece >= 0 {
		delete(ws.inflight, w.piece)
	}
	st := ws.origins[w.url]
	st.open--
	if w.whole {
		st.streaming = false
	}
	switch {
	case errors.Is(err, errNoRanges):
		// Not a failure: another request reads it whole.
	case err != nil:
		st.failures++
		st.until = time.Now().Add(min(originBackoff<<min(st.failures-1, 5), originMaxBackoff))
	default:
		st.failures = 0
	}
}

// pieceStates returns which pieces are complete.
func (ws *webSeed) pieceStates() []bool {
	n := ws.info.NumPieces()
	complete := make([]bool, 0, n)
	for _, r := range ws.t.PieceStateRuns() {
		for range r.Length {
			complete = append(complete, r.Complete)
		}
	}
	for len(complete) < n {
		complete = append(complete, false)
	}
	return complete[:n]
}

// peerPieces returns which pieces some connected peer has.
func (ws *webSeed) peerPieces() []bool {
	has := make([]bool, ws.info.NumPieces())
	for _, pc := range ws.t.PeerConns() {
		pc.PeerPieces().Iterate(func(x uint32) bool {
			if int(x) < len(has) {
				has[x] = true
			}
			return true
		})
	}
	return has
}

// errNoRanges means an origin answered a ranged request with the whole file
// (200) while another request read it whole.
var errNoRanges = errors.New("the origin ignores ranges (200 with the whole file)")

// do carries out w: a piece, or the whole body.
func (ws *webSeed) do(ctx context.Context, w webSeedWork) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return err
	}
	var off, length int64
	if !w.whole {
		p := ws.info.Piece(w.piece)
		off, length = p.Offset(), p.Length()
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	}
	// Compressed, the ranges would be of the compressed body.
	req.Header.Set("Accept-Encoding", "identity")
	ws.count.requests.Add(1)
	resp, err := ws.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it would repeat the unredacted URL
		}
		return err
	}
	defer resp.Body.Close()
	errStalled := fmt.Errorf("no data for %s", stallTimeout)
	watchdog := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer watchdog.Stop()
	body := io.Reader(&stallReader{r: resp.Body, t: watchdog})
	switch {
	case resp.StatusCode == http.StatusPartialContent && !w.whole:
		if err := checkContentRange(resp.Header.Get("Content-Range"), off, length, ws.info.TotalLength()); err != nil {
			return err
		}
		ws.mu.Lock()
		ws.origins[w.url].ranged = true
		ws.mu.Unlock()
		err = ws.readPiece(ctx, body, w.piece)
	case resp.StatusCode == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != ws.info.TotalLength() {
			return fmt.Errorf("status 200 with %d bytes, want the file's %d", resp.ContentLength, ws.info.TotalLength())
		}
		if !w.whole {
			// The origin ignores ranges: this answer is read through,
			// and no more ranges are asked of it.
			ws.mu.Lock()
			st := ws.origins[w.url]
			st.noRanges = true
			claimed := !st.streaming
			st.streaming = true
			ws.mu.Unlock()
			if !claimed {
				return errNoRanges
			}
			ws.count.wholeBody.Add(1)
			w.whole = true
			defer func() {
				ws.mu.Lock()
				st.streaming = false
				ws.mu.Unlock()
			}()
		}
		err = ws.readWhole(ctx, body)
	default:
		return fmt.Errorf("status %s", resp.Status)
	}
	if cause := context.Cause(ctx); err != nil && cause != nil {
		return cause
	}
	return err
}

// checkContentRange checks that a 206 holds exactly the bytes asked for.
func checkContentRange(h string, off, length, total int64) error {
	want := fmt.Sprintf("bytes %d-%d/", off, off+length-1)
	rest, ok := strings.CutPrefix(h, want)
	if !ok || (rest != "*" && rest != strconv.FormatInt(total, 10)) {
		return fmt.Errorf("Content-Range %q, want %q%d", h, want, total)
	}
	return nil
}

// readPiece reads piece i from body and, if it is good, gives it to the
// client.
func (ws *webSeed) readPiece(ctx context.Context, body io.Reader, i int) error {
	buf := make([]byte, ws.info.Piece(i).Length())
	if err := ws.read(ctx, body, buf); err != nil {
		return fmt.Errorf("piece %d: %w", i, err)
	}
	return ws.deliver(ctx, i, buf)
}

// readWhole reads the whole file from body and gives the client every piece
// it still lacks, until it has them all.
func (ws *webSeed) readWhole(ctx context.Context, body io.Reader) error {
	buf := make([]byte, ws.info.PieceLength)
	for i := range ws.info.NumPieces() {
		b := buf[:ws.info.Piece(i).Length()]
		if err := ws.read(ctx, body, b); err != nil {
			return fmt.Errorf("whole body, piece %d: %w", i, err)
		}
		if ws.t.PieceState(i).Complete {
			continue
		}
		if err := ws.deliver(ctx, i, b); err != nil {
			return err
		}
		select {
		case <-ws.t.Complete().On():
			return nil
		default:
		}
	}
	return nil
}

// read fills buf from body, under the host's download cap, and counts the
// bytes.
func (ws *webSeed) read(ctx context.Context, body io.Reader, buf []byte) error {
	const step = 64 << 10
	for got := 0; got < len(buf); {
		end := min(got+step, len(buf))
		if ws.down != nil {
			if err := ws.down.WaitN(ctx, min(end-got, max(ws.down.Burst(), 1))); err != nil {
				return err
			}
		}
		n, err := io.ReadFull(body, buf[got:end])
		ws.count.bytes.Add(int64(n))
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("short body: %d of %d bytes", got, len(buf))
			}
			return err
		}
	}
	return nil
}

// deliver checks piece i's data against its SHA-1, writes it to the
// torrent's storage and has the client verify and mark it.
func (ws *webSeed) deliver(ctx context.Context, i int, data []byte) error {
	p := ws.info.Piece(i)
	sum := sha1.Sum(data)
	if want := p.V1Hash(); !want.Ok || !bytes.Equal(sum[:], want.Value[:]) {
		return fmt.Errorf("%w: piece %d from the origin fails its hash check", ErrMismatch, i)
	}
	tp := ws.t.Piece(i)
	if ws.t.PieceState(i).Complete {
		return nil // a peer was quicker
	}
	if _, err := tp.Storage().WriteAt(data, 0); err != nil {
		return fmt.Errorf("piece %d: write: %w", i, err)
	}
	if err := tp.VerifyDataContext(ctx); err != nil {
		return fmt.Errorf("piece %d: verify: %w", i, err)
	}
	// The verification is counted before the client marks the piece:
	// wait for the mark.
	for {
		ps := ws.t.PieceState(i)
		switch {
		case ps.Complete:
			ws.count.pieces.Add(1)
			return nil
		case !ps.Marking && !ps.Hashing && !ps.QueuedForHash:
			return fmt.Errorf("piece %d: the client finds it incomplete after writing", i)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Millisecond):
		}
	}
}

// redact is u without credentials, for logs.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
