package etc_test

import (
	"os/exec"
	"testing"
)

// The example alert rules load, and fire on the examples of their test
// file and only there, as Prometheus' own promtool judges them.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: apt-get install prometheus (CI installs it)")
	}
	for _, args := range [][]string{
		{"check", "rules", "dcroll.rules.yml"},
		{"test", "rules", "dcroll.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
