package modes_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/modes"
)

// TestMain runs this test binary as dcroll itself when it is started under
// that name: the completion tests put it in a shell's PATH as "dcroll", so
// that the shell's completion asks a real dcroll process.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "dcroll" {
		os.Exit(modes.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
	}
	os.Exit(m.Run())
}

// dcrollInPath makes a directory holding this test binary as "dcroll" and
// returns a PATH that finds it first.
func dcrollInPath(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "dcroll")); err != nil {
		t.Fatal(err)
	}
	return dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// visibleModeNames are the modes help lists, and help itself, sorted.
func visibleModeNames() []string {
	names := []string{"help"}
	for _, m := range modes.VisibleModes() {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	return names
}

// flagNames are the long flags of a mode, the global ones and --help, as
// completion offers them, sorted.
func flagNames(mode string) []string {
	var names []string
	for _, m := range modes.VisibleModes() {
		if m.Name == mode {
			for f := range m.Flags {
				names = append(names, "--"+f)
			}
		}
	}
	for f := range modes.GlobalFlags() {
		names = append(names, "--"+f)
	}
	names = append(names, "--help")
	sort.Strings(names)
	return slices.Compact(names)
}

// completions parses an answer to `dcroll __complete`: the candidates
// without their descriptions, and the directive line.
func completions(t *testing.T, out string) (candidates []string, directive string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	directive = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		c, _, _ := strings.Cut(l, "\t")
		candidates = append(candidates, c)
	}
	sort.Strings(candidates)
	return candidates, directive
}

// TestCompletionRequests checks dcroll's answers to the completion
// scripts: modes, each mode's flags, and file names only where a mode or
// flag takes a file. Directive 4 is "no file names", 0 "the shell's default
// (file names)".
func TestCompletionRequests(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want      []string
		directive string
	}{
		{[]string{""}, visibleModeNames(), ":4"},
		{[]string{"st"}, []string{"stage", "status"}, ":4"},
		{[]string{"--zk", "h1:2181", "--root", "/dc", "st"}, []string{"stage", "status"}, ":4"},
		{[]string{"help", ""}, slices.DeleteFunc(visibleModeNames(), func(s string) bool { return s == "help" }), ":4"},
		{[]string{"stage", "--"}, flagNames("stage"), ":4"},
		{[]string{"status", "--j"}, []string{"--json"}, ":4"},
		{[]string{"status", "--json", "--w"}, []string{"--watch"}, ":4"},
		{[]string{"completion", ""}, []string{"bash", "zsh"}, ":4"},
		{[]string{"seed", ""}, nil, ":0"},
		{[]string{"seed", "--dry-run", ""}, nil, ":0"},
		{[]string{"stage", "db", "1.0", ""}, nil, ":0"},
		{[]string{"stage", "db", ""}, nil, ":4"},
		{[]string{"order", ""}, nil, ":4"},
		{[]string{"status", "--config", ""}, nil, ":0"},
		{[]string{"stage", "--listen", ""}, nil, ":4"},
	} {
		r := dcroll(t, append([]string{"__complete"}, tc.args...)...)
		if r.code != 0 {
			t.Errorf("__complete %q:\n%s", tc.args, r)
			continue
		}
		got, directive := completions(t, r.stdout)
		if !slices.Equal(got, tc.want) || directive != tc.directive {
			t.Errorf("__complete %q: %q %s, want %q %s", tc.args, got, directive, tc.want, tc.directive)
		}
	}
	// A request without the word being typed is an error, not a panic.
	if r := dcroll(t, "__complete"); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "dcroll: completion: ") {
		t.Errorf("__complete without arguments: want exit 1 and an error:\n%s", r)
	}
	// Descriptions are the modes' synopses and the flags' usages.
	r := dcroll(t, "__complete", "sta")
	if !strings.Contains(r.stdout, "status\tshow the fleet: per service, the deploy, and the hosts that need attention") {
		t.Errorf("status is not described by its synopsis:\n%s", r.stdout)
	}
	r = dcroll(t, "__complete", "status", "--config")
	if !strings.Contains(r.stdout, "--config\tconfig FILE (default /etc/dcroll/dcroll.toml)") {
		t.Errorf("--config is not described by its usage:\n%s", r.stdout)
	}
}

// bashComplete runs bash with bash-completion and the script of `dcroll
// completion bash`, then completes each line as Tab at its end would, and
// returns the candidates of each, sorted.
func bashComplete(t *testing.T, lines ...string) [][]string {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found: apt-get install -y bash")
	}
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Skip("bash-completion not installed: apt-get install -y bash-completion (.ci/run installs it)")
	}
	r := dcroll(t, "completion", "bash")
	if r.code != 0 {
		t.Fatalf("dcroll completion bash:\n%s", r)
	}
	script := filepath.Join(t.TempDir(), "dcroll.bash")
	if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	// What bash sets before it calls a completion function, for a Tab at
	// the end of the line (COMP_TYPE 9).
	const prog = `source ` + bashCompletion + `
source "$1"
shift
complete -p dcroll
tab() {
	COMP_LINE=$1 COMP_POINT=${#1} COMP_TYPE=9
	read -ra COMP_WORDS <<<"$1"
	[[ $1 == *' ' ]] && COMP_WORDS+=('')
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	__start_dcroll dcroll "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
	echo "${COMPREPLY[*]}"
}
for line; do tab "$line"; done
`
	cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", prog, "bash", script}, lines...)...)
	cmd.Env = []string{"PATH=" + dcrollInPath(t), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(lines)+1 {
		t.Fatalf("bash printed %d lines for %d completions:\n%s", len(got), len(lines), out)
	}
	if want := "complete -o default -F __start_dcroll dcroll"; got[0] != want {
		t.Errorf("complete -p dcroll: %q, want %q", got[0], want)
	}
	var all [][]string
	for _, l := range got[1:] {
		c := strings.Fields(l)
		sort.Strings(c)
		all = append(all, c)
	}
	return all
}

// TestBashCompletion completes dcroll command lines in a real bash, with
// the script dcroll prints and dcroll itself answering the script.
func TestBashCompletion(t *testing.T) {
	cases := []struct {
		line string
		want []string
	}{
		{"dcroll ", visibleModeNames()},
		{"dcroll st", []string{"stage", "status"}},
		{"dcroll --zk h1:2181 fo", []string{"forget"}},
		{"dcroll help se", []string{"seed"}},
		{"dcroll status --", flagNames("status")},
		{"dcroll stage --re", []string{"--replace"}},
		{"dcroll stage db 1.0 --tor", []string{"--torrent-advertise", "--torrent-listen"}},
		{"dcroll order --a", []string{"--auto", "--auto-rollback"}},
		{"dcroll completion ", []string{"bash", "zsh"}},
		{"dcroll nosuchmode --", nil},
	}
	var lines []string
	for _, c := range cases {
		lines = append(lines, c.line)
	}
	got := bashComplete(t, lines...)
	for i, c := range cases {
		if !slices.Equal(got[i], c.want) {
			t.Errorf("%q<Tab>: %q, want %q", c.line, got[i], c.want)
		}
	}
}

// TestZshCompletionLoads checks the script of `dcroll completion zsh` the
// way zsh finds an installed one: as the file _dcroll in fpath, which
// compinit registers for the command dcroll.
func TestZshCompletionLoads(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("zsh not found: apt-get install -y zsh (.ci/run installs it)")
	}
	r := dcroll(t, "completion", "zsh")
	if r.code != 0 {
		t.Fatalf("dcroll completion zsh:\n%s", r)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "_dcroll"), []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-n", filepath.Join(dir, "_dcroll")).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n _dcroll: %v\n%s", err, out)
	}
	cmd := exec.Command("zsh", "-f", "-c", `fpath=("$1" $fpath); autoload -Uz compinit && compinit -u -D && print -r -- "$_comps[dcroll]"`, "zsh", dir)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_dcroll" {
		t.Errorf("compinit with _dcroll in fpath: %v; completes dcroll with %q, want _dcroll", err, out)
	}
}

// TestCompletionUsage checks the completion mode's command line.
func TestCompletionUsage(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"completion", "bash", "zsh"}} {
		r := dcroll(t, args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "usage: dcroll completion bash|zsh") {
			t.Errorf("dcroll %q: want exit 2 and the usage:\n%s", args, r)
		}
	}
	if r := dcroll(t, "completion", "fish"); !strings.Contains(r.stderr, `unknown shell "fish": want bash or zsh`) {
		t.Errorf("dcroll completion fish does not name the shell:\n%s", r)
	}
}
