package modes_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/modes"
)

// readmeCommand is one dcroll command of README.md, as written there.
type readmeCommand struct {
	line  int
	text  string
	args  []string // without "dcroll"
	block int      // the fenced block it is in, counted from 1; 0 in prose
}

var (
	// A command in a fenced block starts its line: "dcroll ...",
	// "./dcroll ..." or a prompt "$ dcroll ...". Indented lines are
	// diagrams.
	fencedCommand = regexp.MustCompile(`^(?:\$ |\./)?dcroll( .*)?$`)
	// A command in prose is a code span.
	inlineCommand = regexp.MustCompile("`(?:\\./)?dcroll( [^`]*)?`")
	// A placeholder is a word in capitals: SVC, PATH, MODE.
	placeholder = regexp.MustCompile(`^[A-Z][A-Z_]+$`)
)

// readmeCommands extracts every dcroll command of README.md.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []readmeCommand
	block, inFence := 0, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			if inFence {
				block++
			}
			continue
		}
		var found []string
		if inFence {
			if m := fencedCommand.FindStringSubmatch(line); m != nil {
				found = append(found, m[1])
			}
		} else {
			for _, m := range inlineCommand.FindAllStringSubmatch(line, -1) {
				found = append(found, m[1])
			}
		}
		for _, rest := range found {
			text, _, _ := strings.Cut(rest, " #") // a comment
			text = strings.TrimSuffix(strings.TrimSpace(text), "&")
			c := readmeCommand{line: n, text: "dcroll " + strings.TrimSpace(text), args: strings.Fields(text)}
			if inFence {
				c.block = block
			}
			cmds = append(cmds, c)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds
}

// notRunnable says why a README command is not run by the test, or "".
// Everything else must run as written.
func notRunnable(c readmeCommand) string {
	for _, a := range c.args {
		if strings.ContainsAny(a, "[]") || strings.Contains(a, "...") || placeholder.MatchString(a) {
			return "a synopsis with placeholders, not a command"
		}
	}
	for _, a := range c.args {
		switch a {
		case "agent":
			return "runs until stopped; agent/ and e2e/ run agents"
		case "demo":
			return "runs a data center of its own for minutes; demo/ and modes/demo_test.go test it"
		case "--wait":
			return "waits for a rollout by real agents, and an interrupt is not a success; agent.TestIntegration_OrderWaitGatesOnTheDeploy and agent.TestIntegration_StageWaitGatesOnTheRollout run it"
		}
	}
	if len(c.args) == 0 {
		return "the program's name alone"
	}
	return ""
}

// The README's other commands are not dcroll's and are not run here:
// `make demo` and `make test` (the test suite itself and the demo's own
// tests), `apt-get install ./dcroll_*.deb`, `systemctl start dcroll` and
// `journalctl -u dcroll -f` (they need a host with systemd; packaging/
// installs the .deb with dpkg and checks the unit with systemd-analyze).

// TestIntegration_READMECommands runs every dcroll command of README.md as
// written, against a real ZooKeeper (DCROLL_ZOOKEEPER_SERVERS, the default
// root /dc otherwise), in a directory holding the files the commands name.
// The commands of one fenced block run in order against one data center, as
// an operator would type them; a command in prose runs against a data
// center of its own. Commands that serve or watch until interrupted (stage,
// status --watch) are interrupted, as with Ctrl-C, once they have printed.
// Any usage error fails, and so does any other failure.
func TestIntegration_READMECommands(t *testing.T) {
	zkc := zktest.Standalone(t)
	cmds := readmeCommands(t)
	if len(cmds) < 10 {
		t.Fatalf("found only %d dcroll commands in README.md: %v", len(cmds), cmds)
	}

	seed := readmeSeedFile(t)
	dir := t.TempDir()
	t.Chdir(dir)
	for name, content := range map[string]string{"seed.toml": seed} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		for _, a := range c.args {
			writeReleaseNamed(t, dir, a)
		}
	}

	ran := 0
	for i, c := range cmds {
		name := fmt.Sprintf("line %d: %s", c.line, c.text)
		if why := notRunnable(c); why != "" {
			t.Logf("not run: %s: %s", name, why)
			continue
		}
		// One data center per fenced block and per command in prose, seeded
		// with the README's catalog.
		root := fmt.Sprintf("/readme-block-%d", c.block)
		if c.block == 0 {
			root = fmt.Sprintf("/readme-%d", i)
		}
		environ := append([]string{"DCROLL_ZOOKEEPER_SERVERS=" + zkc.ConnString(), "DCROLL_ZOOKEEPER_ROOT=" + root}, testEnviron...)
		if c.block == 0 || !seeded(cmds[:i], c.block) {
			if r := dcrollEnv(t, environ, "seed", "seed.toml"); r.code != 0 {
				t.Fatalf("seed %s before %s:\n%s", root, name, r)
			}
		}
		t.Run(name, func(t *testing.T) {
			r := runUntilPrinted(t, environ, c.args)
			if r.code != 0 {
				t.Errorf("%s: exit %d, want 0:\n%s", c.text, r.code, r)
			}
		})
		ran++
	}
	t.Logf("ran %d of %d dcroll commands of README.md", ran, len(cmds))
}

// seeded reports whether an earlier command of block has run already (the
// block's data center is then seeded).
func seeded(earlier []readmeCommand, block int) bool {
	for _, c := range earlier {
		if c.block == block && notRunnable(c) == "" {
			return true
		}
	}
	return false
}

// runUntilPrinted runs dcroll in-process. A mode that serves or watches
// until interrupted is interrupted once it has printed its first line.
func runUntilPrinted(t *testing.T, environ, args []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- modes.Main(run, args, &stdout, &stderr, environ) }()
	var code int
	testutil.Eventually(t, 25*time.Second, func() error {
		select {
		case code = <-done:
			return nil
		default:
		}
		if strings.Contains(stdout.String(), "\n") {
			interrupt()
		}
		return fmt.Errorf("still running; stdout so far: %q, stderr: %q", stdout.String(), stderr.String())
	})
	return result{code, stdout.String(), stderr.String()}
}

// readmeSeedFile is the seed file of the README's operator guide: the TOML
// block that starts with "# seed.toml".
func readmeSeedFile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "```toml\n# seed.toml")
	if !ok {
		t.Fatal("README.md has no ```toml block starting with # seed.toml")
	}
	body, _, _ := strings.Cut(after, "```")
	return "# seed.toml" + body
}

// writeReleaseNamed creates the release an argument names: an archive for
// *.tar.gz and *.tar, a release directory for a path ending in "/".
func writeReleaseNamed(t *testing.T, dir, arg string) {
	t.Helper()
	path := filepath.Join(dir, arg)
	switch {
	case strings.Contains(arg, "://"): // a URL: the origin of --detach
	case strings.HasSuffix(arg, ".tar.gz"), strings.HasSuffix(arg, ".tar"):
		_, data := releaseDir(t, arg)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	case strings.HasSuffix(arg, "/") && strings.HasPrefix(arg, "./"):
		src, _ := releaseDir(t, arg)
		if err := os.CopyFS(path, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestREADMEHostConfigsLoad loads every host config of README.md (a
// ```toml block whose first line names /etc/dcroll/dcroll.toml) as the
// agent would, so that an example an operator copies is one dcroll accepts.
func TestREADMEHostConfigsLoad(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(data), "```toml\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		if !strings.HasPrefix(body, "# /etc/dcroll/dcroll.toml") {
			continue
		}
		n++
		if _, err := config.Load(config.Sources{FileData: []byte(body)}); err != nil {
			t.Errorf("README.md's host config does not load: %v\n%s", err, body)
		}
	}
	if n == 0 {
		t.Errorf("README.md has no ```toml block starting with # /etc/dcroll/dcroll.toml")
	}
}
