package modes_test

import (
	"strings"
	"testing"
)

// The demo itself runs as a real process in demo/demo_test.go; these check
// its command line.

func TestDemoUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--hosts", "2"},
		{"demo", "--hosts", "31"},
		{"demo", "extra"},
		{"demo", "--no-such-flag"},
	} {
		r := dcroll(t, args...)
		if r.code != 2 {
			t.Errorf("dcroll %q: %s\nwant exit 2", args, r)
		}
	}
}

func TestDemoIsListedWithItsFlags(t *testing.T) {
	if r := dcroll(t, "help"); !strings.Contains(r.stdout, "demo ") {
		t.Errorf("help does not list demo:\n%s", r)
	}
	r := dcroll(t, "help", "demo")
	for _, want := range []string{"--hosts", "--non-interactive", "--keep", "apt-get install -y zookeeper", "DEMO_ZOOKEEPER"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help demo lacks %q:\n%s", want, r)
		}
	}
}

func TestDemoWithoutJavaSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no java
	r := dcroll(t, "demo", "--non-interactive")
	if r.code != 1 || !strings.Contains(r.stderr, "sudo apt-get install -y zookeeper") {
		t.Fatalf("%s\nwant exit 1 and the install command", r)
	}
}
