package fetch

import (
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// artifactPrefix is the path under which a Server serves artifacts.
const artifactPrefix = "/artifacts/"

// maxNameLen bounds a service or version name in a peer URL.
const maxNameLen = 128

// ArtifactPath is where an agent keeps the artifact of service at version
// beneath dir, and so where NewServer looks for it.
func ArtifactPath(dir, service, version string) string {
	return filepath.Join(dir, service, version+".artifact")
}

// PeerURL is the URL at which the agent listening on addr (host:port) serves
// the artifact of service at version.
func PeerURL(addr, service, version string) string {
	return "http://" + addr + artifactPrefix + url.PathEscape(service) + "/" + url.PathEscape(version)
}

// NewServer returns a handler that serves GET and HEAD
// /artifacts/<service>/<version> from ArtifactPath(dir, service, version), so
// peers can fetch what this agent holds. Range requests work. A malformed name
// is a 400 and never reaches the file system.
func NewServer(dir string) http.Handler {
	return &server{dir: dir}
}

type server struct{ dir string }

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, artifactPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	// r.URL.Path is already unescaped, so %2e%2e and %2f arrive here as
	// ".." and "/" and fail the name check.
	service, version, ok := strings.Cut(rest, "/")
	if !ok || !validName(service) || !validName(version) {
		http.Error(w, "bad artifact name: want /artifacts/<service>/<version> of [A-Za-z0-9._-]", http.StatusBadRequest)
		return
	}

	f, err := os.Open(ArtifactPath(s.dir, service, version))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
			return
		}
		http.Error(w, "cannot open artifact", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "cannot stat artifact", http.StatusInternalServerError)
		return
	}
	if !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// validName reports whether s is a service or version name safe to use as a
// path element: 1 to maxNameLen of [A-Za-z0-9._-], not starting with '.'.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
