// Package trust signs releases and checks them against the keys a host
// trusts, so that whoever can write to ZooKeeper can delay a release but
// not choose the code a host runs. It is kept as simple as one fleet needs:
// ed25519 keys, several trusted at once for rotation, a signature over the
// release's identity, its content, where it may run and until when. It does
// not fetch or stage anything; roll carries the signatures, the agent
// checks them.
package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrRefused is wrapped by every reason a release is not trusted.
var ErrRefused = errors.New("trust: release refused")

// keyPrefix starts a public key written out: the algorithm, so that another
// one can come later.
const keyPrefix = "ed25519:"

// Release is what a signature covers: which release, its bytes, where it
// may run and until when.
type Release struct {
	Root     string    `json:"root"`
	Service  string    `json:"service"`
	Version  string    `json:"version"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Unpacked int64     `json:"unpacked"`
	Infohash string    `json:"infohash"`
	Expires  time.Time `json:"expires"`
	// Replaces, set only in a rollback's signature, is the version this
	// release may replace although it is older: a host that runs Replaces
	// may go back to it. Empty, it is left out of the signed bytes, so
	// signatures made before it existed still verify.
	Replaces string `json:"replaces,omitempty"`
}

// message is the signed bytes: a context string, so a signature made for
// anything else never verifies, and the release in a fixed encoding.
func (r Release) message() []byte {
	b, _ := json.Marshal(r) // fields in declaration order, UTC times
	return append([]byte("dcroll release signature v1\n"), b...)
}

// Signature is one key's signature of a release.
type Signature struct {
	// KeyID names the key: the first 8 bytes of its sha256, in hex.
	KeyID string `json:"key_id"`
	Sig   []byte `json:"sig"`
}

// PublicKey is a key a host trusts.
type PublicKey struct {
	ID  string
	key ed25519.PublicKey
}

// String is the key as written in [trust] keys: "ed25519:<base64>".
func (k PublicKey) String() string { return keyPrefix + base64.StdEncoding.EncodeToString(k.key) }

// ParsePublicKey reads a key as String writes it.
func ParsePublicKey(s string) (PublicKey, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), keyPrefix)
	if !ok {
		return PublicKey{}, fmt.Errorf("trust: key %.20q...: want %s<base64> as dcroll keygen writes it", s, keyPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("trust: key %.20q...: not a base64 ed25519 public key", s)
	}
	return PublicKey{ID: keyID(b), key: b}, nil
}

func keyID(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// PrivateKey signs releases.
type PrivateKey struct {
	Public PublicKey
	key    ed25519.PrivateKey
}

// GenerateKey makes a new key pair.
func GenerateKey() (PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("trust: generate key: %w", err)
	}
	return PrivateKey{Public: PublicKey{ID: keyID(pub), key: pub}, key: priv}, nil
}

// privatePrefix starts a private key file.
const privatePrefix = "dcroll-ed25519-private:"

// WriteKeyPair writes k to path (mode 0600, refused if it exists) and its
// public key to path.pub.
func WriteKeyPair(k PrivateKey, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("trust: write private key: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s%s\n", privatePrefix, base64.StdEncoding.EncodeToString(k.key.Seed()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("trust: write private key: %w", err)
	}
	if err := os.WriteFile(path+".pub", []byte(k.Public.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("trust: write public key: %w", err)
	}
	return nil
}

// ReadPrivateKey reads a key WriteKeyPair wrote. The file must be readable
// by its owner only.
func ReadPrivateKey(path string) (PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("trust: read private key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("trust: private key %s has mode %04o: others may read it; run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("trust: read private key: %w", err)
	}
	b64, ok := strings.CutPrefix(strings.TrimSpace(string(b)), privatePrefix)
	seed, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(seed) != ed25519.SeedSize {
		return PrivateKey{}, fmt.Errorf("trust: %s is not a private key written by dcroll keygen", path)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	return PrivateKey{Public: PublicKey{ID: keyID(pub), key: pub}, key: priv}, nil
}

// Sign signs r.
func (k PrivateKey) Sign(r Release) Signature {
	return Signature{KeyID: k.Public.ID, Sig: ed25519.Sign(k.key, r.utc().message())}
}

// Check reports why the release r, with its signatures, is not to be run
// by a host that trusts keys and runs running ("": nothing) of r.Service at
// now: unsigned, signed by no trusted key or badly (or for another data
// center or service: r holds the host's own root and service, so such a
// signature does not verify), expired, or older than running (unless it
// is a rollback signed to replace running: r.Replaces). Every reason
// wraps ErrRefused. compare orders versions, as state.CompareVersions.
func Check(keys []PublicKey, r Release, sigs []Signature, running string, now time.Time, compare func(a, b string) int) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s: %s", ErrRefused, r.Service, r.Version, fmt.Sprintf(format, args...))
	}
	if len(sigs) == 0 {
		return refuse("unsigned, and this host runs only signed releases ([trust] keys)")
	}
	msg := r.utc().message()
	var by []string
	good := false
	for _, s := range sigs {
		for _, k := range keys {
			if k.ID == s.KeyID && ed25519.Verify(k.key, msg, s.Sig) {
				good = true
			}
		}
		by = append(by, s.KeyID)
	}
	switch {
	case !good:
		return refuse("no valid signature by a trusted key over this release of %s in %s (signed by key %s)",
			r.Service, r.Root, strings.Join(by, ", "))
	case r.Expires.IsZero() || !now.Before(r.Expires):
		return refuse("the signature expired at %s", r.Expires.UTC().Format(time.RFC3339))
	case running != "" && compare(r.Version, running) < 0 && r.Replaces != running:
		if r.Replaces != "" {
			return refuse("older than %s, which this host runs; its rollback signature replaces %s only", running, r.Replaces)
		}
		return refuse("older than %s, which this host runs", running)
	}
	return nil
}

func (r Release) utc() Release {
	r.Expires = r.Expires.UTC()
	return r
}
