package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/internal/benchtb"
)

// TestIntegration_Rollout runs the benchmark on three hosts, one case, so
// that it cannot rot. It checks counts, never a time: every host took one
// turn, one at a time (max_parallel 1), and ended online on the new
// version; and the table has its row.
func TestIntegration_Rollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and three agents; not in -short")
	}
	exe := filepath.Join(t.TempDir(), "dcroll")
	if out, err := exec.Command("go", "build", "-race", "-o", exe, "github.com/dcroll/dcroll").CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	o, err := parseFlags([]string{"--hosts=3", "--runs=1", "--cases=100ms/300ms", "--starts=2", "--timeout=2m", "--exe=race=" + exe}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	tb := benchtb.New("dcroll-rollout-")
	defer tb.Close()
	var res results
	if err := benchtb.Catch(func() (err error) {
		res, err = bench(context.Background(), tb, o, testWriter{t})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rs := res.rollouts["race"][o.cases[0]]
	if len(rs) != 1 {
		t.Fatalf("%d rollouts, want 1", len(rs))
	}
	r := rs[0]
	if r.taken != 3 || r.maxInTurn != 1 || r.onNew != 3 || r.turns != 3 {
		t.Errorf("turns taken %d (want 3), most at once %d (want 1), hosts on v2 %d (want 3), turns counted %d (want 3)",
			r.taken, r.maxInTurn, r.onNew, r.turns)
	}
	if n := len(res.started["race"]); n != 2 {
		t.Errorf("%d service starts timed, want 2", n)
	}
	var out bytes.Buffer
	printTable(&out, o, res)
	t.Log("\n" + out.String())
	if !strings.Contains(out.String(), "| race | 100ms | 300ms | ") {
		t.Errorf("the table lacks the case's row:\n%s", out.String())
	}
}

func TestParseFlagsRefusesBadCases(t *testing.T) {
	for _, args := range [][]string{
		{"--cases=250ms"}, {"--cases=x/1s"}, {"--cases=250ms/0s"}, {"--cases=0s/1s"},
		{"--hosts=1"}, {"--runs=0"}, {"--exe=nolabel"}, {"--exe=a=/does/not/exist"}, {"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
	o, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.hosts != 8 || o.maxParallel != 1 || len(o.cases) != 4 || o.runs != 3 {
		t.Errorf("defaults: %+v", o)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
