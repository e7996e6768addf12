package agent

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcroll/dcroll/roll"
)

// The agent's Prometheus metrics ([metrics] listen). Each agent has a
// registry of its own, so that several agents in one process (the fleet
// simulator, tests) do not share counters. Names follow Prometheus'
// conventions: a unit suffix in base units, _total on counters, _info
// for a version carried in a label (TestMetricsLint checks them).

// Fetch sources, the "source" label of dcroll_fetch_bytes_total.
const (
	SourceBitTorrent = "bittorrent" // peers and the stage host's seeder, over BitTorrent
	SourceHTTPPeer   = "http_peer"  // another host's peer server, over HTTP
	SourceOrigin     = "origin"     // the manifest's URLs over HTTP, whole or as web seeds
)

// metrics are one agent's collectors.
type metrics struct {
	reg *prometheus.Registry

	versionInfo   *prometheus.GaugeVec
	healthy       *prometheus.GaugeVec
	healthChanged *prometheus.GaugeVec
	inTurn        *prometheus.GaugeVec
	turnStarted   *prometheus.GaugeVec
	turnDuration  *prometheus.HistogramVec
	switches      *prometheus.CounterVec
	fetchBytes    *prometheus.CounterVec
	fetchDuration *prometheus.HistogramVec
	wholeBody     *prometheus.CounterVec
	hotLocked     *prometheus.GaugeVec
	zkConnected   prometheus.Gauge
	zkReconnects  prometheus.Counter
	zkExpirations prometheus.Counter

	// httpUploaded counts the bytes the peer server sent.
	httpUploaded atomic.Int64

	mu      sync.Mutex        // guards running
	running map[string]string // the version in versionInfo, by service
}

// newMetrics registers the agent's collectors; version is the agent's own.
func newMetrics(version string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), running: map[string]string{}}
	svc := []string{"service"}
	m.versionInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcroll_service_version_info", Help: "The version of the service this host runs: 1 for it, labelled with the version.",
	}, []string{"service", "version"})
	m.healthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcroll_service_healthy", Help: "Whether the service passes its health check (1) or not (0).",
	}, svc)
	m.healthChanged = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcroll_service_health_changed_timestamp_seconds", Help: "When the service last became healthy or unhealthy, in seconds since the epoch.",
	}, svc)
	m.inTurn = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcroll_service_in_turn", Help: "Whether this host holds an upgrade turn of the service (1) or not (0).",
	}, svc)
	m.turnStarted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcroll_service_turn_started_timestamp_seconds", Help: "When this host's turn of the service began, in seconds since the epoch; 0 outside a turn.",
	}, svc)
	m.turnDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dcroll_turn_duration_seconds", Help: "How long this host's upgrade turns lasted, from the take to the release.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	}, svc)
	m.switches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcroll_switches_total", Help: "Switches to a new version in a turn, by result: ok, or rolled_back (the new version failed, the service halted).",
	}, []string{"service", "result"})
	m.fetchBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcroll_fetch_bytes_total", Help: "Bytes of releases received, by source: bittorrent (peers and the stage host), http_peer (another host), origin (the manifest's URLs, whole or as web seeds).",
	}, []string{"service", "source"})
	m.fetchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dcroll_fetch_duration_seconds", Help: "How long fetching a release's artifact took, by result (ok, error).",
		Buckets: prometheus.ExponentialBuckets(0.25, 2, 14), // 0.25 s .. about 68 min
	}, []string{"service", "result"})
	m.wholeBody = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcroll_origin_whole_body_total", Help: "Ranged requests to a release's web seeds answered with the whole file (200): an origin that ignores ranges, read through once instead.",
	}, svc)
	m.hotLocked = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dcroll_hot_files_locked_bytes", Help: "Bytes of the service's hot files locked in memory while a release downloads.",
	}, svc)
	m.zkConnected = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dcroll_zookeeper_connected", Help: "Whether the agent holds a ZooKeeper session (1) or not (0).",
	})
	m.zkReconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dcroll_zookeeper_reconnects_total", Help: "Times the agent got a ZooKeeper session back after losing its connection.",
	})
	m.zkExpirations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dcroll_zookeeper_session_expirations_total", Help: "ZooKeeper sessions of this agent that expired (its ephemeral nodes were dropped).",
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dcroll_agent_info", Help: "The agent's own version and the protocol it speaks: always 1.",
		ConstLabels: prometheus.Labels{"version": version, "protocol": strconv.Itoa(roll.ProtocolVersion)},
	})
	info.Set(1)
	m.reg.MustRegister(m.versionInfo, m.healthy, m.healthChanged, m.inTurn, m.turnStarted, m.turnDuration,
		m.switches, m.fetchBytes, m.fetchDuration, m.wholeBody, m.hotLocked, m.zkConnected, m.zkReconnects, m.zkExpirations, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchUploads registers the upload counters: the peer server's, and the
// BitTorrent client's through swarmUploaded (nil: no BitTorrent).
func (m *metrics) watchUploads(swarmUploaded func() int64) {
	help := "Bytes of releases sent to other hosts, by transport: bittorrent, or http (the peer server, headers included)."
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "dcroll_upload_bytes_total", Help: help, ConstLabels: prometheus.Labels{"via": "http"},
	}, func() float64 { return float64(m.httpUploaded.Load()) }))
	if swarmUploaded != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dcroll_upload_bytes_total", Help: help, ConstLabels: prometheus.Labels{"via": "bittorrent"},
		}, func() float64 { return float64(swarmUploaded()) }))
	}
}

// addService makes the service's series exist from the start, at zero, so
// that rates and alerts see them before the first event.
func (m *metrics) addService(svc string) {
	m.healthy.WithLabelValues(svc)
	m.healthChanged.WithLabelValues(svc)
	m.inTurn.WithLabelValues(svc)
	m.turnStarted.WithLabelValues(svc)
	m.hotLocked.WithLabelValues(svc)
	for _, r := range []string{"ok", "rolled_back"} {
		m.switches.WithLabelValues(svc, r)
	}
	for _, s := range []string{SourceBitTorrent, SourceHTTPPeer, SourceOrigin} {
		m.fetchBytes.WithLabelValues(svc, s)
	}
	m.wholeBody.WithLabelValues(svc)
}

// setRunning records the version svc runs.
func (m *metrics) setRunning(svc, version string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.running[svc]; ok && old != version {
		m.versionInfo.DeleteLabelValues(svc, old)
	}
	m.running[svc] = version
	m.versionInfo.WithLabelValues(svc, version).Set(1)
}

// setHealthy records a change of svc's health.
func (m *metrics) setHealthy(svc string, healthy bool, at time.Time) {
	v := 0.0
	if healthy {
		v = 1
	}
	m.healthy.WithLabelValues(svc).Set(v)
	m.healthChanged.WithLabelValues(svc).Set(seconds(at))
}

// turnTaken records the start of a turn.
func (m *metrics) turnTaken(svc string, at time.Time) {
	m.inTurn.WithLabelValues(svc).Set(1)
	m.turnStarted.WithLabelValues(svc).Set(seconds(at))
}

// turnEnded records the end of a turn that began at started.
func (m *metrics) turnEnded(svc string, started time.Time) {
	m.inTurn.WithLabelValues(svc).Set(0)
	m.turnStarted.WithLabelValues(svc).Set(0)
	m.turnDuration.WithLabelValues(svc).Observe(time.Since(started).Seconds())
}

// switched counts a switch's result.
func (m *metrics) switched(svc string, failure *roll.Failure) {
	result := "ok"
	if failure != nil {
		result = "rolled_back"
	}
	m.switches.WithLabelValues(svc, result).Inc()
}

// originWholeBody counts n more whole-body answers from svc's web seeds.
func (m *metrics) originWholeBody(svc string, n int64) {
	if n > 0 {
		m.wholeBody.WithLabelValues(svc).Add(float64(n))
	}
}

// fetched counts bytes of svc received from source.
func (m *metrics) fetched(svc, source string, bytes int64) {
	if bytes > 0 {
		m.fetchBytes.WithLabelValues(svc, source).Add(float64(bytes))
	}
}

// fetchDone records how long a fetch of svc took.
func (m *metrics) fetchDone(svc string, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.fetchDuration.WithLabelValues(svc, result).Observe(took.Seconds())
}

// sessionGauge records whether the agent holds a ZooKeeper session, counting
// a session regained after a loss as a reconnect.
type sessionGauge struct {
	m     *metrics
	up    bool
	wasUp bool // held a session once
}

func (g *sessionGauge) set(up bool) {
	if up == g.up {
		return
	}
	g.up = up
	if up {
		g.m.zkConnected.Set(1)
		if g.wasUp {
			g.m.zkReconnects.Inc()
		}
		g.wasUp = true
		return
	}
	g.m.zkConnected.Set(0)
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// MetricsHandler serves the agent's metrics, as /metrics does; the fleet
// simulator scrapes its hosts through it.
func (a *Agent) MetricsHandler() http.Handler { return a.metrics.handler() }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// serve serves /metrics on listen until the returned server is closed.
func (m *metrics) serve(listen string) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends with ErrServerClosed

	return srv, ln.Addr(), nil
}

// countingListener counts the bytes written to its connections: what the
// peer server uploads.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// ReadFrom keeps the kernel's sendfile for the files the peer server
// sends, counting what it sent.
func (c countingConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.Conn, r)
	c.n.Add(n)
	return n, err
}
