package agentconf

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/trust"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/dcroll":  `'/usr/bin/dcroll'`,
		"/tmp/a b/dcroll":  `'/tmp/a b/dcroll'`,
		"/tmp/it's/dcroll": `'/tmp/it'\''s/dcroll'`,
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+ShellQuote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh reads %s as %q (%v), want %q", ShellQuote(in), out, err, in)
		}
	}
}

// The config written is one the agent loads, with every value in place.
func TestTOMLLoads(t *testing.T) {
	dir := t.TempDir()
	key, err := trust.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	h := Host{
		Comment: "test host", Name: "h1", StateDir: dir,
		ZooKeeper: []string{"127.0.0.1:2181", "127.0.0.1:2182"}, Root: "/dc", SessionTimeout: 3 * time.Second,
		Transfer: "127.0.0.1:7434", Torrent: "127.0.0.1:6881", TransferAdvertise: "localhost:7434", LogLevel: "debug",
		Exe: "/tmp/it's/dcroll", Services: []Service{{Name: "db", Addr: "127.0.0.1:8001"}, {Name: "web", Addr: "127.0.0.1:8002"}},
		HealthInterval: 200 * time.Millisecond,
		TrustKeys:      []string{key.Public.String()},
	}
	path := filepath.Join(dir, "dcroll.toml")
	if err := os.WriteFile(path, []byte(h.TOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Sources{File: path})
	if err != nil {
		t.Fatalf("%v\n%s", err, h.TOML())
	}
	if cfg.Host.Name != "h1" || cfg.ZooKeeper.Root != "/dc" || len(cfg.ZooKeeper.Servers) != 2 ||
		cfg.Transfer.Advertise != "localhost:7434" || cfg.Transfer.TorrentAdvertise != "h1:6881" || len(cfg.Services) != 2 ||
		cfg.Services["web"].Health.HTTP != "http://127.0.0.1:8002/healthz" || len(cfg.Trust.Keys) != 1 {
		t.Errorf("loaded %+v", cfg)
	}
}
