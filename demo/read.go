package demo

import (
	"context"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// snapshot is one reading of the fleet, what one screen shows: the summary
// `dcroll status` prints, and which version each host serves of each
// service. The summary's online, offline and per-version counts are those
// of on (see recount).
type snapshot struct {
	sum *roll.FleetSummary
	// on maps host -> service -> the version it serves, for the services
	// a host is in /current of.
	on map[string]map[string]string
	// restarted is what the restarted host serves since its restart, read
	// from its own nodes; nil before the restart.
	restarted map[string]string
}

// recount sets each service's online, offline and per-version counts
// from on: they count the hosts that /current lists, where the summary
// counts the fleet view's, which lags it, and they take in what the demo
// read of a host itself.
func (s *snapshot) recount() {
	for i := range s.sum.Services {
		ss := &s.sum.Services[i]
		versions, online := map[string]int{}, 0
		for _, served := range s.on {
			if v, ok := served[ss.Name]; ok {
				versions[v]++
				online++
			}
		}
		ss.Versions, ss.Online, ss.Offline = versions, online, max(ss.Members-online, 0)
	}
}

// service is the summary of svc, zero if it has none.
func (s *snapshot) service(svc string) roll.ServiceSummary {
	for _, ss := range s.sum.Services {
		if ss.Name == svc {
			return ss
		}
	}
	return roll.ServiceSummary{Name: svc}
}

// readFleet reads the fleet for one screen. Its cost is a constant number
// of requests whatever the number of hosts: the summary (Store.Summary
// through w, which leaves a watch on what it read), then per service the
// fleet view, which names the hosts of every version but the most common
// one, and the list of /current, whose hosts the view does not name run
// the common version. The view lags /current by about a second (the
// advancer counts a settle after a change); so does the screen.
//
// Before the advancer's first fleet view, which the first agent elected
// writes at once, Summary counts /current itself, one read per online host.
// While hosts of a staged service neither hold nor run its release, the
// summary reads the agent node of each of them, when they are at most
// roll.SummaryLimit: bounded, whatever the fleet.
func readFleet(store *roll.Store, w *roll.SummaryWatch) (*snapshot, error) {
	sum, err := w.Read()
	if err != nil {
		return nil, err
	}
	st := &snapshot{sum: sum, on: map[string]map[string]string{}}
	for _, svc := range services {
		ss := st.service(svc)
		view := roll.FleetView{Versions: ss.Versions}
		if !ss.Counted {
			// Counted: there is no view to read, and FleetView would count
			// /current again.
			if view, err = store.FleetView(svc); err != nil {
				return nil, err
			}
		}
		online, err := store.OnlineHosts(svc)
		if err != nil {
			return nil, err
		}
		// MaxHosts is below roll.FleetNamed, so the view names every host
		// of every version but the common one.
		named := map[string]string{}
		for ver, hosts := range view.Hosts {
			for _, h := range hosts {
				named[h] = ver
			}
		}
		common := view.Common()
		for _, h := range online {
			v, ok := named[h]
			if !ok {
				v = common
			}
			if st.on[h] == nil {
				st.on[h] = map[string]string{}
			}
			st.on[h][svc] = v
		}
	}
	st.recount()
	return st, nil
}

// servesSince reads what host serves of the demo's services since after
// t, from its own nodes: a constant number of requests. A node older than
// t is left out: it belongs to a session that ended (the killed agent's
// /current nodes stay until ZooKeeper expires its session).
func servesSince(store *roll.Store, host string, t time.Time) (map[string]string, error) {
	hs, err := store.HostsStatus([]string{host})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, h := range hs {
		for _, s := range h.Services {
			if s.Online && s.Since.After(t) {
				out[s.Name] = s.Version
			}
		}
	}
	return out, nil
}

// changes waits, between two reads, for a change of what the summary
// watch read: SummaryWatch.Wait in the background, so that the demo can
// go on checking its agents and redrawing meanwhile. Read and Wait never
// overlap: stop ends the wait before the next read.
type changes struct {
	w      *roll.SummaryWatch
	cancel context.CancelFunc
	done   chan struct{}
}

// start waits for a change, or for until (zero: no time).
func (c *changes) start(ctx context.Context, until time.Time) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.cancel, c.done = cancel, done
	go func() {
		defer close(done)
		_ = c.w.Wait(wctx, until)
	}()
}

// fired reports whether the wait ended: something changed, the time came,
// or the session was lost (the read that follows says so).
func (c *changes) fired() bool {
	if c.done == nil {
		return true
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the wait, if any, and waits for it to end.
func (c *changes) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
		c.cancel, c.done = nil, nil
	}
}
