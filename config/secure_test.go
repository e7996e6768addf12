package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A duration given as a TOML integer was taken as nanoseconds: interval = 2
// checked health every 2ns. It is an error naming the key.
func TestDurationNeedsUnit(t *testing.T) {
	svc := "[services.web]\nrun = \"x\"\n[services.web.health]\ntcp = \"127.0.0.1:1\"\n"
	for _, tc := range []struct{ file, key string }{
		{svc + "interval = 2", "interval"},
		{svc + "timeout = 1.5", "timeout"},
		{"[zookeeper]\nsession_timeout = 10", "session_timeout"},
		{"[services.web]\nrun = \"x\"\nstop_timeout = 30\n[services.web.health]\ntcp = \"127.0.0.1:1\"", "stop_timeout"},
	} {
		_, err := Load(Sources{File: "dcroll.toml", FileData: []byte(tc.file), Flags: map[string]any{"host.name": "h"}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "unit") {
			t.Errorf("%q: err = %v, want an error naming %s and asking for a unit", tc.file, err, tc.key)
		}
	}
	c, err := Load(Sources{File: "dcroll.toml", FileData: []byte(svc + "interval = \"2s\""), Flags: map[string]any{"host.name": "h"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Services["web"].Health.Interval; got != 2*time.Second {
		t.Fatalf("interval = %s, want 2s", got)
	}
}

// The digest password guards the whole tree: a file others may read is
// refused, and the agent does not start.
func TestPasswordFileMustBePrivate(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := []byte("[zookeeper]\nacl = \"digest\"\nuser = \"dcroll\"\npassword_file = \"" + pw + "\"")
	load := func() error {
		_, err := Load(Sources{File: "dcroll.toml", FileData: file, Flags: map[string]any{"host.name": "h"}})
		return err
	}
	if err := load(); err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(pw, mode); err != nil {
			t.Fatal(err)
		}
		err := load()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "zookeeper.password_file") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: err = %v, want a refusal naming the key and the fix", mode, err)
		}
	}
	os.Chmod(pw, 0o400)
	if err := load(); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
	os.Remove(pw)
	if err := load(); !errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := ReadSecret("k", "relative/pw"); err == nil {
		t.Error("relative path accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if _, err := ReadSecret("k", empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: err = %v", err)
	}
}

func TestTransferBindAndLimits(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("t0ken"), 0o600)
	c, err := Load(Sources{File: "dcroll.toml", FileData: []byte(
		"[transfer]\nbind = \"10.1.2.3\"\nlisten = \":7434\"\ntorrent_listen = \"127.0.0.1:6881\"\nmax_conns = 64\npeer_token_file = \"" + tok + "\""),
		Flags: map[string]any{"host.name": "h"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Transfer
	if tr.Listen != "10.1.2.3:7434" || tr.TorrentListen != "127.0.0.1:6881" || tr.MaxConns != 64 || tr.Advertise != "h:7434" {
		t.Fatalf("transfer = %+v: want listen bound to 10.1.2.3, torrent_listen kept, max_conns 64", tr)
	}
	def, err := Load(Sources{Flags: map[string]any{"host.name": "h"}})
	if err != nil {
		t.Fatal(err)
	}
	if def.Transfer.Listen != ":7434" || def.Transfer.MaxConns != 256 {
		t.Fatalf("defaults changed: %+v", def.Transfer)
	}
	for _, tc := range []struct{ file, want string }{
		{"[transfer]\nbind = \"eth0\"", "transfer.bind"},
		{"[transfer]\nmax_conns = 0", "transfer.max_conns"},
		{"[transfer]\npeer_token_file = \"/nonexistent/token\"", "transfer.peer_token_file"},
	} {
		_, err := Load(Sources{File: "dcroll.toml", FileData: []byte(tc.file), Flags: map[string]any{"host.name": "h"}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one naming %s", tc.file, err, tc.want)
		}
	}
}

func TestServiceUserAndGroup(t *testing.T) {
	base := "[services.web]\nrun = \"x\"\n%s\n[services.web.health]\ntcp = \"127.0.0.1:1\"\n"
	load := func(extra string) (*Config, error) {
		return Load(Sources{File: "dcroll.toml", FileData: []byte(fmt.Sprintf(base, extra)), Flags: map[string]any{"host.name": "h"}})
	}
	c, err := load("")
	if err != nil || c.Services["web"].Credential != nil {
		t.Fatalf("no user: credential %+v, %v; want none", c.Services["web"].Credential, err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	c, err = load("user = \"nobody\"")
	if err != nil {
		t.Fatal(err)
	}
	if cr := c.Services["web"].Credential; cr == nil || strconv.Itoa(int(cr.Uid)) != nobody.Uid || strconv.Itoa(int(cr.Gid)) != nobody.Gid {
		t.Fatalf("user nobody: credential %+v, want uid %s gid %s", cr, nobody.Uid, nobody.Gid)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(os.Getgid())); err == nil {
		c, err = load("user = \"nobody\"\ngroup = \"" + g.Name + "\"")
		if err != nil {
			t.Fatal(err)
		}
		if cr := c.Services["web"].Credential; cr.Gid != uint32(os.Getgid()) {
			t.Fatalf("group %s: gid %d, want %d", g.Name, cr.Gid, os.Getgid())
		}
	}
	for extra, key := range map[string]string{
		"user = \"no-such-user-here\"":   "services.web.user",
		"group = \"no-such-group-here\"": "services.web.group",
	} {
		if _, err := load(extra); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: err = %v, want one naming %s", extra, err, key)
		}
	}
}
