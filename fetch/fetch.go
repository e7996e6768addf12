// Package fetch moves a release artifact onto an agent's disk and proves it is
// the one the staging manifest names, by size and sha256.
//
// A Fetcher never leaves a partial or unverified file at its destination: it
// writes to a temporary file beside it and renames only after verification.
// HTTP is the only transport so far; BitTorrent is meant to sit behind the same
// interface. The package does not decide which artifact to fetch or where it
// lives afterwards; that belongs to roll/ and state/.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
)

// MaxSize is the largest artifact Validate accepts (64 GiB).
const MaxSize int64 = 64 << 30

var (
	// ErrMismatch means a file's size or sha256 differs from the artifact's.
	ErrMismatch = errors.New("fetch: size or sha256 mismatch")
	// ErrBadArtifact means an Artifact failed validation.
	ErrBadArtifact = errors.New("fetch: bad artifact")
)

// Artifact describes one release file as the staging manifest gives it.
type Artifact struct {
	Service, Version string
	Size             int64
	SHA256           string   // hex, lower case, 64 chars
	URLs             []string // origins to try in order (http/https)
}

// Validate reports whether a can be fetched: it needs a service, a version, a
// size in (0, MaxSize], a lower-case hex sha256 and at least one http(s) URL.
func (a Artifact) Validate() error {
	if a.Service == "" {
		return fmt.Errorf("%w: empty service", ErrBadArtifact)
	}
	if a.Version == "" {
		return fmt.Errorf("%w: %s: empty version", ErrBadArtifact, a.Service)
	}
	if a.Size <= 0 || a.Size > MaxSize {
		return fmt.Errorf("%w: %s %s: size %d not in 1..%d", ErrBadArtifact, a.Service, a.Version, a.Size, MaxSize)
	}
	if !isLowerHex64(a.SHA256) {
		return fmt.Errorf("%w: %s %s: sha256 %q is not 64 lower-case hex characters", ErrBadArtifact, a.Service, a.Version, a.SHA256)
	}
	for _, u := range a.URLs {
		if isHTTPURL(u) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %s: no http(s) URL in %q", ErrBadArtifact, a.Service, a.Version, a.URLs)
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Fetcher gets a release artifact onto local disk.
type Fetcher interface {
	// Fetch puts the verified artifact at dst (a file path), writing to a temp
	// file in dst's directory first and renaming only after the size and
	// sha256 match; a partial or bad download never appears at dst.
	Fetch(ctx context.Context, a Artifact, dst string) error
}

// Verify checks that the file at path has a's size and sha256. A difference is
// an ErrMismatch naming the path, the expected and the actual values.
func Verify(path string, a Artifact) error {
	size, sum, err := Describe(path)
	if err != nil {
		return err
	}
	return check(path, a, size, sum)
}

// Describe returns the size and lower-case hex sha256 of the file at path, as
// the staging side records them in the manifest.
func Describe(path string) (size int64, sha256hex string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", fmt.Errorf("describe: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("describe %s: %w", path, err)
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

func check(name string, a Artifact, size int64, sum string) error {
	if size != a.Size || sum != a.SHA256 {
		return fmt.Errorf("%w: %s: want size %d sha256 %s, got size %d sha256 %s",
			ErrMismatch, name, a.Size, a.SHA256, size, sum)
	}
	return nil
}

// install copies exactly a.Size bytes from r into a temp file beside dst,
// verifies them and renames the temp file to dst. On any error the temp file
// is removed and dst is left untouched. Every error names the source, name.
func install(a Artifact, dst, name string, r io.Reader) (err error) {
	dir, base := filepath.Split(dst)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.part")
	if err != nil {
		return fmt.Errorf("fetch %s: create temp file: %w", name, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	h := sha256.New()
	// Read one byte past Size so an over-long body is noticed without
	// reading (or storing) the rest of it.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, a.Size+1))
	if err != nil {
		return fmt.Errorf("fetch %s: read after %d bytes: %w", name, n, err)
	}
	if n > a.Size {
		return fmt.Errorf("%w: %s: body longer than size %d", ErrMismatch, name, a.Size)
	}
	if n < a.Size {
		return fmt.Errorf("%w: %s: body is %d bytes, want size %d", ErrMismatch, name, n, a.Size)
	}
	if err := check(name, a, n, hexSum(h)); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fetch %s: sync: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch %s: close: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("fetch %s: install: %w", name, err)
	}
	// Make the rename itself durable; failure here is not fatal to
	// correctness of the content, so it is best effort.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
