// Package web serves the read-only page of a data center that `dcroll
// status --serve ADDR` shows: the deploy queue with the rolling step's
// progress and time left, each service's versions and rollout, the hosts
// that need attention, and the newest events of the history. It reads the
// fleet's summary (roll.Store.WatchSummary) and the history's new events
// (roll.Store.WatchHistory) again only when ZooKeeper reports a change, at
// most once per interval, whatever the number of people looking: its cost
// does not grow with the fleet nor with the viewers.
// The page works without JavaScript (a static view, as of its load); with
// it, the server pushes the rendered fleet section at each change
// (server-sent events). Everything it serves is embedded in the binary.
// It writes nothing.
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
)

//go:embed assets
var assets embed.FS

var page = template.Must(template.New("").Funcs(template.FuncMap{
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"join":  strings.Join,
	"versions": func(counts map[string]int) []versionCount {
		out := make([]versionCount, 0, len(counts))
		for v, n := range counts {
			out = append(out, versionCount{v, n})
		}
		// Newest first: the staged release leads as it rolls.
		slices.SortFunc(out, func(a, b versionCount) int { return state.CompareVersions(b.Name, a.Name) })
		return out
	},
	"attention": func(sum *roll.FleetSummary) bool {
		return slices.ContainsFunc(sum.Services, func(s roll.ServiceSummary) bool { return len(s.Attention) > 0 })
	},
	"why":      roll.DescribeAttention,
	"unlisted": roll.UnlistedText,
	"eta":      eta,
}).ParseFS(assets, "assets/page.html"))

// HistoryShown is how many of the history's newest events the page shows.
const HistoryShown = 20

// eta is the time left of the rolling step, for a service in it: the
// status's estimate at the pace so far (roll.StepProgress), "" when the
// service is not rolling or the pace is not known yet.
func eta(sum *roll.FleetSummary, svc string) string {
	p, steps := sum.Deploy.Progress, sum.Deploy.Steps
	if p == nil || p.Left <= 0 || len(steps) == 0 || !slices.Contains(steps[0].Services, svc) {
		return ""
	}
	return "about " + time.Duration(p.Left).String() + " left"
}

type versionCount struct {
	Name  string
	Hosts int
}

// view is what the page shows: the summary and the newest events as last
// read, or why they could not be read.
type view struct {
	Root    string
	Sum     *roll.FleetSummary
	History []roll.HistoryEvent // newest first
	Err     string
}

// Server is the page's server: one reader of the summary, any number of
// viewers.
type Server struct {
	store    *roll.Store
	interval time.Duration
	log      hclog.Logger

	mu       sync.Mutex    // guards the fields below
	cur      view          // the last reading
	fragment []byte        // cur's fleet section, rendered
	reads    int           // readings of the summary so far
	changed  chan struct{} // closed, and replaced, at each new reading
}

// New makes a server of store's data center that reads the summary at
// most once per interval; Run reads it.
func New(store *roll.Store, interval time.Duration, log hclog.Logger) *Server {
	return &Server{store: store, interval: interval, log: log, cur: view{Root: store.Tree.Root}, changed: make(chan struct{})}
}

// Run reads the summary and the history, then again at every change
// ZooKeeper reports, at most once per interval, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	w := s.store.WatchSummary()
	h := s.store.WatchHistory(HistoryShown)
	for {
		began := time.Now()
		sum, err := w.Read()
		next := time.Now()
		v := view{Root: s.store.Tree.Root, Sum: sum}
		if err == nil {
			next = sum.NextChange
		} else {
			s.mu.Lock()
			v.Sum = s.cur.Sum // the last good reading stays shown, under the error
			s.mu.Unlock()
		}
		events, written, herr := h.Read()
		v.History = events // on an error, as last read
		if err = errors.Join(err, herr); err != nil {
			s.log.Warn("cannot read the data center; retrying", "error", err)
			v.Err = err.Error()
			next = time.Now()
		}
		s.publish(v)
		if wait(ctx, w, written, next) != nil {
			return
		}
		if !clock.Sleep(ctx, time.Until(began.Add(s.interval))) {
			return
		}
	}
}

// wait returns when the summary's watch fires or until passes (w.Wait),
// or when written is closed (the history's watch), or with ctx's error
// when ctx ends.
func wait(ctx context.Context, w *roll.SummaryWatch, written <-chan struct{}, until time.Time) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-written:
			cancel()
		case <-wctx.Done():
		}
	}()
	_ = w.Wait(wctx, until)
	return ctx.Err()
}

// publish makes v the page's reading and wakes the viewers.
func (s *Server) publish(v view) {
	var buf bytes.Buffer
	if err := page.ExecuteTemplate(&buf, "fleet", v); err != nil {
		s.log.Error("cannot render the page", "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur, s.fragment = v, buf.Bytes()
	s.reads++
	close(s.changed)
	s.changed = make(chan struct{})
}

// Reads is how many times the server has read the summary.
func (s *Server) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// snapshot is the current reading and what is closed at the next.
func (s *Server) snapshot() (view, []byte, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.fragment, s.changed
}

// Handler serves the page (/), its live updates (/events), the summary as
// JSON (/summary.json), the fleet's counts as Prometheus metrics
// (/metrics, metrics.go) and the embedded assets. It answers GET and HEAD
// alone: the page is read-only.
func (s *Server) Handler() http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /events", s.serveEvents)
	mux.HandleFunc("GET /summary.json", s.serveJSON)
	reg := prometheus.NewRegistry()
	reg.MustRegister(fleetCollector{s})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /style.css", files)
	mux.Handle("GET /app.js", files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		mux.ServeHTTP(w, r)
	})
}

// firstReading waits, for a request that came before the first reading,
// until it is there, or the request is given up.
func (s *Server) firstReading(r *http.Request) view {
	v, _, changed := s.snapshot()
	if s.Reads() == 0 {
		select {
		case <-changed:
			v, _, _ = s.snapshot()
		case <-r.Context().Done():
		}
	}
	return v
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	v := s.firstReading(r)
	var buf bytes.Buffer
	if err := page.ExecuteTemplate(&buf, "page", v); err != nil {
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	v := s.firstReading(r)
	if v.Sum == nil {
		http.Error(w, "not read yet: "+v.Err, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v.Sum)
}

// serveEvents sends the fleet section, rendered, now and at every new
// reading, as server-sent events named "fleet", until the viewer leaves.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ping := time.NewTicker(30 * time.Second) // keeps proxies from closing an idle stream
	defer ping.Stop()
	s.firstReading(r)
	for {
		_, frag, changed := s.snapshot()
		if err := writeEvent(w, "fleet", frag); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		if !s.await(r.Context(), w, rc, changed, ping.C) {
			return
		}
	}
}

// await waits for the next reading (true), pinging the viewer meanwhile,
// or for the viewer to leave (false).
func (s *Server) await(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, changed <-chan struct{}, ping <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-changed:
			return true
		case <-ping:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return false
			}
		}
	}
}

// writeEvent writes one server-sent event: a data line per line of data.
func writeEvent(w http.ResponseWriter, name string, data []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "event: %s\n", name)
	for line := range bytes.SplitSeq(bytes.TrimRight(data, "\n"), []byte("\n")) {
		b.WriteString("data: ")
		b.Write(bytes.TrimRight(line, "\r"))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
