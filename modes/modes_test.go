package modes_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/modes"
	"github.com/dcroll/dcroll/roll"
)

// testEnviron is the environment every in-process run gets: explicit, so the
// tests never depend on the DCROLL_* variables of whoever runs them.
var testEnviron = []string{"DCROLL_HOST_NAME=test"}

// result is what one in-process run of dcroll returned and printed.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// firstLine is the first line of s, without its newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// secondLine is the second line of s, or "".
func secondLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return firstLine(rest)
}

// dcroll runs modes.Main in-process with testEnviron, bounded by a deadline
// so that a mode that hangs fails the test instead of the whole run.
func dcroll(t testing.TB, args ...string) result {
	t.Helper()
	return dcrollEnv(t, testEnviron, args...)
}

func dcrollEnv(t testing.TB, environ []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := modes.Main(ctx, args, &stdout, &stderr, environ)
	if ctx.Err() != nil {
		t.Fatalf("dcroll %q ran into the test's deadline:\n%s", args, result{code, stdout.String(), stderr.String()})
	}
	return result{code, stdout.String(), stderr.String()}
}

// writeFile writes text to name in a fresh temporary directory and returns
// its path.
func writeFile(t testing.TB, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// configFile writes a dcroll config file, so that no /etc/dcroll/dcroll.toml
// on the test machine leaks into the tests.
func configFile(t testing.TB, text string) string {
	t.Helper()
	return writeFile(t, "dcroll.toml", text)
}

// syncBuffer is a bytes.Buffer that a running mode may write while the test
// reads it.
type syncBuffer = testutil.Buffer

// openStore connects a store of its own to the test ZooKeeper, to build and
// inspect trees behind dcroll's back.
func openStore(t testing.TB, zkc *zktest.Cluster, root string) *roll.Store {
	t.Helper()
	return rolltest.Open(t, zkc, root)
}

// dump lists every znode from p down with its data and the zxid of its last
// change, so that two dumps are equal only if nothing was written in
// between, not even the same bytes again. A missing p gives an empty dump.
func dump(t testing.TB, conn *zk.Conn, p string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(string)
	walk = func(p string) {
		data, stat, err := conn.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			return
		}
		if err != nil {
			t.Fatalf("get %s: %v", p, err)
		}
		out[p] = fmt.Sprintf("mzxid=%d data=%q", stat.Mzxid, data)
		kids, _, err := conn.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return
		}
		if err != nil {
			t.Fatalf("children %s: %v", p, err)
		}
		for _, k := range kids {
			walk(strings.TrimSuffix(p, "/") + "/" + k)
		}
	}
	walk(p)
	return out
}

// diffDumps describes how two dumps differ, or returns "".
func diffDumps(before, after map[string]string) string {
	var b strings.Builder
	for p, v := range before {
		w, ok := after[p]
		switch {
		case !ok:
			fmt.Fprintf(&b, "removed %s (%s)\n", p, v)
		case w != v:
			fmt.Fprintf(&b, "changed %s: %s -> %s\n", p, v, w)
		}
	}
	for p, w := range after {
		if _, ok := before[p]; !ok {
			fmt.Fprintf(&b, "added %s (%s)\n", p, w)
		}
	}
	return b.String()
}

func TestCLIUsage(t *testing.T) {
	modeList := []string{"agent", "seed", "status", "version", "help"}
	tests := []struct {
		name string
		args []string
		code int
		// stdout and stderr must contain each of these.
		stdout, stderr []string
		// and must not contain any of these.
		notStdout, notStderr []string
		// stderrFirst and stderrSecond prefix the first two lines of stderr.
		stderrFirst, stderrSecond string
		stdoutEmpty, stderrEmpty  bool
	}{
		{
			name:        "help lists the modes",
			args:        []string{"help"},
			code:        0,
			stdout:      append([]string{"usage: dcroll "}, modeList...),
			notStdout:   []string{"_serve", "hidden"},
			stderrEmpty: true,
		},
		{
			name:        "no mode",
			args:        nil,
			code:        2,
			stderrFirst: "usage: dcroll ",
			stderr:      modeList,
			notStderr:   []string{"_serve"},
			stdoutEmpty: true,
		},
		{
			name:        "top-level -h",
			args:        []string{"-h"},
			code:        0,
			stderrFirst: "usage: dcroll ",
			stderr:      modeList,
			notStderr:   []string{"_serve"},
			stdoutEmpty: true,
		},
		{
			name: "help seed",
			args: []string{"help", "seed"},
			code: 0,
			stdout: []string{
				"usage: dcroll seed [--dry-run] [--min-protocol N] FILE",
				"bootstrap or update a data center's tree",
				"FILE lists the services",
				"Flags:", "-dry-run", "-zk", "-root", "-config",
			},
			stderrEmpty: true,
		},
		{
			name: "help status",
			args: []string{"help", "status"},
			code: 0,
			stdout: []string{
				"usage: dcroll status [--hosts | HOST...] [--json [--summary]] [--watch [--interval 2s]]",
				"-json", "-summary", "-hosts", "-watch", "-interval", "-zk", "-root", "-config",
			},
			stderrEmpty: true,
		},
		{
			name:        "help agent",
			args:        []string{"help", "agent"},
			code:        0,
			stdout:      []string{"usage: dcroll agent [flags]", "-view-interval", "-zk"},
			stderrEmpty: true,
		},
		{
			name:        "help version",
			args:        []string{"help", "version"},
			code:        0,
			stdout:      []string{"usage: dcroll version", "-zk"},
			stderrEmpty: true,
		},
		{
			name:         "help bogus",
			args:         []string{"help", "bogus"},
			code:         2,
			stderrFirst:  `dcroll help: unknown mode "bogus"`,
			stderrSecond: "usage: dcroll ",
			stderr:       modeList,
			stdoutEmpty:  true,
		},
		{
			name:        "seed -h",
			args:        []string{"seed", "-h"},
			code:        0,
			stderrFirst: "usage: dcroll seed [--dry-run] [--min-protocol N] FILE",
			stderr:      []string{"-dry-run", "-zk", "-root", "-config"},
			stdoutEmpty: true,
		},
		{
			name:        "status --help",
			args:        []string{"status", "--help"},
			code:        0,
			stderrFirst: "usage: dcroll status ",
			stderr:      []string{"-json", "-watch", "-interval", "-zk"},
			stdoutEmpty: true,
		},
		{
			name:         "unknown mode",
			args:         []string{"bogus"},
			code:         2,
			stderrFirst:  `dcroll: unknown mode "bogus"`,
			stderrSecond: "usage: dcroll ",
			stderr:       modeList,
			notStderr:    []string{"_serve"},
			stdoutEmpty:  true,
		},
		{
			name:         "unknown mode after global flags",
			args:         []string{"--zk", "127.0.0.1:1", "bogus", "--json"},
			code:         2,
			stderrFirst:  `dcroll: unknown mode "bogus"`,
			stderrSecond: "usage: dcroll ",
			stdoutEmpty:  true,
		},
		{
			name:         "unknown mode flag",
			args:         []string{"status", "--bogus"},
			code:         2,
			stderrFirst:  "dcroll status: unknown flag: --bogus",
			stderrSecond: "usage: dcroll status ",
			stderr:       []string{"-json", "-zk"},
			stdoutEmpty:  true,
		},
		{
			name:         "unknown global flag before the mode",
			args:         []string{"--nope", "status"},
			code:         2,
			stderrFirst:  "dcroll: unknown flag: --nope",
			stderrSecond: "usage: dcroll ",
			stderr:       modeList,
			stdoutEmpty:  true,
		},
		{
			name:         "bad flag value",
			args:         []string{"status", "--interval", "soon"},
			code:         2,
			stderrFirst:  `dcroll status: invalid argument "soon" for "--interval" flag`,
			stderrSecond: "usage: dcroll status ",
			stdoutEmpty:  true,
		},
		{
			name:         "global flag without its value",
			args:         []string{"status", "--zk"},
			code:         2,
			stderrFirst:  "dcroll status: flag needs an argument: --zk",
			stderrSecond: "usage: dcroll status ",
			stdoutEmpty:  true,
		},
		{
			name:         "status --interval 0",
			args:         []string{"status", "--interval", "0s"},
			code:         2,
			stderrFirst:  "dcroll status: --interval must be positive",
			stderrSecond: "usage: dcroll status ",
			stdoutEmpty:  true,
		},
		{
			name:         "status of a bad host name",
			args:         []string{"status", "bad/name"},
			code:         2,
			stderrFirst:  `dcroll status: host "bad/name" is not a valid host name`,
			stderrSecond: "usage: dcroll status ",
			stdoutEmpty:  true,
		},
		{
			name:         "seed without a file",
			args:         []string{"seed"},
			code:         2,
			stderrFirst:  "dcroll seed: want exactly one seed FILE, got 0 arguments",
			stderrSecond: "usage: dcroll seed [--dry-run] [--min-protocol N] FILE",
			stdoutEmpty:  true,
		},
		{
			name:         "seed with two files",
			args:         []string{"seed", "a.toml", "b.toml"},
			code:         2,
			stderrFirst:  "dcroll seed: want exactly one seed FILE, got 2 arguments",
			stderrSecond: "usage: dcroll seed [--dry-run] [--min-protocol N] FILE",
			stdoutEmpty:  true,
		},
		{
			// Flags count wherever they stand: --dry-run after FILE is
			// the flag, and FILE the one argument.
			name:        "seed with a flag after the file",
			args:        []string{"seed", "missing.toml", "--dry-run"},
			code:        1,
			stderrFirst: "dcroll seed: open missing.toml: no such file or directory",
			stdoutEmpty: true,
		},
		{
			name:        "-- ends the flags",
			args:        []string{"seed", "--", "--dry-run"},
			code:        1,
			stderrFirst: "dcroll seed: open --dry-run: no such file or directory",
			stdoutEmpty: true,
		},
		{
			name:         "a long flag with one dash",
			args:         []string{"status", "-json"},
			code:         2,
			stderrFirst:  `dcroll status: unknown shorthand flag: 'j' in -json (long flags take two dashes: --json)`,
			stderrSecond: "usage: dcroll status ",
			stdoutEmpty:  true,
		},
		{
			name:         "a misspelt mode",
			args:         []string{"stauts"},
			code:         2,
			stderrFirst:  `dcroll: unknown mode "stauts"; did you mean "status"?`,
			stderrSecond: "usage: dcroll ",
			stdoutEmpty:  true,
		},
		{
			name:        "a mode cut short",
			args:        []string{"ord", "--auto"},
			code:        2,
			stderrFirst: `dcroll: unknown mode "ord"; did you mean "order"?`,
			stdoutEmpty: true,
		},
		{
			name:        "a name far from every mode",
			args:        []string{"deploy"},
			code:        2,
			stderrFirst: `dcroll: unknown mode "deploy"`,
			notStderr:   []string{"did you mean"},
			stdoutEmpty: true,
		},
		{
			name:        "help for a misspelt mode",
			args:        []string{"help", "sede"},
			code:        2,
			stderrFirst: `dcroll help: unknown mode "sede"; did you mean "seed"?`,
			stdoutEmpty: true,
		},
		{
			name:         "agent with an argument",
			args:         []string{"agent", "extra"},
			code:         2,
			stderrFirst:  `dcroll agent: unexpected argument "extra"`,
			stderrSecond: "usage: dcroll agent [flags]",
			stdoutEmpty:  true,
		},
		{
			name:         "version with an argument",
			args:         []string{"version", "extra"},
			code:         2,
			stderrFirst:  `dcroll version: unexpected argument "extra"`,
			stderrSecond: "usage: dcroll version",
			stdoutEmpty:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dcroll(t, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d", r.code, tt.code)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q", s)
				}
			}
			for _, s := range tt.notStdout {
				if strings.Contains(r.stdout, s) {
					t.Errorf("stdout contains %q", s)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q", s)
				}
			}
			for _, s := range tt.notStderr {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr contains %q", s)
				}
			}
			if got := firstLine(r.stderr); !strings.HasPrefix(got, tt.stderrFirst) {
				t.Errorf("stderr's first line is %q, want it to start with %q", got, tt.stderrFirst)
			}
			if got := secondLine(r.stderr); !strings.HasPrefix(got, tt.stderrSecond) {
				t.Errorf("stderr's second line is %q, want it to start with %q", got, tt.stderrSecond)
			}
			if tt.stdoutEmpty && r.stdout != "" {
				t.Errorf("stdout is not empty")
			}
			if tt.stderrEmpty && r.stderr != "" {
				t.Errorf("stderr is not empty")
			}
			if t.Failed() {
				t.Logf("dcroll %q:\n%s", tt.args, r)
			}
		})
	}
}

// TestCLIHelpListsEveryVisibleMode checks that help names each mode with its
// synopsis on a line of its own, so a mode added later shows up too.
func TestCLIHelpListsEveryVisibleMode(t *testing.T) {
	r := dcroll(t, "help")
	if r.code != 0 {
		t.Fatalf("dcroll help:\n%s", r)
	}
	for _, m := range []string{"agent", "seed", "status", "version", "help"} {
		found := false
		for _, line := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == m {
				found = true
			}
		}
		if !found {
			t.Errorf("help has no line for mode %q:\n%s", m, r.stdout)
		}
	}
	// The hidden mode still runs its help, for those who know it.
	if r := dcroll(t, "help", "_serve"); r.code != 0 || !strings.Contains(r.stdout, "usage: dcroll _serve") {
		t.Errorf("dcroll help _serve:\n%s", r)
	}
}

func TestCLIVersion(t *testing.T) {
	r := dcroll(t, "version")
	if r.code != 0 {
		t.Fatalf("dcroll version:\n%s", r)
	}
	if !strings.HasPrefix(r.stdout, "dcroll ") {
		t.Errorf("version output %q does not start with %q", r.stdout, "dcroll ")
	}
	if !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("version output %q lacks the Go version %s", r.stdout, runtime.Version())
	}
	if !strings.Contains(r.stdout, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("version output %q lacks %s/%s", r.stdout, runtime.GOOS, runtime.GOARCH)
	}
	if strings.Count(r.stdout, "\n") != 1 || !strings.HasSuffix(r.stdout, "\n") {
		t.Errorf("version output %q is not one line", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("version wrote to stderr: %q", r.stderr)
	}
}

// TestCLIVersionFlag checks that --version prints what the version mode
// prints, and nothing else.
func TestCLIVersionFlag(t *testing.T) {
	want := dcroll(t, "version")
	for _, args := range [][]string{{"--version"}, {"--zk", "127.0.0.1:1", "--version"}} {
		if r := dcroll(t, args...); r.code != 0 || r.stdout != want.stdout || r.stderr != "" {
			t.Errorf("dcroll %q:\n%s\nwant the output of dcroll version:\n%s", args, r, want)
		}
	}
}

// TestCLIFlagsAfterArguments checks that a flag after the arguments is
// parsed, not taken for an argument: each command gets past its usage
// checks and fails only on the ZooKeeper that is not there.
func TestCLIFlagsAfterArguments(t *testing.T) {
	archive, _, _ := releaseArchive(t, "2")
	seedFile := writeFile(t, "seed.toml", "[services.web]\nquorum = 1\n")
	cfg := configFile(t, "[zookeeper]\nsession_timeout = \"200ms\"\n")
	for _, args := range [][]string{
		{"stage", "web", "2", archive, "--timeout", "5m"},
		{"stage", "web", "2", archive, "--replace", "--url", "http://origin/web.tar", "--detach"},
		{"seed", seedFile, "--dry-run"},
		{"order", "web", "--zk", "127.0.0.1:1"},
		{"status", "--json", "--interval=1s"},
		{"pause", "web", "--root", "/elsewhere"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := dcroll(t, append(append([]string{"--config", cfg}, args...), "--zk", "127.0.0.1:1")...)
			if r.code != modes.ExitError || strings.Contains(r.stderr, "usage:") || !strings.Contains(r.stderr, "127.0.0.1:1") {
				t.Errorf("want exit 1 for the unreachable ZooKeeper, and no usage error:\n%s", r)
			}
		})
	}
}

// TestCLIBadConfig checks that config errors exit 1 naming what is wrong,
// before anything dials ZooKeeper (the servers named here are closed).
func TestCLIBadConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.toml")
	seedFile := writeFile(t, "seed.toml", "[services.db]\nquorum = 1\n")
	tests := []struct {
		name    string
		config  string // file contents; "" passes missing instead
		environ []string
		mode    []string
		want    []string
	}{
		{
			name:   "unknown key in the file",
			config: "[zookeeper]\nservres = [\"127.0.0.1:1\"]\n",
			mode:   []string{"status"},
			want:   []string{"unknown key", "zookeeper.servres"},
		},
		{
			name:   "unknown table in the file",
			config: "[zookeper]\nroot = \"/x\"\n",
			mode:   []string{"status"},
			want:   []string{"unknown key", "zookeper"},
		},
		{
			name:   "unknown key, seed",
			config: "[host]\nnmae = \"x\"\n",
			mode:   []string{"seed", seedFile},
			want:   []string{"unknown key", "host.nmae"},
		},
		{
			name:   "bad value",
			config: "[zookeeper]\nsession_timeout = \"1h\"\n",
			mode:   []string{"status"},
			want:   []string{"zookeeper.session_timeout", "1h"},
		},
		{
			name:   "not TOML",
			config: "[zookeeper\n",
			mode:   []string{"status"},
			want:   []string{"dcroll.toml"},
		},
		{
			name: "missing explicit config file",
			mode: []string{"status"},
			want: []string{missing},
		},
		{
			name: "missing explicit config file, agent",
			mode: []string{"agent"},
			want: []string{missing},
		},
		{
			name:    "unknown environment variable",
			config:  "# empty\n",
			environ: []string{"DCROLL_HOST_NAME=test", "DCROLL_ZOOKEEPER_SERVER=127.0.0.1:1"},
			mode:    []string{"status"},
			want:    []string{"DCROLL_ZOOKEEPER_SERVER", "unknown variable"},
		},
		{
			name:    "unknown environment variable, agent",
			config:  "# empty\n",
			environ: []string{"DCROLL_BOGUS=1"},
			mode:    []string{"agent"},
			want:    []string{"DCROLL_BOGUS"},
		},
		{
			name:    "bad environment value",
			config:  "# empty\n",
			environ: []string{"DCROLL_LOG_LEVEL=loud"},
			mode:    []string{"status"},
			want:    []string{"log.level", "loud"},
		},
		{
			name:   "bad --root",
			config: "# empty\n",
			mode:   []string{"status", "--root", "dc/"},
			want:   []string{"zookeeper.root", "dc/"},
		},
		{
			name:   "bad --zk",
			config: "# empty\n",
			mode:   []string{"status", "--zk", "localhost"},
			want:   []string{"zookeeper.servers", "localhost"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := missing
			if tt.config != "" {
				path = configFile(t, tt.config)
			}
			environ := tt.environ
			if environ == nil {
				environ = testEnviron
			}
			args := append([]string{"--config", path, "--zk", "127.0.0.1:1"}, tt.mode...)
			r := dcrollEnv(t, environ, args...)
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
			prefix := "dcroll " + tt.mode[0] + ": "
			if !strings.HasPrefix(r.stderr, prefix) {
				t.Errorf("stderr does not start with %q", prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q", w)
				}
			}
			if strings.Contains(r.stderr, "usage:") {
				t.Errorf("a config error printed the usage")
			}
			if r.stdout != "" {
				t.Errorf("stdout is not empty")
			}
			if t.Failed() {
				t.Logf("dcroll %q:\n%s", args, r)
			}
		})
	}
}
