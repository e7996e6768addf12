package trust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func cmp(a, b string) int { return strings.Compare(a, b) }

func TestCheck(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	stranger, _ := GenerateKey()
	r := Release{Root: "/dc", Service: "web", Version: "v2", Size: 10, SHA256: strings.Repeat("a", 64), Unpacked: 30, Expires: now.Add(time.Hour)}
	keys := []PublicKey{k1.Public, k2.Public}
	if err := Check(keys, r, []Signature{k1.Sign(r)}, "v1", now, cmp); err != nil {
		t.Fatalf("signed by a trusted key: %v", err)
	}
	// Rotation: a release signed by the new key while both are trusted.
	if err := Check(keys, r, []Signature{k2.Sign(r)}, "v1", now, cmp); err != nil {
		t.Fatalf("signed by the second trusted key: %v", err)
	}
	other := func(f func(*Release)) Release { o := r; f(&o); return o }
	for name, tc := range map[string]struct {
		host Release // what the host sees
		sigs []Signature
		run  string
		want string
	}{
		"unsigned":        {r, nil, "v1", "unsigned"},
		"untrusted key":   {r, []Signature{stranger.Sign(r)}, "v1", "no valid signature"},
		"forged":          {r, []Signature{{KeyID: k1.Public.ID, Sig: make([]byte, 64)}}, "v1", "no valid signature"},
		"other bytes":     {other(func(o *Release) { o.SHA256 = strings.Repeat("b", 64) }), []Signature{k1.Sign(r)}, "v1", "no valid signature"},
		"bigger unpacked": {other(func(o *Release) { o.Unpacked = 1 << 40 }), []Signature{k1.Sign(r)}, "v1", "no valid signature"},
		"other root":      {other(func(o *Release) { o.Root = "/dc2" }), []Signature{k1.Sign(r)}, "v1", "no valid signature"},
		"other service":   {other(func(o *Release) { o.Service = "db" }), []Signature{k1.Sign(r)}, "v1", "no valid signature"},
		"expired":         {other(func(o *Release) { o.Expires = now }), []Signature{k1.Sign(other(func(o *Release) { o.Expires = now }))}, "v1", "expired"},
		"older than run":  {r, []Signature{k1.Sign(r)}, "v3", "older than v3"},
		"extended expiry": {other(func(o *Release) { o.Expires = now.Add(1000 * time.Hour) }), []Signature{k1.Sign(r)}, "v1", "no valid signature"},
	} {
		err := Check(keys, tc.host, tc.sigs, tc.run, now, cmp)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrRefused saying %q", name, err, tc.want)
		}
	}
}

func TestCheckRollback(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	k, _ := GenerateKey()
	keys := []PublicKey{k.Public}
	v1 := Release{Root: "/dc", Service: "web", Version: "v1", Size: 10, SHA256: strings.Repeat("a", 64), Expires: now.Add(time.Hour)}
	back := v1
	back.Replaces = "v2"
	sig := []Signature{k.Sign(back)}
	// A host on v2 may go back to v1 with the rollback's signature, and a
	// host still on v1 keeps it.
	for _, run := range []string{"v2", "v1", ""} {
		if err := Check(keys, back, sig, run, now, cmp); err != nil {
			t.Errorf("a rollback signed to replace v2, on a host running %q: %v", run, err)
		}
	}
	// Not on a host that runs another version.
	if err := Check(keys, back, sig, "v3", now, cmp); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "replaces v2 only") {
		t.Errorf("a rollback signed to replace v2, on a host running v3: err = %v", err)
	}
	// Replaces is signed: set on a release signed without it, or changed,
	// the signature no longer verifies.
	plain := []Signature{k.Sign(v1)}
	if err := Check(keys, back, plain, "v2", now, cmp); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no valid signature") {
		t.Errorf("Replaces added to a release signed without it: err = %v", err)
	}
	other := back
	other.Replaces = "v3"
	if err := Check(keys, other, sig, "v3", now, cmp); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no valid signature") {
		t.Errorf("Replaces changed after signing: err = %v", err)
	}
	// Without Replaces the signed bytes are those of before it existed.
	if !strings.Contains(string(v1.message()), `"expires":"2026-12-02T13:00:00Z"}`) {
		t.Errorf("a release without Replaces signs %s", v1.message())
	}
}

func TestKeyFiles(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "release")
	if err := WriteKeyPair(k, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyPair(k, path); err == nil {
		t.Error("overwrote a private key")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %o, want 600", fi.Mode().Perm())
	}
	got, err := ReadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	pubText, _ := os.ReadFile(path + ".pub")
	pub, err := ParsePublicKey(string(pubText))
	if err != nil {
		t.Fatal(err)
	}
	r := Release{Root: "/dc", Service: "web", Version: "v1", Expires: time.Now().Add(time.Hour)}
	if err := Check([]PublicKey{pub}, r, []Signature{got.Sign(r)}, "", time.Now(), cmp); err != nil {
		t.Fatalf("a key read back does not sign for its public key: %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := ReadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a private key others may read: err = %v", err)
	}
	for _, bad := range []string{"", "ed25519:", "ed25519:!!!", "rsa:AAAA", "ed25519:AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
}
