package agent_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dcroll/dcroll/internal/testutil"
)

// screenshot, if set, is where the browser test saves the page
// mid-rollout (docs/status-page.png is made so).
var screenshot = flag.String("screenshot", "", "save the status page mid-rollout to this PNG `file`")

// browser starts a headless Chromium, Debian's chromium package, driven
// over the DevTools protocol; it skips the test where none is installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no Chromium to test the status page in: apt-get install chromium (CI installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 800))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first run starts the browser, for as long as ctx lives.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// servePage runs `dcroll status --serve` as a process of its own and
// returns the page's URL once it answers.
func (f *fleet) servePage() string {
	f.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(f.t))
	f.background("status", "--serve", addr, "--interval", "100ms")
	url := "http://" + addr + "/"
	testutil.Eventually(f.t, 30*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	return url
}

// text is the text of the first element sel matches in the page, "" if none.
func text(ctx context.Context, sel string) (string, error) {
	js := fmt.Sprintf(`(function(){ var e = document.querySelector(%q); return e ? e.textContent.replace(/\s+/g, " ").trim() : ""; })()`, sel)
	return chromedp.Run(ctx, chromedp.Evaluate[string](js))
}

// orderCLI queues svc as an operator does, with `dcroll order`: the
// history records the order and the step's start.
func (f *fleet) orderCLI(svc string) {
	f.t.Helper()
	out, err := exec.Command(dcrollBin, "--zk", f.zkc.ConnString(), "--root", "/dc", "order", svc).CombinedOutput()
	if err != nil {
		f.t.Fatalf("dcroll order %s: %v\n%s", svc, err, out)
	}
}

// The status page in a real browser, during a real rollout, without a
// reload: it shows the staged version, the counts change as hosts roll,
// the rolling step's time left appears on its service, the history's
// events come newest first as they are written, and a halt appears with
// its reason, on the service and in the history. Without JavaScript the
// same page is there, as of its load.
func TestIntegration_StatusPageInABrowser(t *testing.T) {
	ctx := browser(t)
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "1s", "10s"), []string{"web"}, 3)
	f.startAll()
	url := f.servePage()

	// The static view: the HTML as served, no script run. It shows the
	// fleet view, which the advancer writes about a second after /current.
	testutil.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		static, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		for _, want := range []string{`<tr data-service="web"`, `data-version="v1">v1 <b>3</b>`, "queue empty", `<section id="history">`, `<td class="eta">-</td>`} {
			if !strings.Contains(string(static), want) {
				return fmt.Errorf("the page without JavaScript lacks %q:\n%s", want, static)
			}
		}
		return nil
	})
	if resp, err := http.Post(url, "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to the read-only page: %v %v", resp, err)
	}

	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#live.on"))); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	seen := func(sel string, ok func(string) bool, what string) {
		t.Helper()
		testutil.Eventually(t, 2*time.Minute, func() error {
			s, err := text(ctx, sel)
			if err != nil {
				return err
			}
			if !ok(s) {
				return fmt.Errorf("%s: %q, want %s", sel, s, what)
			}
			return nil
		})
	}

	// history is the page's history, newest first: "seq action services", a row each.
	history := func() ([]string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#history tbody tr")).map(function (r) {
			return [r.dataset.seq, r.dataset.action, r.querySelector("td.services").textContent].join(" "); })`))
	}
	// event waits for an event of action about services in the page's
	// history, with the history newest first, and returns its row.
	event := func(action, services string) string {
		t.Helper()
		sel := fmt.Sprintf(`#history tr[data-action=%q]`, action)
		var row string
		testutil.Eventually(t, 2*time.Minute, func() error {
			rows, err := history()
			if err != nil {
				return err
			}
			prev := -1
			for _, r := range rows {
				var seq int
				if _, err := fmt.Sscan(r, &seq); err != nil || (prev >= 0 && seq >= prev) {
					return fmt.Errorf("the history is not newest first: %q", rows)
				}
				prev = seq
			}
			if row, err = text(ctx, sel); err != nil {
				return err
			}
			if got, err := text(ctx, sel+" td.services"); err != nil || got != services {
				return fmt.Errorf("%s in the history: %q (%v), want about %s; history %q", action, got, err, services, rows)
			}
			return nil
		})
		return row
	}

	f.stage("web", "v2", false)
	seen(`tr[data-service="web"] td.staged`, func(s string) bool { return s == "v2" }, "the staged v2")
	f.orderCLI("web")
	seen("#deploy li", func(s string) bool { return strings.Contains(s, "web rolling") }, "web's step rolling")
	event("order", "web")
	event("step-started", "web")
	// Mid-rollout, once a host is done: the time left at the pace so far,
	// on the service and under the step, as status prints it.
	seen(`tr[data-service="web"] td.eta`, func(s string) bool {
		left, ok := strings.CutPrefix(s, "about ")
		left, ok2 := strings.CutSuffix(left, " left")
		d, err := time.ParseDuration(left)
		return ok && ok2 && err == nil && d > 0
	}, "about DURATION left")
	seen("#progress", func(s string) bool {
		return strings.Contains(s, "online hosts on the staged release, rolling since") && strings.Contains(s, "left at this pace")
	}, "the step's progress and time left")
	if path := *screenshot; path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seen(`tr[data-service="web"] td.versions`, func(s string) bool { return s == "v2 3" }, "every host on v2")
	seen("#deploy", func(s string) bool { return strings.Contains(s, "queue empty") }, "the step done")
	seen(`tr[data-service="web"] td.eta`, func(s string) bool { return s == "-" }, "no time left once the step is done")
	if row := event("step-finished", "web"); !strings.Contains(row, "took ") {
		t.Errorf("the finished step does not say how long it took: %q", row)
	}

	f.stage("web", "v3", true)
	f.orderCLI("web")
	failure := f.waitHalted("web")
	reason := strings.Join(strings.Fields(fmt.Sprintf("%s on v3: %s", failure.Host, failure.Reason)), " ")
	seen(`.halt[data-service="web"] .reason`, func(s string) bool { return s == reason }, "the halt and its reason")
	seen(`tr[data-service="web"] td.roll`, func(s string) bool { return s == "halted" }, "halted")
	event("halt", "web")
	seen(`#history tr[data-action="halt"] td.detail`, func(s string) bool { return s == reason }, "the halt's reason in the history")

	// The same reading, as the fleet's metrics.
	resp, err := http.Get(url + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`dcroll_fleet_service_halted{service="web"} 1`, `dcroll_fleet_service_staged_info{service="web",version="v3"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the page's /metrics lacks %s:\n%s", want, body)
		}
	}
}
