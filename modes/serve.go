package modes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcroll/dcroll/fetch"
)

// serveMode is a tiny HTTP service for the demo and the tests, so they need
// nothing but dcroll. It is not listed in help.
func init() { register("_serve", func() mode { return &serveMode{} }) }

type serveMode struct {
	addr string
}

func (*serveMode) Synopsis() string { return "(hidden) a tiny HTTP service for demos and tests" }

func (m *serveMode) Flags(*Env) (*pflag.FlagSet, string, string) {
	fs := pflag.NewFlagSet("_serve", pflag.ContinueOnError)
	fs.StringVar(&m.addr, "addr", "127.0.0.1:8080", "listen `address`")
	return fs, "_serve [--addr host:port]", `
Answers GET /healthz with 200 and the version (DCROLL_VERSION), unless the
release directory (the working directory) holds a file named "unhealthy":
then 503, to play a release that fails its health check. GET /release
answers the same way with the version and the sha256 of the release
directory packed as dcroll packs releases: the hash of its artifact, so a
test can tell which bytes run ("-" until it is computed, "error" if it
cannot be).`
}

func (m *serveMode) Run(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q", args[0])
	}
	version := os.Getenv("DCROLL_VERSION")
	dir, _ := os.Getwd()
	// The digest is taken in the background once listening: packing a
	// large release can take long enough on a loaded host to fail a
	// health check. Until it is known, /release answers "-" for it.
	var digest atomic.Pointer[string]
	go func() {
		h := sha256.New()
		sum := "error"
		if err := fetch.Pack(dir, h); err == nil {
			sum = hex.EncodeToString(h.Sum(nil))
		}
		digest.Store(&sum)
	}()
	// status answers 503 while the release holds the file "unhealthy".
	status := func(w http.ResponseWriter) {
		if _, err := os.Stat(filepath.Join(dir, "unhealthy")); err == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "unhealthy ")
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		status(w)
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		sum := "-"
		if d := digest.Load(); d != nil {
			sum = *d
		}
		status(w)
		fmt.Fprintln(w, version, sum)
	})
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
