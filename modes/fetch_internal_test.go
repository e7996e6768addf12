package modes

import (
	"testing"

	"github.com/dcroll/dcroll/roll"
)

// status says how much of a download came from peers and how much from
// the origin's web seed.
func TestDescribeFetch(t *testing.T) {
	for _, c := range []struct {
		f    roll.Fetch
		want string
	}{
		{roll.Fetch{Version: "2.0", Bytes: 3 << 20, Size: 8 << 20, Peers: 4, Via: roll.ViaBitTorrent},
			"fetching 2.0: 3.0 MiB of 8.0 MiB from 4 peers"},
		{roll.Fetch{Version: "2.0", Bytes: 3 << 20, Origin: 1 << 20, Size: 8 << 20, Peers: 4, Via: roll.ViaBitTorrent},
			"fetching 2.0: 3.0 MiB of 8.0 MiB, 2.0 MiB from 4 peers and 1.0 MiB from the origin"},
		{roll.Fetch{Version: "2.0", Size: 8 << 20, Via: roll.ViaHTTP, Why: "BitTorrent is off"},
			"fetching 2.0 over HTTP, not BitTorrent: BitTorrent is off"},
	} {
		if got := describeFetch(c.f); got != c.want {
			t.Errorf("describeFetch(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
}
