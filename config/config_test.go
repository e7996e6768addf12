package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/etc"
)

func TestShippedConfigParses(t *testing.T) {
	c, err := Load(Sources{File: "../etc/dcroll.toml", Flags: map[string]any{"host.name": "h1"}})
	if err != nil {
		t.Fatalf("shipped etc/dcroll.toml: %v", err)
	}
	if c.ZooKeeper.Root != "/dc" || c.ZooKeeper.SessionTimeout != 10*time.Second || c.Host.StateDir != "/var/lib/dcroll" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if len(etc.DefaultConfig) == 0 {
		t.Fatal("embedded default is empty")
	}
}

func TestShippedServiceExampleParses(t *testing.T) {
	// The commented example in the shipped file must stay valid too.
	var example []string
	for _, line := range strings.Split(string(etc.DefaultConfig), "\n") {
		if s, ok := strings.CutPrefix(line, "# "); ok && (strings.HasPrefix(s, "[services") || strings.Contains(s, " = ")) {
			if !strings.HasPrefix(s, "# ") {
				example = append(example, s)
			}
		}
	}
	c, err := Load(Sources{File: "example", FileData: []byte(strings.Join(example, "\n")), Flags: map[string]any{"host.name": "h1"}})
	if err != nil {
		t.Fatalf("example service section: %v\n%s", err, strings.Join(example, "\n"))
	}
	web := c.Services["web"]
	if web.Health.HTTP == "" || web.Start == "" || web.Releases != "/var/lib/dcroll/releases/web" {
		t.Fatalf("example not decoded: %+v", web)
	}
}

func TestLayers(t *testing.T) {
	file := []byte(`
[zookeeper]
servers = ["zk1:2181", "zk2:2181"]
root = "/file"
[host]
name = "from-file"
[services.db]
run = "exec ./db"
[services.db.health]
tcp = "127.0.0.1:5432"
`)
	c, err := Load(Sources{
		File:     "dcroll.toml",
		FileData: file,
		Env:      []string{"DCROLL_ZOOKEEPER_ROOT=/env", "DCROLL_LOG_LEVEL=debug", "PATH=/bin", "DCROLL_SERVICE=ignored"},
		Flags:    map[string]any{"zookeeper.servers": []string{"flag:1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.ZooKeeper.Root != "/env" {
		t.Errorf("env should win over file: root %q", c.ZooKeeper.Root)
	}
	if len(c.ZooKeeper.Servers) != 1 || c.ZooKeeper.Servers[0] != "flag:1" {
		t.Errorf("flags should win: servers %v", c.ZooKeeper.Servers)
	}
	if c.Host.Name != "from-file" || c.Log.Level != "debug" {
		t.Errorf("file/env values lost: %+v", c)
	}
	db := c.Services["db"]
	if db.Releases != "/var/lib/dcroll/releases/db" || db.Health.Interval != 2*time.Second || db.StopTimeout != 30*time.Second {
		t.Errorf("service defaults not filled: %+v", db)
	}

	c, err = Load(Sources{Env: []string{"DCROLL_ZOOKEEPER_SERVERS=a:1, b:2", "DCROLL_HOST_NAME=h"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.ZooKeeper.Servers, ",") != "a:1,b:2" {
		t.Errorf("servers from env: %v", c.ZooKeeper.Servers)
	}
}

func TestMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	if _, err := Load(Sources{File: missing, FileOptional: true, Flags: map[string]any{"host.name": "h"}}); err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
	_, err := Load(Sources{File: missing})
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("required missing file: %v", err)
	}
}

func TestMetricsListenBindsTheManagementAddress(t *testing.T) {
	c, err := Load(Sources{File: "dcroll.toml", FileData: []byte("[transfer]\nbind = \"10.1.2.3\"\n[metrics]\nlisten = \":7435\"\n")})
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != "10.1.2.3:7435" {
		t.Fatalf("metrics.listen %q, want 10.1.2.3:7435", c.Metrics.Listen)
	}
	if c, err = Load(Sources{}); err != nil || c.Metrics.Listen != "" {
		t.Fatalf("default metrics.listen %q (%v), want off", c.Metrics.Listen, err)
	}
}

func TestBadConfig(t *testing.T) {
	svc := "\n[services.web]\nrun = \"x\"\n[services.web.health]\ntcp = \"127.0.0.1:1\"\n"
	cases := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"not toml", "zookeeper = [", nil, "dcroll.toml"},
		{"unknown top key", "bogus = 1", nil, `unknown key "bogus"`},
		{"unknown nested key", "[zookeeper]\nrooot = \"/dc\"", nil, `unknown key "zookeeper.rooot"`},
		{"unknown service key", svc + "[services.api]\nrun=\"x\"\nhealht = 1", nil, "healht"},
		{"wrong type", "[zookeeper]\nroot = 5", nil, "zookeeper.root"},
		{"bad duration", "[zookeeper]\nsession_timeout = \"soon\"", nil, "session_timeout"},
		{"short session", "[zookeeper]\nsession_timeout = \"1ms\"", nil, "zookeeper.session_timeout"},
		{"empty servers", "[zookeeper]\nservers = []", nil, "zookeeper.servers"},
		{"server without port", "[zookeeper]\nservers = [\"zk1\"]", nil, `"zk1" is not host:port`},
		{"relative root", "[zookeeper]\nroot = \"dc\"", nil, "zookeeper.root"},
		{"slash root", "[zookeeper]\nroot = \"/\"", nil, "zookeeper.root"},
		{"bad acl", "[zookeeper]\nacl = \"public\"", nil, "zookeeper.acl"},
		{"digest without user", "[zookeeper]\nacl = \"digest\"", nil, "needs zookeeper.user"},
		{"bad host name", "[host]\nname = \"a/b\"", nil, "host.name"},
		{"relative state dir", "[host]\nstate_dir = \"var\"", nil, "host.state_dir"},
		{"relative machine id file", "[host]\nmachine_id_file = \"machine-id\"", nil, "host.machine_id_file"},
		{"relative machine id file from env", "", []string{"DCROLL_HOST_MACHINE_ID_FILE=etc/machine-id"}, "host.machine_id_file"},
		{"bad level", "[log]\nlevel = \"loud\"", nil, "log.level"},
		{"bad format", "[log]\nformat = \"xml\"", nil, "log.format"},
		{"bad metrics listen", "[metrics]\nlisten = \"9100\"", nil, `metrics.listen: "9100" is not host:port`},
		{"unknown metrics key", "[metrics]\naddr = \":9100\"", nil, `unknown key "metrics.addr"`},
		{"bad service name", "[services.\"a b\"]\nrun = \"x\"\n[services.\"a b\".health]\ntcp = \"h:1\"", nil, "services.a b"},
		{"run and start", "[services.web]\nrun = \"x\"\nstart = \"y\"\nstop = \"z\"\n[services.web.health]\ntcp = \"h:1\"", nil, "not both"},
		{"no command", "[services.web]\n[services.web.health]\ntcp = \"h:1\"", nil, "set run"},
		{"start without stop", "[services.web]\nstart = \"y\"\n[services.web.health]\ntcp = \"h:1\"", nil, "services.web.stop"},
		{"no health", "[services.web]\nrun = \"x\"", nil, "services.web.health"},
		{"two healths", "[services.web]\nrun = \"x\"\n[services.web.health]\ntcp = \"h:1\"\ncommand = \"true\"", nil, "exactly one"},
		{"bad http", "[services.web]\nrun = \"x\"\n[services.web.health]\nhttp = \"ftp://x\"", nil, "services.web.health.http"},
		{"unknown env", "", []string{"DCROLL_ZOOKEPER_ROOT=/x"}, "DCROLL_ZOOKEPER_ROOT"},
		{"bad env value", "", []string{"DCROLL_ZOOKEEPER_SESSION_TIMEOUT=forever"}, "session_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Sources{File: "dcroll.toml", FileData: []byte(tc.file), Env: tc.env})
			if err == nil {
				t.Fatalf("accepted bad config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(etc.DefaultConfig))
	f.Add([]byte("[services.web]\nrun = \"x\"\n[services.web.health]\ntcp = \"h:1\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(Sources{File: "fuzz.toml", FileData: data, Flags: map[string]any{"host.name": "h"}})
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}
