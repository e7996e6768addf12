package modes_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/modes"
)

// renderMan renders roff as man(1) would, on lines long enough that nothing
// wraps, without bold or underlining, and fails on any warning of groff's.
func renderMan(t *testing.T, roff string) string {
	t.Helper()
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not found: apt-get install -y groff-base (.ci/run installs it)")
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-P-cbou", "-rLL=2000n")
	cmd.Stdin = strings.NewReader(roff)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// manSections splits a rendered page into its subsections ("   dcroll
// MODE ..." headings, indented 3) and the rest, by the heading's mode name.
func manSections(page string) map[string]string {
	sections := map[string]string{}
	name := ""
	for _, line := range strings.Split(page, "\n") {
		switch {
		case strings.HasPrefix(line, "   dcroll "):
			name = strings.Fields(line)[1]
		case line != "" && !strings.HasPrefix(line, " "): // a section heading
			name = ""
		}
		sections[name] += line + "\n"
	}
	return sections
}

// flagTag matches a flag's tag line in a rendered page: "       --name VALUE".
func flagTag(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^ {7}(-[a-z], )?--` + regexp.QuoteMeta(name) + `( |$)`)
}

// TestManPageDocumentsEveryMode renders `dcroll man` with groff and checks
// that it documents each mode of the modes table, with its usage, synopsis,
// help and every flag, and the global flags once. The page is generated
// from the same table, so this holds for a mode added later too, unless it
// lacks its documentation (a synopsis, a usage line, the usage of a flag),
// which fails here.
func TestManPageDocumentsEveryMode(t *testing.T) {
	r := dcroll(t, "man")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("dcroll man:\n%s", r)
	}
	if !strings.HasPrefix(r.stdout, ".nh\n.TH \"DCROLL\" \"1\" ") {
		t.Errorf("the page does not start with the title of dcroll(1):\n%.200s", r.stdout)
	}
	page := renderMan(t, r.stdout)
	sections := manSections(page)
	squash := func(s string) string { return strings.Join(strings.Fields(s), " ") }

	for _, want := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "MODES", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(page) {
			t.Errorf("no section %s", want)
		}
	}
	if !strings.Contains(page, "\n       dcroll - roll upgrades across a data center's hosts through ZooKeeper\n") {
		t.Errorf("NAME is not \"dcroll - ...\"")
	}
	for name := range modes.GlobalFlags() {
		if !flagTag(name).MatchString(sections[""]) {
			t.Errorf("global flag --%s is not under GLOBAL OPTIONS", name)
		}
	}

	docs := modes.VisibleModes()
	if len(docs) < 10 {
		t.Fatalf("only %d modes: %+v", len(docs), docs)
	}
	for _, m := range docs {
		sec, ok := sections[m.Name]
		switch {
		case m.Synopsis == "" || m.Usage == "":
			t.Errorf("mode %s has no synopsis or no usage line: it is undocumented", m.Name)
		case !ok:
			t.Errorf("mode %s has no subsection \"dcroll %s\"", m.Name, m.Name)
			continue
		}
		if first, _, _ := strings.Cut(sec, "\n"); squash(first) != "dcroll "+m.Usage {
			t.Errorf("mode %s: heading %q, want its usage line %q", m.Name, squash(first), "dcroll "+m.Usage)
		}
		body := squash(sec)
		for _, want := range []string{m.Synopsis, squash(m.Help)} {
			// Code spans lose their back quotes; examples their indent.
			if want = strings.ReplaceAll(want, "`", ""); !strings.Contains(strings.ToLower(body), strings.ToLower(want)) {
				t.Errorf("mode %s: the page lacks %q", m.Name, want)
			}
		}
		for flag, usage := range m.Flags {
			if _, global := modes.GlobalFlags()[flag]; global {
				if flagTag(flag).MatchString(sec) {
					t.Errorf("mode %s repeats the global flag --%s", m.Name, flag)
				}
				continue
			}
			if usage == "" {
				t.Errorf("mode %s: flag --%s has no usage: it is undocumented", m.Name, flag)
			}
			if !flagTag(flag).MatchString(sec) {
				t.Errorf("mode %s: flag --%s is not in its subsection:\n%s", m.Name, flag, sec)
			}
			if !strings.Contains(body, squash(usage)) {
				t.Errorf("mode %s: the usage of --%s (%q) is not in its subsection", m.Name, flag, usage)
			}
		}
	}
	if _, ok := sections["_serve"]; ok {
		t.Errorf("the hidden mode _serve is in the page")
	}
	// A default is shown as dcroll help shows it.
	if !strings.Contains(squash(sections["stage"]), `address to serve the artifact on (default "0.0.0.0:0")`) {
		t.Errorf("stage --listen's default is not shown:\n%s", sections["stage"])
	}
	if t.Failed() {
		t.Logf("rendered page:\n%s", page)
	}
}

// TestManPageWithManDB reads the page the way man-db does: man -l renders
// it, and lexgrog (which feeds whatis and apropos) finds its NAME line.
func TestManPageWithManDB(t *testing.T) {
	for _, tool := range []string{"man", "lexgrog"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: apt-get install -y man-db", tool)
		}
	}
	r := dcroll(t, "man")
	if r.code != 0 {
		t.Fatalf("dcroll man:\n%s", r)
	}
	path := filepath.Join(t.TempDir(), "dcroll.1")
	if err := os.WriteFile(path, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("man", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man -l: %v\n%s", err, out)
	}
	for _, want := range []string{"DCROLL(1)", "dcroll manual", "dcroll status [--hosts | HOST...]", "--view-interval duration"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("man -l does not show %q:\n%s", want, out)
		}
	}
	out, err = exec.Command("lexgrog", path).CombinedOutput()
	if want := `"dcroll - roll upgrades across a data center's hosts through ZooKeeper"`; err != nil || !strings.Contains(string(out), want) {
		t.Errorf("lexgrog: %v, want %s:\n%s", err, want, out)
	}
}

// TestREADMEListsEveryMode checks that the operator guide's table of modes
// has a row for each mode of the modes table.
func TestREADMEListsEveryMode(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modes.VisibleModes() {
		row := regexp.MustCompile("(?m)^\\| [^\n]*`" + regexp.QuoteMeta(m.Name) + "( [^`]*)?`[^\n]*\\|")
		if !row.Match(readme) {
			t.Errorf("README.md's table of modes has no row for %s", m.Name)
		}
	}
}
