package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var payload = bytes.Repeat([]byte("dcroll release bytes\n"), 5000)

func artifactFor(data []byte, urls ...string) Artifact {
	sum := sha256.Sum256(data)
	return Artifact{
		Service: "web", Version: "1.2.3",
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		URLs: urls,
	}
}

func serve(t *testing.T, status int, body []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// assertEmptyDir checks that neither dst nor a temp file was left in dir.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

func TestFetchGood(t *testing.T) {
	srv := serve(t, http.StatusOK, payload)
	a := artifactFor(payload, srv.URL+"/web-1.2.3.tar.gz")
	dir := t.TempDir()
	dst := filepath.Join(dir, "web.tar.gz")
	if err := (HTTP{}).Fetch(context.Background(), a, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("content differs")
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir has %d entries, want only dst", len(ents))
	}
}

func TestFetchBad(t *testing.T) {
	wrong := append([]byte(nil), payload...)
	wrong[10] ^= 1
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"wrong hash", wrong},
		{"too long", append(append([]byte(nil), payload...), 'x')},
		{"too short", payload[:len(payload)-1]},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, http.StatusOK, tc.body)
			u := srv.URL + "/a"
			a := artifactFor(payload, u)
			dir := t.TempDir()
			err := (HTTP{}).Fetch(context.Background(), a, filepath.Join(dir, "dst"))
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("err = %v, want ErrMismatch", err)
			}
			if !strings.Contains(err.Error(), u) {
				t.Errorf("error %q does not name %s", err, u)
			}
			assertEmptyDir(t, dir)
		})
	}
}

func TestFetchFallsBackToNextURL(t *testing.T) {
	missing := serve(t, http.StatusNotFound, []byte("no"))
	good := serve(t, http.StatusOK, payload)
	a := artifactFor(payload, missing.URL+"/a", good.URL+"/a")
	dst := filepath.Join(t.TempDir(), "dst")
	if err := (HTTP{}).Fetch(context.Background(), a, dst); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
}

func TestFetchAllFail(t *testing.T) {
	missing := serve(t, http.StatusNotFound, nil)
	short := serve(t, http.StatusOK, payload[:10])
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // connection refused
	urls := []string{missing.URL + "/a", short.URL + "/b", down.URL + "/c"}
	a := artifactFor(payload, urls...)
	dir := t.TempDir()
	err := (HTTP{}).Fetch(context.Background(), a, filepath.Join(dir, "dst"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, u := range urls {
		if !strings.Contains(err.Error(), u) {
			t.Errorf("error %q does not name %s", err, u)
		}
	}
	if !strings.Contains(err.Error(), "404") {
		t.Errorf("error %q does not give the status", err)
	}
	assertEmptyDir(t, dir)
}

func TestFetchRedactsPassword(t *testing.T) {
	srv := serve(t, http.StatusForbidden, nil)
	u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1)
	err := (HTTP{}).Fetch(context.Background(), artifactFor(payload, u), filepath.Join(t.TempDir(), "dst"))
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v, want an error without the password", err)
	}
}

func TestFetchContextCancelled(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		srv := serve(t, http.StatusOK, payload)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		dir := t.TempDir()
		err := (HTTP{}).Fetch(ctx, artifactFor(payload, srv.URL, srv.URL), filepath.Join(dir, "dst"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertEmptyDir(t, dir)
	})
	t.Run("mid body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000000")
			w.Write(payload[:100])
			w.(http.Flusher).Flush()
			cancel() // the client has headers and some body; now give up
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		dir := t.TempDir()
		other := serve(t, http.StatusOK, payload)
		err := (HTTP{}).Fetch(ctx, artifactFor(payload, srv.URL, other.URL), filepath.Join(dir, "dst"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertEmptyDir(t, dir)
	})
}

func TestFetchInvalidArtifact(t *testing.T) {
	a := artifactFor(payload, "ftp://example.com/a")
	err := (HTTP{}).Fetch(context.Background(), a, filepath.Join(t.TempDir(), "dst"))
	if !errors.Is(err, ErrBadArtifact) {
		t.Fatalf("err = %v, want ErrBadArtifact", err)
	}
}

func TestValidate(t *testing.T) {
	good := artifactFor(payload, "https://example.com/a")
	for _, tc := range []struct {
		name string
		edit func(*Artifact)
		want string // "" means valid
	}{
		{"good", func(*Artifact) {}, ""},
		{"http", func(a *Artifact) { a.URLs = []string{"http://h/a"} }, ""},
		{"one http among others", func(a *Artifact) { a.URLs = []string{"magnet:?xt=1", "http://h/a"} }, ""},
		{"max size", func(a *Artifact) { a.Size = MaxSize }, ""},
		{"no service", func(a *Artifact) { a.Service = "" }, "empty service"},
		{"no version", func(a *Artifact) { a.Version = "" }, "empty version"},
		{"zero size", func(a *Artifact) { a.Size = 0 }, "size 0"},
		{"negative size", func(a *Artifact) { a.Size = -1 }, "size -1"},
		{"too big", func(a *Artifact) { a.Size = MaxSize + 1 }, "size 68719476737"},
		{"short sha", func(a *Artifact) { a.SHA256 = a.SHA256[:63] }, "sha256"},
		{"upper sha", func(a *Artifact) { a.SHA256 = strings.ToUpper(a.SHA256) }, "sha256"},
		{"non-hex sha", func(a *Artifact) { a.SHA256 = strings.Repeat("g", 64) }, "sha256"},
		{"no urls", func(a *Artifact) { a.URLs = nil }, "no http(s) URL"},
		{"ftp only", func(a *Artifact) { a.URLs = []string{"ftp://h/a"} }, "ftp://h/a"},
		{"no host", func(a *Artifact) { a.URLs = []string{"http:///a"} }, "no http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			a.URLs = append([]string(nil), good.URLs...)
			tc.edit(&a)
			err := a.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadArtifact) {
				t.Fatalf("err = %v, want ErrBadArtifact", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestVerifyAndDescribe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	size, sum, err := Describe(path)
	if err != nil {
		t.Fatal(err)
	}
	a := artifactFor(payload)
	if size != a.Size || sum != a.SHA256 {
		t.Fatalf("Describe = %d %s, want %d %s", size, sum, a.Size, a.SHA256)
	}
	if err := Verify(path, a); err != nil {
		t.Fatal(err)
	}

	tampered := append([]byte(nil), payload...)
	tampered[0] = 'X'
	if err := os.WriteFile(path, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	err = Verify(path, a)
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch", err)
	}
	_, gotSum, _ := Describe(path)
	for _, s := range []string{path, a.SHA256, gotSum} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}

	if err := Verify(filepath.Join(t.TempDir(), "missing"), a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}
