package modes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dcroll/dcroll/fetch"
)

// serveMode is a tiny HTTP service for the demo and the tests, so they need
// nothing but dcroll. It is not listed in help.
func init() { register("_serve", func() mode { return &serveMode{} }) }

type serveMode struct {
	addr string
}

func (*serveMode) Synopsis() string { return "(hidden) a tiny HTTP service for demos and tests" }

func (m *serveMode) Flags(*Env) (*flag.FlagSet, string, string) {
	fs := flag.NewFlagSet("_serve", flag.ContinueOnError)
	fs.StringVar(&m.addr, "addr", "127.0.0.1:8080", "listen `address`")
	return fs, "_serve [--addr host:port]", `
Answers GET /healthz with 200 and the version (DCROLL_VERSION), unless the
release directory (the working directory) holds a file named "unhealthy":
then 503, to play a release that fails its health check. GET /release
answers the same way with the version and the sha256 of the release
directory packed as dcroll packs releases: the hash of its artifact, so a
test can tell which bytes run.`
}

func (m *serveMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	version := os.Getenv("DCROLL_VERSION")
	dir, _ := os.Getwd()
	h := sha256.New()
	if err := fetch.Pack(dir, h); err != nil {
		return err
	}
	identity := version + " " + hex.EncodeToString(h.Sum(nil))
	answer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, err := os.Stat(filepath.Join(dir, "unhealthy")); err == nil {
				http.Error(w, "unhealthy "+body, http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, body)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", answer(version))
	mux.HandleFunc("/release", answer(identity))
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
