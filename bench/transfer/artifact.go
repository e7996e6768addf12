package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/dcroll/dcroll/fetch"
)

// writeArtifact writes size pseudo-random bytes to dir/artifact and returns
// the artifact describing them (without URLs) and the file's path. The bytes
// are incompressible and the same in every run: ChaCha8 with a fixed seed
// produces them faster than the disk takes them.
func writeArtifact(dir string, size int64) (fetch.Artifact, string, error) {
	path := filepath.Join(dir, "artifact")
	f, err := os.Create(path)
	if err != nil {
		return fetch.Artifact{}, "", fmt.Errorf("write artifact: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	src := rand.NewChaCha8([32]byte{'d', 'c', 'r', 'o', 'l', 'l'})
	if _, err := io.CopyN(w, src, size); err != nil {
		return fetch.Artifact{}, "", fmt.Errorf("write artifact: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fetch.Artifact{}, "", fmt.Errorf("write artifact: %w", err)
	}
	if err := f.Close(); err != nil {
		return fetch.Artifact{}, "", fmt.Errorf("write artifact: %w", err)
	}
	a := fetch.Artifact{Service: "bench", Version: "1", Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	return a, path, nil
}
