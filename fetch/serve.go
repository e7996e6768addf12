package fetch

import (
	"crypto/subtle"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/net/netutil"
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

// PeerURLWithToken is PeerURL carrying token as the password of HTTP basic
// authentication, for peers that require one (ServerOptions.Token). Errors
// show such a URL redacted.
func PeerURLWithToken(addr, service, version, token string) string {
	if token == "" {
		return PeerURL(addr, service, version)
	}
	u, _ := url.Parse(PeerURL(addr, service, version))
	u.User = url.UserPassword("dcroll", token)
	return u.String()
}

// ServerOptions bound what peers may hold of a Server: its connections and
// how long each may sit idle or stall. A zero field takes its default.
type ServerOptions struct {
	// MaxConns is how many connections are open at once; more wait in the
	// kernel's accept queue and never cost the process a file descriptor.
	MaxConns int
	// ReadHeaderTimeout bounds a request's headers, ReadTimeout the whole
	// request, IdleTimeout a keep-alive connection between requests.
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
	// WriteStall is how long the answer may go without a byte reaching the
	// peer. It is renewed as data goes out: a large artifact legitimately
	// takes long, a reader that stops reading does not.
	WriteStall time.Duration
	// Token, when not empty, must come as the password of HTTP basic
	// authentication (PeerURL puts it there); a request without it is a 401.
	Token string
}

// Defaults of ServerOptions.
const (
	DefaultMaxConns          = 256
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultWriteStall        = 60 * time.Second
)

func (o *ServerOptions) fill() {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	set(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&o.ReadTimeout, DefaultReadTimeout)
	set(&o.IdleTimeout, DefaultIdleTimeout)
	set(&o.WriteStall, DefaultWriteStall)
}

// Serve serves the artifacts in dir (NewServer) on ln with the bounds of
// o, until the returned server is closed. Connections past o.MaxConns wait
// to be accepted, so a flood of idle connections cannot use up the file
// descriptors the agent needs for its health checks and its state file.
func Serve(ln net.Listener, dir string, o ServerOptions) *http.Server {
	o.fill()
	var h http.Handler = &server{dir: dir, stall: o.WriteStall}
	if o.Token != "" {
		h = requireToken(o.Token, h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	go func() { _ = srv.Serve(netutil.LimitListener(ln, o.MaxConns)) }()
	return srv
}

// requireToken answers 401 to a request without the token.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, got, _ := r.BasicAuth()
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="dcroll"`)
			http.Error(w, "peer token missing or wrong (transfer.peer_token_file)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// NewServer returns a handler that serves GET and HEAD
// /artifacts/<service>/<version> from ArtifactPath(dir, service, version), so
// peers can fetch what this agent holds. Range requests work. A malformed name
// is a 400 and never reaches the file system.
func NewServer(dir string) http.Handler {
	return &server{dir: dir}
}

type server struct {
	dir   string
	stall time.Duration // 0: no write deadline (the caller's server sets it)
}

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
	if s.stall > 0 {
		w = &stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: s.stall}
	}
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

// stallWriter moves the connection's write deadline forward before each
// write, so that only a peer that stops reading runs into it.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallWriter) Write(p []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	return s.ResponseWriter.Write(p)
}
