package fetch

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// peerDir makes an artifact store holding svc 1.2.3, with a secret file
// beside the store that no request may ever read.
func peerDir(t *testing.T) (dir string, body []byte) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "artifacts")
	body = bytes.Repeat([]byte("peer artifact bytes\n"), 3000)
	mustWrite(t, ArtifactPath(dir, "svc", "1.2.3"), string(body), 0o644)
	mustWrite(t, filepath.Join(base, "secret.artifact"), "SECRET", 0o644)
	mustWrite(t, filepath.Join(base, "svc", "secret.artifact"), "SECRET", 0o644)
	if err := os.MkdirAll(ArtifactPath(dir, "svc", "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, body
}

func TestServeFetchedByPeer(t *testing.T) {
	dir, body := peerDir(t)
	srv := httptest.NewServer(NewServer(dir))
	defer srv.Close()

	size, sum, err := Describe(ArtifactPath(dir, "svc", "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL, "http://")
	a := Artifact{
		Service: "svc", Version: "1.2.3", Size: size, SHA256: sum,
		URLs: []string{PeerURL(addr, "svc", "1.2.3")},
	}
	dst := filepath.Join(t.TempDir(), "got.artifact")
	if err := (HTTP{Client: srv.Client()}).Fetch(context.Background(), a, dst); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dst, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, body) {
		t.Fatal("fetched bytes differ")
	}
}

func TestServeRangeAndHead(t *testing.T) {
	dir, body := peerDir(t)
	h := NewServer(dir)

	req := httptest.NewRequest(http.MethodGet, "/artifacts/svc/1.2.3", nil)
	req.Header.Set("Range", "bytes=20-39")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusPartialContent {
		t.Fatalf("range: status %d, want 206", rec.Code)
	}
	if got := rec.Body.Bytes(); !bytes.Equal(got, body[20:40]) {
		t.Errorf("range body %q, want %q", got, body[20:40])
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/artifacts/svc/1.2.3", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d body bytes", rec.Code, rec.Body.Len())
	}
	if cl := rec.Header().Get("Content-Length"); cl != "60000" {
		t.Errorf("HEAD Content-Length %q, want 60000", cl)
	}
}

func TestServeRejects(t *testing.T) {
	dir, _ := peerDir(t)
	h := NewServer(dir)
	long := strings.Repeat("v", 129)
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{"POST", "/artifacts/svc/1.2.3", 405},
		{"PUT", "/artifacts/svc/1.2.3", 405},
		{"DELETE", "/artifacts/svc/1.2.3", 405},
		{"GET", "/artifacts/svc/9.9.9", 404},
		{"GET", "/artifacts/nosvc/1.2.3", 404},
		{"GET", "/artifacts/svc/adir", 404}, // a directory, not a file
		{"GET", "/other/svc/1.2.3", 404},
		{"GET", "/artifacts/svc", 400},
		{"GET", "/artifacts/svc/", 400},
		{"GET", "/artifacts//1.2.3", 400},
		{"GET", "/artifacts/svc/1.2.3/extra", 400},
		{"GET", "/artifacts/.hidden/1.2.3", 400},
		{"GET", "/artifacts/svc/.1.2.3", 400},
		{"GET", "/artifacts/svc/v%20x", 400},
		{"GET", "/artifacts/svc/" + long, 400},
		{"GET", "/artifacts/svc/" + long[:128], 404}, // at the limit: valid
		// Traversal, plain and escaped, aimed at ../secret.artifact and
		// ../svc/secret.artifact.
		{"GET", "/artifacts/../secret", 400},
		{"GET", "/artifacts/../svc/secret", 400},
		{"GET", "/artifacts/svc/../secret", 400},
		{"GET", "/artifacts/%2e%2e/secret", 400},
		{"GET", "/artifacts/%2E%2E/svc%2Fsecret", 400},
		{"GET", "/artifacts/svc/..%2f..%2fsecret", 400},
		{"GET", "/artifacts/svc%2f..%2f../secret", 400},
		{"GET", "/artifacts/svc/%2e%2e%2f%2e%2e%2fsecret", 400},
		{"GET", "/artifacts/svc/..\\..\\secret", 400},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.target, rec.Code, tc.want)
		}
		if strings.Contains(rec.Body.String(), "SECRET") {
			t.Errorf("%s %s: served a file outside the store", tc.method, tc.target)
		}
		if tc.want == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: Allow %q", tc.method, rec.Header().Get("Allow"))
		}
	}
}

// TestServeRawTraversal sends unnormalised request lines over a real
// connection, so no client-side cleaning can hide a traversal.
func TestServeRawTraversal(t *testing.T) {
	dir, _ := peerDir(t)
	srv := httptest.NewServer(NewServer(dir))
	defer srv.Close()
	for _, target := range []string{
		"/artifacts/../secret",
		"/artifacts/svc/../../secret",
		"/artifacts/%2e%2e/secret",
		"/artifacts/svc/%2e%2e%2fsecret",
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = "//" + req.URL.Host + target // sent verbatim
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 && resp.StatusCode != 404 {
			t.Errorf("%s: status %d, want 400 or 404", target, resp.StatusCode)
		}
		if bytes.Contains(b, []byte("SECRET")) {
			t.Errorf("%s: served a file outside the store", target)
		}
	}
}

func TestPeerURLAndArtifactPath(t *testing.T) {
	if got, want := PeerURL("10.0.0.7:7070", "svc", "1.2.3"), "http://10.0.0.7:7070/artifacts/svc/1.2.3"; got != want {
		t.Errorf("PeerURL = %q, want %q", got, want)
	}
	if got, want := ArtifactPath("/var/lib/dcroll/artifacts", "svc", "1.2.3"), "/var/lib/dcroll/artifacts/svc/1.2.3.artifact"; got != want {
		t.Errorf("ArtifactPath = %q, want %q", got, want)
	}
	if !isHTTPURL(PeerURL("h:1", "svc", "1")) {
		t.Error("PeerURL is not an http URL")
	}
}
