package modes_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/state"
	"github.com/dcroll/dcroll/trust"
)

// keygen writes a pair; stage --sign-key signs the manifest so that a host
// trusting the public key accepts it, and one trusting another key does
// not. The manifest also says what the release unpacks to.
func TestIntegration_KeygenAndSignedStage(t *testing.T) {
	key := filepath.Join(t.TempDir(), "release.key")
	r := dcroll(t, "keygen", key)
	wantRun(t, r, 0, "trust it on the hosts")
	pubLine, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.stdout, strings.TrimSpace(string(pubLine))) {
		t.Errorf("keygen does not print the public key:\n%s", r.stdout)
	}
	wantRun(t, dcroll(t, "keygen", key), 1, "exists")
	pub, err := trust.ParsePublicKey(string(pubLine))
	if err != nil {
		t.Fatal(err)
	}

	zkc := zktest.Standalone(t)
	const root = "/signed"
	store := seedRoot(t, zkc, root, seedChain)
	archive, size, _ := releaseArchive(t, "v2")
	os.Chmod(key, 0o644)
	wantRun(t, dcroll(t, modeArgs(t, zkc, root, "stage", "--detach", "--url", "http://o.example/db", "--sign-key", key, "db", "2.0", archive)...), 1, "chmod 600")
	os.Chmod(key, 0o600)
	r = dcroll(t, modeArgs(t, zkc, root, "stage", "--detach", "--url", "http://o.example/db", "--sign-key", key, "--sign-expiry", "1h", "db", "2.0", archive)...)
	wantRun(t, r, 0, "staged db 2.0")
	m, err := store.Manifest("db")
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != size || m.Unpacked <= 0 {
		t.Errorf("manifest size %d unpacked %d: want size %d and the unpacked size", m.Size, m.Unpacked, size)
	}
	if left := time.Until(m.Expires); left <= 50*time.Minute || left > time.Hour {
		t.Errorf("signature expires in %s, want about 1h", left)
	}
	if err := trust.Check([]trust.PublicKey{pub}, m.Release(root, "db"), m.Signatures, "1.0", time.Now(), state.CompareVersions); err != nil {
		t.Fatalf("a host trusting the key refuses the staged release: %v", err)
	}
	other, _ := trust.GenerateKey()
	if err := trust.Check([]trust.PublicKey{other.Public}, m.Release(root, "db"), m.Signatures, "1.0", time.Now(), state.CompareVersions); err == nil {
		t.Fatal("a host trusting another key accepts the release")
	}
	if err := trust.Check([]trust.PublicKey{pub}, m.Release("/elsewhere", "db"), m.Signatures, "1.0", time.Now(), state.CompareVersions); err == nil {
		t.Fatal("a host of another data center accepts the release")
	}
}
