package agent_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/testutil"
)

// scrape reads an agent's /metrics into "name{k=v,...}" -> value, a
// histogram as its _count and _sum.
func scrape(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, mt := range fam.GetMetric() {
			key := seriesKey(name, mt.GetLabel())
			switch {
			case mt.Gauge != nil:
				out[key] = mt.Gauge.GetValue()
			case mt.Counter != nil:
				out[key] = mt.Counter.GetValue()
			case mt.Histogram != nil:
				out[seriesKey(name+"_count", mt.GetLabel())] = float64(mt.Histogram.GetSampleCount())
				out[seriesKey(name+"_sum", mt.GetLabel())] = mt.Histogram.GetSampleSum()
			case mt.Untyped != nil:
				out[key] = mt.Untyped.GetValue()
			}
		}
	}
	return out, nil
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	var kv []string
	for _, l := range labels {
		kv = append(kv, l.GetName()+"="+l.GetValue())
	}
	slices.Sort(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}

// expect checks one series of a scrape.
func expect(got map[string]float64, key string, ok func(float64) bool, want string) error {
	v, found := got[key]
	if !found {
		return fmt.Errorf("%s: absent (have %d series)", key, len(got))
	}
	if !ok(v) {
		return fmt.Errorf("%s = %v, want %s", key, v, want)
	}
	return nil
}

// agentInfo checks the agent's info series, whatever its version.
func agentInfo(got map[string]float64) error {
	for k, v := range got {
		if strings.HasPrefix(k, "dcroll_agent_info{protocol=2,version=") && v == 1 {
			return nil
		}
	}
	return errors.New("no dcroll_agent_info{protocol=2,version=...} 1")
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
func positive(v float64) bool            { return v > 0 }

// A real agent's metrics, scraped before, during and after a real
// rollout against a real ZooKeeper: each one moves as the host does.
func TestIntegration_MetricsMoveMidRollout(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "10s"), []string{"web"}, 2)
	h0, h1 := f.hosts[0], f.hosts[1]
	// h0 locks a hot file while it downloads, and logs in JSON, for a
	// log collector.
	h0.hotFile(256 << 10)
	h0.editConfig("level = \"debug\"", "level = \"debug\"\nformat = \"json\"")
	f.startAll()

	// Before: v1, healthy, connected, nothing fetched or switched.
	var before map[string]float64
	testutil.Eventually(t, 30*time.Second, func() (err error) {
		before, err = scrape(h0.metrics)
		if err != nil {
			return err
		}
		return errors.Join(
			expect(before, "dcroll_service_version_info{service=web,version=v1}", eq(1), "1"),
			expect(before, "dcroll_service_healthy{service=web}", eq(1), "1"),
			expect(before, "dcroll_service_health_changed_timestamp_seconds{service=web}", positive, "a time"),
			expect(before, "dcroll_service_in_turn{service=web}", eq(0), "0"),
			expect(before, "dcroll_zookeeper_connected{}", eq(1), "1"),
			expect(before, "dcroll_switches_total{result=ok,service=web}", eq(0), "0"),
			expect(before, "dcroll_fetch_bytes_total{service=web,source=bittorrent}", eq(0), "0"),
			expect(before, "dcroll_hot_files_locked_bytes{service=web}", eq(0), "0"),
			agentInfo(before),
			expect(before, "go_goroutines{}", positive, "some"),
			expect(before, "process_resident_memory_bytes{}", positive, "some"),
		)
	})

	// A slow seeder, so that the download is seen under way.
	capped, err := fetch.NewSwarm(fetch.SwarmConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", UploadRate: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = capped.Close() })
	f.seeder = capped
	f.payload = 8 << 20
	f.stage("web", "v2", false)

	// Mid-download: bytes arrive over BitTorrent, the hot file is locked.
	testutil.Eventually(t, time.Minute, func() error {
		got, err := scrape(h0.metrics)
		if err != nil {
			return err
		}
		return errors.Join(
			expect(got, "dcroll_fetch_bytes_total{service=web,source=bittorrent}", positive, "bytes"),
			expect(got, "dcroll_hot_files_locked_bytes{service=web}", eq(256<<10), "the hot file's size"),
		)
	})
	f.order([]string{"web"})

	// Mid-rollout: one host in its turn, since a time.
	testutil.Eventually(t, 2*time.Minute, func() error {
		for _, h := range f.hosts {
			got, err := scrape(h.metrics)
			if err != nil {
				return err
			}
			if got["dcroll_service_in_turn{service=web}"] == 1 && got["dcroll_service_turn_started_timestamp_seconds{service=web}"] > 0 {
				return nil
			}
		}
		return errors.New("no host in its turn yet")
	})
	f.waitQueueEmpty()

	// After: both on v2 through one good switch each, the turn and the
	// fetch timed, the bytes sent between them counted.
	var uploaded float64
	for _, h := range f.hosts {
		testutil.Eventually(t, 30*time.Second, func() error {
			got, err := scrape(h.metrics)
			if err != nil {
				return err
			}
			if _, ok := got["dcroll_service_version_info{service=web,version=v1}"]; ok {
				return fmt.Errorf("%s: still a v1 info series", h.name)
			}
			uploaded += got["dcroll_upload_bytes_total{via=bittorrent}"]
			return errors.Join(
				expect(got, "dcroll_service_version_info{service=web,version=v2}", eq(1), "1"),
				expect(got, "dcroll_switches_total{result=ok,service=web}", eq(1), "1"),
				expect(got, "dcroll_switches_total{result=rolled_back,service=web}", eq(0), "0"),
				expect(got, "dcroll_service_in_turn{service=web}", eq(0), "0"),
				expect(got, "dcroll_service_turn_started_timestamp_seconds{service=web}", eq(0), "0"),
				expect(got, "dcroll_turn_duration_seconds_count{service=web}", eq(1), "1"),
				expect(got, "dcroll_fetch_duration_seconds_count{result=ok,service=web}", eq(1), "1"),
				expect(got, "dcroll_hot_files_locked_bytes{service=web}", eq(0), "0"),
				expect(got, "dcroll_service_healthy{service=web}", eq(1), "1"),
			)
		})
	}
	got, err := scrape(h0.metrics)
	if err != nil {
		t.Fatal(err)
	}
	if got["dcroll_service_health_changed_timestamp_seconds{service=web}"] <= before["dcroll_service_health_changed_timestamp_seconds{service=web}"] {
		t.Fatalf("health change time did not move with the switch: %v", got["dcroll_service_health_changed_timestamp_seconds{service=web}"])
	}
	// The two hosts split the pieces: each sent the other its share.
	if uploaded <= 0 {
		t.Fatalf("no bytes uploaded over BitTorrent by either host")
	}

	// h1 comes back without v2 and without BitTorrent: it moves to the
	// fleet's v2, fetched over HTTP from h0, which runs it.
	h1.signal(syscall.SIGTERM)
	if err := h1.wait(); err != nil {
		t.Fatalf("h1 stopping: %v", err)
	}
	if err := os.RemoveAll(h1.rels["web"].Path("v2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(fetch.ArtifactPath(filepath.Join(h1.dir, "artifacts"), "web", "v2")); err != nil {
		t.Fatal(err)
	}
	h1.editConfig("torrent_listen = ", "torrent_listen = \"\"\n# was: ")
	h1.start()
	f.waitVersion("web", "v2", []*host{h1})
	testutil.Eventually(t, 30*time.Second, func() error {
		got, err := scrape(h1.metrics)
		if err != nil {
			return err
		}
		sent, err := scrape(h0.metrics)
		if err != nil {
			return err
		}
		return errors.Join(
			expect(got, "dcroll_fetch_bytes_total{service=web,source=http_peer}", positive, "bytes from h0"),
			expect(sent, "dcroll_upload_bytes_total{via=http}", positive, "bytes sent to h1"),
		)
	})

	// h0's turn in its JSON log: every line of it carries the service,
	// the version and the turn, under stable keys.
	var turn string
	lines := map[string]map[string]any{}
	for _, line := range strings.Split(h0.log(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		msg, _ := rec["@message"].(string)
		if _, ok := rec["turn"]; ok {
			lines[msg] = rec
			if turn == "" {
				turn, _ = rec["turn"].(string)
			}
			if rec["turn"] != turn || rec["service"] != "web" || rec["version"] != "v2" {
				t.Errorf("a line of the turn with other keys: %v", rec)
			}
		}
	}
	for _, msg := range []string{"took the turn", "taking the turn: switching", "healthy on the new version", "turn over"} {
		if lines[msg] == nil {
			t.Errorf("no %q line with the turn's keys in h0's JSON log (turn %q)", msg, turn)
		}
	}
	if !strings.HasPrefix(turn, h0.name+"@") {
		t.Errorf("turn %q does not name h0", turn)
	}

	// A release from the origin over HTTP that fails its health check:
	// rolled back on the first host to switch.
	f.httpOnly = true
	f.stage("web", "v3", true)
	f.order([]string{"web"})
	f.waitHalted("web")
	rolledBack := 0.0
	for _, h := range f.hosts {
		testutil.Eventually(t, 30*time.Second, func() error {
			got, err := scrape(h.metrics)
			if err != nil {
				return err
			}
			rolledBack += got["dcroll_switches_total{result=rolled_back,service=web}"]
			return expect(got, "dcroll_fetch_bytes_total{service=web,source=origin}", positive, "bytes from the origin")
		})
	}
	if rolledBack != 1 {
		t.Fatalf("%v switches rolled back, want 1", rolledBack)
	}

	// The session: h1 frozen past its session timeout loses it, and gets
	// a new one when it thaws.
	h1.signal(syscall.SIGSTOP)
	testutil.Eventually(t, 3*sessionTimeout, func() error {
		return absent(t, f.admin, f.admin.Tree.Host(h1.name))
	})
	h1.signal(syscall.SIGCONT)
	testutil.Eventually(t, 30*time.Second, func() error {
		got, err := scrape(h1.metrics)
		if err != nil {
			return err
		}
		return errors.Join(
			expect(got, "dcroll_zookeeper_session_expirations_total{}", eq(1), "1"),
			expect(got, "dcroll_zookeeper_reconnects_total{}", positive, "at least 1"),
			expect(got, "dcroll_zookeeper_connected{}", eq(1), "1"),
		)
	})
}
