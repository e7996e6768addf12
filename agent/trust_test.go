package agent_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/trust"
)

// waitStuck waits until status shows every host of f stuck on svc with a
// reason that says want.
func (f *fleet) waitStuck(svc, want string) {
	f.t.Helper()
	testutil.Eventually(f.t, time.Minute, func() error {
		st, err := f.admin.Status()
		if err != nil {
			return err
		}
		for _, h := range f.hosts {
			found := false
			for _, hs := range st.Hosts {
				if hs.Name == h.name && strings.Contains(hs.Stuck[svc], want) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("status does not show %s stuck on %s with %q: %+v", h.name, svc, want, st.Hosts)
			}
		}
		return nil
	})
}

// Hosts that trust a key run only what it signed: an unsigned release, one
// signed by another key, for another data center, or expired, is refused
// before a byte is fetched; each host says why in status and stays on its
// version, and nothing halts. The signed release then rolls out.
func TestIntegration_HostsWithTrustRunOnlySignedReleases(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 2)
	key, _ := trust.GenerateKey()
	forger, _ := trust.GenerateKey()
	for _, h := range f.hosts {
		cfg, err := os.OpenFile(h.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(cfg, "\n[trust]\nkeys = [%q]\n", key.Public.String())
		cfg.Close()
	}
	f.startAll()

	sign := func(k trust.PrivateKey, root string, expires time.Time) func(*roll.Manifest) {
		return func(m *roll.Manifest) {
			m.Expires = expires
			m.Signatures = []trust.Signature{k.Sign(m.Release(root, "web"))}
		}
	}
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	// A version each: the origin seeds every release it stages.
	for _, tc := range []struct {
		name, version string
		amend         func(*roll.Manifest)
		want          string
	}{
		{"unsigned", "v2", nil, "unsigned"},
		{"forged", "v3", sign(forger, "/dc", later), "no valid signature"},
		{"another data center", "v4", sign(key, "/dc-other", later), "no valid signature"},
		{"expired", "v5", sign(key, "/dc", time.Now().Add(-time.Minute).UTC().Truncate(time.Second)), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.amend = tc.amend
			f.stage("web", tc.version, false)
			f.waitStuck("web", tc.version+": ")
			f.waitStuck("web", tc.want)
			f.waitVersion("web", "v1", f.hosts)
			for _, h := range f.hosts {
				if strings.Contains(h.log(), "release verified and unpacked") {
					t.Fatalf("%s unpacked a release it does not trust", h.name)
				}
			}
			ctl, err := f.admin.Control("web")
			if err != nil || ctl.Halted != nil {
				t.Fatalf("the deploy halted (%v): %+v", err, ctl.Halted)
			}
		})
	}

	f.amend = sign(key, "/dc", later)
	f.stage("web", "v6", false)
	f.order([]string{"web"})
	f.waitQueueEmpty()
	f.waitVersion("web", "v6", f.hosts)
}

// A manifest declares what its release unpacks to; an archive that unpacks
// to more is refused on every host before it is written, and the hosts
// say so.
func TestIntegration_ReleaseUnpackingToMoreThanDeclaredIsRefused(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 1)
	f.payload = 256 << 10
	f.startAll()
	f.amend = func(m *roll.Manifest) { m.Unpacked = 1 << 10 }
	f.stage("web", "v2", false)
	f.waitStuck("web", "unpacks to more than allowed")
	f.waitVersion("web", "v1", f.hosts)
	if _, err := os.Stat(f.hosts[0].releases.Path("v2")); err == nil {
		t.Fatal("the refused release was unpacked")
	}
}

// A download abandoned gives its disk space back: the review found that
// partial BitTorrent downloads were never removed, even after an abort or
// a restart. The agent is killed mid-download, the release is aborted
// meanwhile, and the agent that comes back removes what was left.
func TestIntegration_AbortRemovesThePartialDownload(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "30s"), []string{"web"}, 1)
	h := f.hosts[0]
	f.startAll()
	// A slow seeder, so that the download is caught midway.
	slow, err := fetch.NewSwarm(fetch.SwarmConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", UploadRate: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slow.Close() })
	f.seeder = slow
	f.payload = 32 << 20
	f.stage("web", "v2", false)
	m, err := f.admin.Manifest("web")
	if err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(h.dir, "torrent", m.Infohash)
	testutil.Eventually(t, time.Minute, func() error {
		if n := dirBytes(partial); n < 1<<20 {
			return fmt.Errorf("%d bytes in %s", n, partial)
		}
		return nil
	})
	h.signal(syscall.SIGKILL)
	h.wait()
	if _, err := f.admin.Abort(); err != nil {
		t.Fatal(err)
	}
	if dirBytes(partial) == 0 {
		t.Fatal("the killed agent left no partial download")
	}
	h.start()
	testutil.Eventually(t, time.Minute, func() error {
		if _, err := os.Stat(partial); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s still there (%d bytes): %v", partial, dirBytes(partial), err)
		}
		return nil
	})
	f.waitVersion("web", "v1", f.hosts)
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
