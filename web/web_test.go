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

// The rolling step's services show the time left as status estimates it,
// the others none; the history shows newest first, as given, its text
// escaped, a failed outcome marked and a finished step's duration.
func TestPageShowsTheTimeLeftAndTheHistory(t *testing.T) {
	at := time.Date(2026, 12, 2, 17, 0, 0, 0, time.UTC)
	sum := &roll.FleetSummary{Root: "/dc", Time: at,
		Deploy: roll.DeployStatus{
			Steps:    []roll.StepStatus{{Name: "step-1", Services: []string{"web"}}},
			Progress: &roll.StepProgress{Done: 1, Online: 3, Started: at.Add(-time.Minute), Left: roll.Duration(2 * time.Minute)},
		},
		Services: []roll.ServiceSummary{
			{Name: "db", Versions: map[string]int{"9.1": 3}, Online: 3, Members: 3},
			{Name: "web", Versions: map[string]int{"v1": 2, "v2": 1}, Online: 3, Members: 3, Staged: "v2"},
		}}
	history := []roll.HistoryEvent{
		{Seq: 3, At: at, By: "ops@h1", Action: roll.ActHalt, Services: []string{"web"}, Version: "v2", Detail: `h1 on v2: <b>boom</b>`, Outcome: "halted"},
		{Seq: 2, At: at, By: "ops@h1", Action: roll.ActStepFinished, Services: []string{"db"}, Detail: "step-0", Took: roll.Duration(90 * time.Second)},
		{Seq: 1, At: at, By: "ops@h1", Action: roll.ActOrder, Services: []string{"db", "web"}, Outcome: "ok"},
	}
	var buf bytes.Buffer
	if err := page.ExecuteTemplate(&buf, "page", view{Root: "/dc", Sum: sum, History: history}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`<span class="progress" id="progress">1/3 online hosts on the staged release, rolling since 16:59:00, about 2m0s left at this pace</span>`,
		`<td class="eta">about 2m0s left</td>`,
		`<td class="eta">-</td>`, // db: not rolling
		`<tr data-seq="3" data-action="halt" class="failed">`,
		`h1 on v2: &lt;b&gt;boom&lt;/b&gt;`,
		`<td class="detail">step-0, took 1m30s</td>`,
		`<td class="services">db, web</td>`,
		`the last 3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Index(out, `data-seq="3"`) > strings.Index(out, `data-seq="1"`) {
		t.Error("the history is not newest first")
	}
	if strings.Contains(out, "<b>boom") {
		t.Error("an event's detail went into the page unescaped")
	}
	if n := strings.Count(out, `about 2m0s left</td>`); n != 1 {
		t.Errorf("%d services show the time left, want 1 (web)", n)
	}

	// No step rolls, no history yet.
	sum.Deploy = roll.DeployStatus{}
	buf.Reset()
	if err := page.ExecuteTemplate(&buf, "page", view{Root: "/dc", Sum: sum}); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	for _, want := range []string{"no history yet", "queue empty"} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(out, "left</td>") || strings.Contains(out, `id="progress"`) {
		t.Error("a time left shown with no step rolling")
	}
}
