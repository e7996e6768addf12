package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"golang.org/x/time/rate"
)

// chunk is the unit in which the origin sends and a client receives, and so
// the burst of their rate limiters.
const chunk = 64 << 10

// httpResult is what the HTTP case measured.
type httpResult struct {
	first, last time.Duration // from start to the first and last client done
	originSent  int64         // body bytes the origin wrote
	verified    int           // clients' copies that match the artifact
}

// runHTTP serves src from one origin whose total upload is capped at
// cfg.rate and has cfg.hosts clients, each with its download capped at
// cfg.rate, fetch it with fetch.HTTP at once. The clients run in this
// process: their caps are explicit limiters, not the process's share of the
// machine.
func runHTTP(ctx context.Context, cfg config, dir, src string, a fetch.Artifact) (httpResult, error) {
	hdir := filepath.Join(dir, "http")
	if err := os.Mkdir(hdir, 0o700); err != nil {
		return httpResult{}, err
	}
	defer os.RemoveAll(hdir)

	o := &origin{file: src, size: a.Size, lim: rate.NewLimiter(rate.Limit(cfg.rate), chunk)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return httpResult{}, err
	}
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	a.URLs = []string{"http://" + ln.Addr().String() + "/artifact"}

	took := make([]time.Duration, cfg.hosts)
	errs := make([]error, cfg.hosts)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.hosts {
		wg.Go(func() {
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: &limitedTransport{base: tr, lim: rate.NewLimiter(rate.Limit(cfg.rate), chunk)}}
			errs[i] = fetch.HTTP{Client: client}.Fetch(ctx, a, filepath.Join(hdir, fmt.Sprintf("client%d", i)))
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return httpResult{}, err
	}
	res := httpResult{first: took[0], originSent: o.sent.Load()}
	for _, t := range took {
		res.first, res.last = min(res.first, t), max(res.last, t)
	}
	// fetch.HTTP verified each copy before installing it; check again,
	// outside the timing.
	for i := range cfg.hosts {
		if err := fetch.Verify(filepath.Join(hdir, fmt.Sprintf("client%d", i)), a); err != nil {
			return httpResult{}, err
		}
		res.verified++
	}
	return res, nil
}

// origin serves one file to every GET, all responses together at most at
// the rate of lim. With ranges, it answers a Range header as net/http does
// (206), as an artifact store would; without, it sends the whole file.
type origin struct {
	file     string
	size     int64
	lim      *rate.Limiter
	ranges   bool
	sent     atomic.Int64
	requests atomic.Int64
}

// serveOrigin serves file, answering ranges, at most at bytesPerSec, on
// loopback, and returns its URL and what stops it.
func serveOrigin(file string, size int64, bytesPerSec float64) (*origin, string, func(), error) {
	o := &origin{file: file, size: size, lim: rate.NewLimiter(rate.Limit(bytesPerSec), chunk), ranges: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return o, "http://" + ln.Addr().String() + "/artifact", func() { srv.Close() }, nil
}

// pacedWriter writes at most at the origin's rate, in chunks, and counts.
type pacedWriter struct {
	http.ResponseWriter
	o   *origin
	ctx context.Context
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), chunk)
		if err := p.o.lim.WaitN(p.ctx, n); err != nil {
			return written, err
		}
		m, err := p.ResponseWriter.Write(b[:n])
		written += m
		p.o.sent.Add(int64(m))
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, err := os.Open(o.file)
	if err != nil {
		http.Error(w, "cannot open artifact", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if o.ranges {
		http.ServeContent(&pacedWriter{ResponseWriter: w, o: o, ctx: r.Context()}, r, "artifact", time.Time{}, f)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(o.size, 10))
	buf := make([]byte, chunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			// The limiter is shared: the origin's uplink, not each
			// response, is what the cap describes.
			if o.lim.WaitN(r.Context(), n) != nil {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			o.sent.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

// limitedTransport caps the rate at which response bodies are read.
type limitedTransport struct {
	base http.RoundTripper
	lim  *rate.Limiter
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, ctx: req.Context(), lim: t.lim}
	return resp, nil
}

type limitedBody struct {
	io.ReadCloser
	ctx context.Context
	lim *rate.Limiter
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if werr := b.lim.WaitN(b.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}
