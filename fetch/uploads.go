package fetch

import (
	"slices"
	"sync"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// uploads counts the peers a Swarm has sent a torrent's data to. The
// client's own count is of open connections, and two peers that both hold
// every piece drop theirs: once the hosts have a release, stage's seeder
// would say it sent its bytes to 0 peers.
type uploads struct {
	// mu guards conns and sentTo. The client calls add with its own lock
	// held, so mu is never held while calling into the client.
	mu     sync.Mutex
	conns  map[metainfo.Hash][]*torrent.PeerConn // connected since the last count
	sentTo map[metainfo.Hash]map[torrent.PeerID]bool
}

func newUploads() *uploads {
	return &uploads{conns: map[metainfo.Hash][]*torrent.PeerConn{}, sentTo: map[metainfo.Hash]map[torrent.PeerID]bool{}}
}

// add records a connection; it is the client's PeerConnAdded callback.
func (u *uploads) add(pc *torrent.PeerConn) {
	t := pc.Torrent()
	if t == nil {
		return
	}
	ih := t.InfoHash()
	u.mu.Lock()
	u.conns[ih] = append(u.conns[ih], pc)
	u.mu.Unlock()
}

// count returns how many distinct peers were sent data of t. It keeps the
// connections that are still open, so a peer that is sent data later is
// counted then, and forgets the closed ones once counted.
func (u *uploads) count(t *torrent.Torrent) int {
	ih := t.InfoHash()
	u.mu.Lock()
	conns := slices.Clone(u.conns[ih])
	u.mu.Unlock()

	open := t.PeerConns()
	var sent []torrent.PeerID
	var closed []*torrent.PeerConn
	for _, pc := range conns {
		if st := pc.Stats(); st.BytesWrittenData.Int64() > 0 {
			sent = append(sent, pc.PeerID)
		}
		if !slices.Contains(open, pc) {
			closed = append(closed, pc)
		}
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sentTo[ih] == nil {
		u.sentTo[ih] = map[torrent.PeerID]bool{}
	}
	for _, id := range sent {
		u.sentTo[ih][id] = true
	}
	u.conns[ih] = slices.DeleteFunc(u.conns[ih], func(pc *torrent.PeerConn) bool { return slices.Contains(closed, pc) })
	return len(u.sentTo[ih])
}

// forget drops what is known of a torrent the swarm no longer has.
func (u *uploads) forget(ih metainfo.Hash) {
	u.mu.Lock()
	delete(u.conns, ih)
	delete(u.sentTo, ih)
	u.mu.Unlock()
}
