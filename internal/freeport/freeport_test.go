package freeport

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPortsAreNotPickedTwice checks that a port handed out once is never
// handed out again, in this process or in another one, even after its
// listener is gone (a killed host whose service will bind it again).
func TestPortsAreNotPickedTwice(t *testing.T) {
	if os.Getenv("FREEPORT_CHILD") != "" {
		ports, err := Ports(50)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			os.Stdout.WriteString(strconv.Itoa(p) + "\n")
		}
		return
	}
	first, err := Ports(50)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Ports(50)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPortsAreNotPickedTwice$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var child []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			child = append(child, p)
		}
	}
	if len(child) != 50 {
		t.Fatalf("child printed %d ports, want 50:\n%s", len(child), out)
	}
	seen := map[int]bool{}
	for _, p := range slices.Concat(first, second, child) {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
