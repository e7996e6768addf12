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

// The status page in a real browser, during a real rollout, without a
// reload: it shows the staged version, the counts change as hosts roll,
// and a halt appears with its reason. Without JavaScript the same page is
// there, as of its load.
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
		for _, want := range []string{`<tr data-service="web"`, `data-version="v1">v1 <b>3</b>`, "queue empty"} {
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

	f.stage("web", "v2", false)
	seen(`tr[data-service="web"] td.staged`, func(s string) bool { return s == "v2" }, "the staged v2")
	f.order([]string{"web"})
	seen("#deploy li", func(s string) bool { return strings.Contains(s, "web rolling") }, "web's step rolling")
	// Mid-rollout: some hosts on v2, some on v1.
	seen(`tr[data-service="web"] td.versions`, func(s string) bool {
		return strings.Contains(s, "v2 1") || strings.Contains(s, "v2 2")
	}, "v1 and v2 side by side")
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

	f.stage("web", "v3", true)
	f.order([]string{"web"})
	failure := f.waitHalted("web")
	seen(`.halt[data-service="web"] .reason`, func(s string) bool {
		return s == strings.Join(strings.Fields(fmt.Sprintf("%s on v3: %s", failure.Host, failure.Reason)), " ")
	}, "the halt and its reason")
	seen(`tr[data-service="web"] td.roll`, func(s string) bool { return s == "halted" }, "halted")

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
