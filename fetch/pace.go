package fetch

import (
	"context"
	"net"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"
)

// pacedListener and pacedDialer give the BitTorrent client connections whose
// writes share one rate limiter.
//
// anacrolix/torrent v1.59.1 applies its own upload limiter per chunk: a
// connection that finds no tokens gives up its reservation and retries when
// they should be back, by which time connections that are sending have
// taken them again. On an origin whose upload is the bottleneck, a few
// connections then get most of it and others none for seconds, and the
// hosts they feed fall behind. Waiting for the limiter inside Write instead
// queues the connections' writes in the order they come, so the upload is
// shared evenly.
type pacedListener struct {
	net.Listener
	lim *rate.Limiter
}

func (l pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return pace(c, l.lim), nil
}

type pacedDialer struct {
	d   net.Dialer
	lim *rate.Limiter
}

var _ torrent.Dialer = (*pacedDialer)(nil)

func (d *pacedDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return pace(c, d.lim), nil
}

func (d *pacedDialer) DialerNetwork() string { return "tcp" }

func pace(c net.Conn, lim *rate.Limiter) net.Conn {
	if lim == nil {
		return c
	}
	return pacedConn{Conn: c, lim: lim}
}

type pacedConn struct {
	net.Conn
	lim *rate.Limiter
}

// Write waits for the limiter before each part of b no larger than its
// burst. The client writes from one goroutine per connection, without
// holding its locks, so the wait holds up only this connection.
func (c pacedConn) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		k := min(len(b), c.lim.Burst())
		if err := c.lim.WaitN(context.Background(), k); err != nil {
			return n, err
		}
		m, err := c.Conn.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}
