package web

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dcroll/dcroll/roll"
)

// A reason that a failing release wrote cannot inject markup: the page and
// the pushed section escape it.
func TestFleetSectionEscapes(t *testing.T) {
	sum := &roll.FleetSummary{Root: "/dc", Time: time.Now(), Services: []roll.ServiceSummary{{
		Name: "web", Versions: map[string]int{"v1": 2, "v2": 1}, Online: 3, Members: 3, Staged: "v2",
		Halted: &roll.Failure{Host: "h1", Version: "v2", Reason: `<script>alert(1)</script>`},
	}}}
	var buf bytes.Buffer
	if err := page.ExecuteTemplate(&buf, "page", view{Root: "/dc", Sum: sum}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "<script>alert") {
		t.Fatalf("the reason went into the page unescaped:\n%s", out)
	}
	for _, want := range []string{`&lt;script&gt;alert(1)&lt;/script&gt;`, `data-version="v2">v2 <b>1</b>`, `class="version staged"`} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q:\n%s", want, out)
		}
	}
}

// Nothing the page loads comes from elsewhere: no build step, no CDN.
func TestAssetsAreSelfContained(t *testing.T) {
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		for _, bad := range []string{"http://", "https://", "//cdn"} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s refers to %q", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every line of a section goes out as a data line of one event.
func TestWriteEvent(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := writeEvent(rec, "fleet", []byte("<p>a</p>\r\n<p>b</p>\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Body.String(), "event: fleet\ndata: <p>a</p>\ndata: <p>b</p>\n\n"; got != want {
		t.Fatalf("event %q, want %q", got, want)
	}
}

// The page is read-only.
func TestHandlerRefusesWrites(t *testing.T) {
	s := &Server{cur: view{Root: "/dc"}, changed: make(chan struct{})}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, "/", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s /: %d, want 405", method, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/app.js", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "EventSource") {
		t.Errorf("GET /app.js: %d", rec.Code)
	}
}

// The fleet's metrics come from the last reading, named by Prometheus'
// conventions.
func TestFleetMetrics(t *testing.T) {
	s := &Server{changed: make(chan struct{}), cur: view{Root: "/dc", Sum: &roll.FleetSummary{
		Time: time.Now(), Deploy: roll.DeployStatus{Steps: []roll.StepStatus{{Name: "step-1", Services: []string{"web"}}}},
		Services: []roll.ServiceSummary{{
			Name: "web", Members: 3, Online: 3, Versions: map[string]int{"v1": 2, "v2": 1}, Staged: "v2", Ready: 1,
			Upgrading: []string{"h3"}, Halted: &roll.Failure{Host: "h1", Version: "v2", Reason: "x"},
		}},
	}}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(fleetCollector{s})
	problems, err := promtest.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	want := `
# HELP dcroll_fleet_service_halted Whether the service is halted by a failed switch (1) or not (0).
# TYPE dcroll_fleet_service_halted gauge
dcroll_fleet_service_halted{service="web"} 1
# HELP dcroll_fleet_service_version_hosts Online hosts of the service per version.
# TYPE dcroll_fleet_service_version_hosts gauge
dcroll_fleet_service_version_hosts{service="web",version="v1"} 2
dcroll_fleet_service_version_hosts{service="web",version="v2"} 1
# HELP dcroll_fleet_service_staged_info The service's staged release: 1, labelled with its version.
# TYPE dcroll_fleet_service_staged_info gauge
dcroll_fleet_service_staged_info{service="web",version="v2"} 1
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want),
		"dcroll_fleet_service_halted", "dcroll_fleet_service_version_hosts", "dcroll_fleet_service_staged_info"); err != nil {
		t.Fatal(err)
	}
}
