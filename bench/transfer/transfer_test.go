package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for the program when runTorrent
// re-executes itself as a BitTorrent host.
func TestMain(m *testing.M) {
	if isChild(os.Args[1:]) {
		os.Exit(cli(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestTransfer runs the whole comparison on a small artifact so the
// benchmark cannot rot. It checks that every copy verifies, not timings.
func TestTransfer(t *testing.T) {
	cfg, err := parseFlags([]string{
		"--size=8MiB", "--hosts=3", "--rate=800", "--piece=256KiB", "--timeout=90s", "--tmp=" + t.TempDir(),
		"--variants=classic,classic+webseed",
	}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := compare(context.Background(), cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	bt := res.torrent[0]
	if bt.verified != cfg.hosts || res.http.verified != cfg.hosts {
		t.Errorf("verified copies: BitTorrent %d, HTTP %d; want %d each", bt.verified, res.http.verified, cfg.hosts)
	}
	// Counted once every fetcher is done, while they still seed: none of
	// a fetcher's copy is resident in its memory, and its whole resident
	// set stays within what a host may keep after a fetch.
	if bt.fetcherMappedMax != 0 {
		t.Errorf("a fetcher holds %d KiB of its copy mapped once done, want 0", bt.fetcherMappedMax)
	}
	t.Logf("fetcher RSS once done: max %d KiB", bt.fetcherRSSAfterMax)
	// With the HTTP origin as web seed and no seeder, the origin sends
	// the release about once, not once per host.
	ws := res.torrent[1]
	if ws.verified != cfg.hosts || ws.originSent > cfg.size*3/2 || ws.originSent < cfg.size {
		t.Errorf("web seed: %d copies verified, origin sent %d bytes; want %d and F to 1.5 F (F = %d)", ws.verified, ws.originSent, cfg.hosts, cfg.size)
	}
	if res.http.originSent != int64(cfg.hosts)*cfg.size {
		t.Errorf("origin sent %d bytes, want %d", res.http.originSent, int64(cfg.hosts)*cfg.size)
	}
	var out bytes.Buffer
	report(&out, cfg, res)
	t.Log("\n" + out.String())
	if !strings.Contains(out.String(), "verified copies: BitTorrent (classic) 3/3, BitTorrent (classic+webseed) 3/3, HTTP 3/3") {
		t.Errorf("report lacks the verified counts:\n%s", out.String())
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "123": 123, "16KiB": 16 << 10, "256MiB": 256 << 20, "2GiB": 2 << 30} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "1TB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) succeeded, want an error", in)
		}
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
