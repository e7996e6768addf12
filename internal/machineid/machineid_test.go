package machineid

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The vector is systemd's own: on a machine whose /etc/machine-id is
// 3d1219c7c4c5404aaa1f6d2a48adfda4,
// `systemd-id128 --app-specific=49d16fbfbd49418393b35a9249dd7076 machine-id`
// prints c25bc3a503964cee95e2695ec13a291a.
func TestDeriveMatchesSystemd(t *testing.T) {
	id, err := Derive("3d1219c7c4c5404aaa1f6d2a48adfda4")
	if err != nil {
		t.Fatal(err)
	}
	if id != "c25bc3a503964cee95e2695ec13a291a" {
		t.Fatalf("Derive = %s, want systemd's c25bc3a503964cee95e2695ec13a291a", id)
	}
	if again, _ := Derive("3D1219C7C4C5404AAA1F6D2A48ADFDA4"); again != id {
		t.Errorf("upper-case hex gives %s, want %s", again, id)
	}
	if other, _ := Derive("3d1219c7c4c5404aaa1f6d2a48adfda5"); other == id {
		t.Error("two machine ids give one id")
	}
}

func TestDeriveRefusesWhatIsNotAMachineID(t *testing.T) {
	for _, bad := range []string{"", "3d1219c7", "3d1219c7c4c5404aaa1f6d2a48adfda4ff", "zz1219c7c4c5404aaa1f6d2a48adfda4", "web-01"} {
		if id, err := Derive(bad); err == nil || !strings.Contains(err.Error(), "not a machine id") {
			t.Errorf("Derive(%q) = %q, %v: want an error saying it is not a machine id", bad, id, err)
		}
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadTakesTheFirstFileThatHoldsAMachineID(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := write(t, dir, "empty", "\n")
	uninit := write(t, dir, "uninit", "uninitialized\n")
	garbage := write(t, dir, "garbage", "not-an-id\n")
	good := write(t, dir, "good", "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
	second := write(t, dir, "second", "00000000000000000000000000000001\n")

	id, from, err := Read(missing, empty, uninit, garbage, good, second)
	if err != nil || from != good || id != "c25bc3a503964cee95e2695ec13a291a" {
		t.Fatalf("Read = %q from %q, %v: want the id of %s", id, from, err, good)
	}

	_, _, err = Read(missing, empty, uninit, garbage)
	if !errors.Is(err, ErrNone) {
		t.Fatalf("no machine id anywhere: %v, want ErrNone", err)
	}
	for _, want := range []string{missing + ": missing", empty + ": empty", uninit + ": uninitialized", garbage + ": \"not-an-id\" is not a machine id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestReadDefaultsToSystemdThenDBus(t *testing.T) {
	if strings.Join(DefaultPaths, " ") != "/etc/machine-id /var/lib/dbus/machine-id" {
		t.Fatalf("DefaultPaths = %v", DefaultPaths)
	}
	id, from, err := Read()
	if err != nil {
		if !errors.Is(err, ErrNone) {
			t.Fatalf("Read() on this machine: %v", err)
		}
		t.Skipf("this machine has no machine id: %v", err)
	}
	if from != DefaultPaths[0] && from != DefaultPaths[1] || len(id) != 32 {
		t.Fatalf("Read() = %q from %q", id, from)
	}
}
