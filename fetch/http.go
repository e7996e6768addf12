package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// stallTimeout bounds how long a body may go without delivering a byte. An
// overall timeout would not do: a 64 GiB artifact legitimately takes long.
const stallTimeout = 60 * time.Second

// defaultClient bounds connecting and waiting for headers; the body is bounded
// by the caller's context and the stall watchdog.
var defaultClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          10,
		ForceAttemptHTTP2:     true,
	},
}

// maxRedirects is how many redirects one fetch follows, all on its host.
const maxRedirects = 5

// redirectsTo lets c follow redirects on the host the fetch started on (a
// URL in a manifest names its host, and a redirect must not take the agent,
// and any credentials in the URL, elsewhere) and
// to the hosts named in allowed (a host, or host:port), such as the storage
// host an artifact store sends its downloads to; never from https to http.
func redirectsTo(c *http.Client, allowed []string) *http.Client {
	cc := *c
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		switch {
		case len(via) >= maxRedirects:
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		case !strings.EqualFold(req.URL.Host, first.Host) && !hostAllowed(req.URL, allowed):
			return fmt.Errorf("redirect to another host refused: %s to %s (transfer.origin_redirect_hosts names the hosts an origin may redirect to)", first.Redacted(), req.URL.Redacted())
		case first.Scheme == "https" && req.URL.Scheme != "https":
			return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
		}
		return nil
	}
	return &cc
}

// hostAllowed reports whether u's host is in allowed, by host:port or by
// host name alone.
func hostAllowed(u *url.URL, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(a, u.Host) || strings.EqualFold(a, u.Hostname()) {
			return true
		}
	}
	return false
}

// HTTP fetches artifacts over http and https, trying the artifact's URLs in
// order. A nil Client means a default with connect and header timeouts.
// Redirects are followed on the host of the URL being fetched and to the
// hosts in RedirectHosts.
type HTTP struct {
	Client        *http.Client
	RedirectHosts []string
}

var _ Fetcher = HTTP{}

// Fetch tries each of a's http(s) URLs in order until one yields the verified
// artifact at dst. If all fail, the error joins one error per URL.
func (h HTTP) Fetch(ctx context.Context, a Artifact, dst string) error {
	if err := a.Validate(); err != nil {
		return err
	}
	client := h.Client
	if client == nil {
		client = defaultClient
	}
	client = redirectsTo(client, h.RedirectHosts)
	var errs []error
	for _, raw := range a.URLs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("fetch %s %s: %w", a.Service, a.Version, err))
			break
		}
		if !isHTTPURL(raw) {
			continue // another transport's origin
		}
		err := fetchURL(ctx, client, a, dst, raw)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func fetchURL(ctx context.Context, client *http.Client, a Artifact, dst, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("fetch: parse url: %w", err)
	}
	name := u.Redacted() // never put credentials in an error
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		// Strip the *url.Error wrapper: it would repeat the unredacted URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("fetch %s: status %s", name, resp.Status)
	}

	errStalled := fmt.Errorf("no data for %s", stallTimeout)
	watchdog := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer watchdog.Stop()
	body := &stallReader{r: resp.Body, t: watchdog}

	if err := install(a, dst, name, body); err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return fmt.Errorf("fetch %s: %w", name, cause)
		}
		return err
	}
	return nil
}

// stallReader re-arms the watchdog whenever data arrives.
type stallReader struct {
	r io.Reader
	t *time.Timer
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(stallTimeout)
	}
	return n, err
}
