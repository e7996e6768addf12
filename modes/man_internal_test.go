package modes

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// TestManTextIsLiteral renders help text that markdown or roff would read
// as markup and checks that the page shows it as written.
func TestManTextIsLiteral(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not found: apt-get install -y groff-base (.ci/run installs it)")
	}
	for _, text := range []string{
		"- not a list item",
		"+ nor this",
		"1. nor a numbered one, 2) nor this",
		"# not a heading",
		"> not a quote",
		": not a definition",
		"=== not an underline",
		"--- nor this",
		".TH not a roff request",
		"'br not one either",
		"/current/<svc>/<host> is not HTML, &amp; not an entity",
		"max_parallel and *not* emphasis, __nor__ this",
		"[not](a link) and ![not](an image)",
		"a | not | a table",
		`a back\slash, and \fB no font change`,
		"an unpaired ` back quote",
		"version 1.2.3. Ends with a period.",
	} {
		doc := "% \"X\" \"1\"\n# NAME\nx - y\n# TEXT\n" + mdText(text) + "\n"
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-P-cbou", "-rLL=2000n")
		cmd.Stdin = bytes.NewReader(tidy(md2man.Render([]byte(doc))))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%q: groff: %v\n%s", text, err, stderr.String())
			continue
		}
		_, page, _ := strings.Cut(stdout.String(), "TEXT\n")
		if got := strings.Join(strings.Fields(page), " "); !strings.HasPrefix(got, text+" ") {
			t.Errorf("%q is shown as %q", text, got)
		}
	}
	// Code spans stay code: bold, without their back quotes.
	if got := mdText("run `dcroll status` now"); got != "run `dcroll status` now" {
		t.Errorf("a code span became %q", got)
	}
}
