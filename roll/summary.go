package roll

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"time"

	"github.com/go-zookeeper/zk"
)

// The summary: what `dcroll status` shows by default, read from counts so
// that its cost does not grow with the fleet. Per service it reads the
// fleet view (<root>/fleet/<svc>, which the advancer keeps: hosts per
// version, online, the offline members and the hosts of the odd
// versions), the number of members (a stat of /members/<svc>), the control
// node, the manifest, the ready queue and the turns; and then /hosts/<h> of
// the hosts it names, at most SummaryLimit of each kind, and the refusals
// (/refused, see Register). Status reads the
// whole fleet only with --hosts (Store.Status).

// SummaryLimit is how many hosts of each kind a summary names per service;
// the others are counted.
const SummaryLimit = 20

// The kinds of hosts that need attention.
const (
	// AttentionOffline is a member not in /current: down, unhealthy or
	// cut off.
	AttentionOffline = "offline"
	// AttentionOddVersion is an online host on a version that is neither
	// the fleet's most common nor the staged one, nor, while a release is
	// staged, the one the rollout comes from.
	AttentionOddVersion = "odd_version"
	// AttentionStuck is a host that says it cannot get the staged release
	// (Host.Stuck).
	AttentionStuck = "stuck"
	// AttentionLongTurn is a host in its turn for longer than LongTurn.
	AttentionLongTurn = "long_turn"
)

// FleetSummary is the summary of a data center: `dcroll status`, and
// `dcroll status --json --summary`. Fields are only ever added.
type FleetSummary struct {
	Root     string           `json:"root"`
	Time     time.Time        `json:"time"`
	Services []ServiceSummary `json:"services"`
	Deploy   DeployStatus     `json:"deploy"`
	// NextChange is the next time a judgement of time changes with nothing
	// else changing (a turn becomes long, an offline member expires); zero
	// if none will.
	NextChange time.Time `json:"next_change,omitzero"`
	// Refused are the agents of machines refused their host name (another
	// machine holds it), by host name and machine.
	Refused []Refusal `json:"refused,omitempty"`
	// Skipped are the bad children of /current, /members and /hosts that
	// the summary's reads left out.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// ServiceSummary is one service in counts, and the hosts of it that need
// attention.
type ServiceSummary struct {
	Name   string  `json:"name"`
	Policy Service `json:"policy"`
	// QuorumHosts is the quorum in hosts for the current membership.
	QuorumHosts int `json:"quorum_hosts"`
	Members     int `json:"members"`
	// Online counts the hosts in /current.
	Online int `json:"online"`
	// Offline counts the members not in /current; Expired those of them
	// gone for longer than member_ttl.
	Offline int `json:"offline"`
	Expired int `json:"expired"`
	// Versions counts online hosts per version; Common is the most common.
	Versions map[string]int `json:"versions"`
	Common   string         `json:"common"`

	// Staged is the staged release's version, empty when none is.
	Staged string `json:"staged"`
	// Ready counts the ready queue; Next is its front.
	Ready int    `json:"ready"`
	Next  string `json:"next,omitempty"`
	// Lacking counts the online hosts that neither hold the staged release
	// (queued or in turn) nor run it: still fetching, or stuck.
	Lacking int `json:"lacking"`
	// Upgrading are the hosts holding a turn.
	Upgrading []string `json:"upgrading"`
	Paused    bool     `json:"paused"`
	Halted    *Failure `json:"halted"`
	// PauseReason says why dcroll paused the service (a canary waiting
	// for promote); Canary is its canary deploy, if any.
	PauseReason string  `json:"pause_reason,omitempty"`
	Canary      *Canary `json:"canary,omitempty"`
	// RollReady says whether the front of the ready queue may take its turn
	// now, as Decide judges it on the counts; RollWait says why not.
	RollReady bool   `json:"roll_ready"`
	RollWait  string `json:"roll_wait"`

	// ViewAt is when the advancer last wrote the fleet view. Counted says
	// there was none (a data center whose agents predate it): the summary
	// counted /current itself, one read per host.
	ViewAt  time.Time `json:"view_at,omitzero"`
	Counted bool      `json:"counted,omitempty"`

	// Attention lists the hosts that need attention, at most SummaryLimit
	// of each kind; Unlisted counts, by kind, those left out.
	Attention []Attention    `json:"attention"`
	Unlisted  map[string]int `json:"unlisted,omitempty"`
}

// Attention is one host of a service that needs attention, and why.
type Attention struct {
	Host string `json:"host"`
	// Kind is one of the Attention* constants.
	Kind    string `json:"kind"`
	AgentUp bool   `json:"agent_up"`
	Agent   string `json:"agent_version,omitempty"`
	// Since is when an offline member was first seen gone (zero: not
	// known), or when a long turn started.
	Since time.Time `json:"since,omitzero"`
	// Expired marks an offline member gone for longer than member_ttl.
	Expired bool `json:"expired,omitempty"`
	// Version is what an odd host runs, or what a long turn goes to; From
	// what the long turn comes from.
	Version string `json:"version,omitempty"`
	From    string `json:"from,omitempty"`
	// Why is a stuck host's reason.
	Why string `json:"why,omitempty"`
}

// LongTurn is how long a turn of a service with policy p may last before
// status lists it: a switch that fails waits up to the health deadline for
// the new version and up to as long again for the old one; a minute more
// covers stopping and starting.
func LongTurn(p Service) time.Duration {
	d := time.Duration(p.Health.Deadline)
	if d <= 0 {
		d = time.Duration(DefaultDeadline)
	}
	return 2*d + time.Minute
}

// Summary reads the summary of the data center. Its cost is a constant
// number of requests per service and per deploy step, plus one per host
// it names, whatever the size of the fleet, where the fleet views exist;
// a service without one is counted from /current, one read per host.
func (s *Store) Summary() (*FleetSummary, error) {
	r := &reader{s: s}
	return r.summary()
}

// SummaryWatch reads the summary again after every change of what it read:
// it leaves a ZooKeeper watch on each node it reads, at most one per node,
// and makes no request while nothing changes.
type SummaryWatch struct{ r reader }

// WatchSummary starts watching the summary; Read and Wait in turn.
func (s *Store) WatchSummary() *SummaryWatch {
	return &SummaryWatch{r: reader{s: s, watch: true, held: map[string]<-chan zk.Event{}, resync: s.resyncs.next()}}
}

// Read reads the summary and leaves watches on what it read. After a
// reconnect it drops the watches it held, which may have missed a change
// (see resyncs), and reads everything again.
func (w *SummaryWatch) Read() (*FleetSummary, error) {
	if fired(w.r.resync) {
		w.r.resync = w.r.s.resyncs.next()
		w.r.held = map[string]<-chan zk.Event{}
	}
	return w.r.summary()
}

// Wait returns when something Read read has changed, when until passes
// (zero: never), when the session is lost, or when ctx ends (ctx.Err()).
// It makes no request: the session is looked at locally.
func (w *SummaryWatch) Wait(ctx context.Context, until time.Time) error {
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
	look := time.NewTicker(250 * time.Millisecond)
	defer look.Stop()
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(look.C)})
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.C)})
	}
	for _, ch := range append(slices.Collect(maps.Values(w.r.held)), w.r.resync) {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	for {
		if !w.r.s.Session().Up {
			return nil
		}
		i, _, _ := reflect.Select(cases)
		switch i {
		case 0:
			return ctx.Err()
		case 1:
			continue // look at the session again
		}
		return nil // the time came, or a watch fired
	}
}

// reader reads nodes for a summary, with or without watches. With watches
// it holds one per node and path kind until it fires, so that reading
// again and again does not pile up watches on nodes that do not change.
type reader struct {
	s     *Store
	watch bool
	held  map[string]<-chan zk.Event
	// resync is closed at the next reconnect: the watches held then are
	// dropped (see SummaryWatch.Read).
	resync <-chan zk.Event
}

// holds reports whether an unfired watch of key is held; a fired one is
// dropped.
func (r *reader) holds(key string) bool {
	ch, ok := r.held[key]
	if !ok {
		return false
	}
	select {
	case <-ch:
		delete(r.held, key)
		return false
	default:
		return true
	}
}

// get reads p's data; watched, a missing node is watched for creation. A
// missing node is zk.ErrNoNode.
func (r *reader) get(p string, watched bool) ([]byte, *zk.Stat, error) {
	key := "d" + p
	if !r.watch || !watched || r.holds(key) {
		data, stat, err := r.s.conn.Get(p)
		if err != nil {
			return nil, nil, fmt.Errorf("roll: get %s: %w", p, err)
		}
		return data, stat, nil
	}
	data, stat, ch, err := r.s.conn.GetW(p)
	if errors.Is(err, zk.ErrNoNode) {
		var ok bool
		ok, _, ch, err = r.s.conn.ExistsW(p)
		if err == nil {
			r.held[key] = ch
			if ok { // created meanwhile: the watch fires at once
				return r.get(p, false)
			}
			return nil, nil, fmt.Errorf("roll: get %s: %w", p, zk.ErrNoNode)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("roll: get %s: %w", p, err)
	}
	r.held[key] = ch
	return data, stat, nil
}

// decode reads p into v; a missing node is zk.ErrNoNode, an empty one v's
// zero value.
func (r *reader) decode(p string, v node, watched bool) error {
	data, _, err := r.get(p, watched)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	return decode(p, data, v)
}

// children lists p's children, sorted; a missing p has none.
func (r *reader) children(p string, watched bool) ([]string, error) {
	key := "c" + p
	var names []string
	var err error
	if !r.watch || !watched || r.holds(key) {
		names, _, err = r.s.conn.Children(p)
	} else {
		var ch <-chan zk.Event
		names, _, ch, err = r.s.conn.ChildrenW(p)
		if errors.Is(err, zk.ErrNoNode) {
			if _, _, ch, err = r.s.conn.ExistsW(p); err == nil {
				r.held[key] = ch
				return nil, nil
			}
		} else if err == nil {
			r.held[key] = ch
		}
	}
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", p, err)
	}
	sort.Strings(names)
	return names, nil
}

// count is the number of p's children, from its stat: one small request
// whatever their number. It is never watched: a child watch would bring
// the whole list.
func (r *reader) count(p string) (int, error) {
	ok, stat, err := r.s.conn.Exists(p)
	if err != nil {
		return 0, fmt.Errorf("roll: read %s: %w", p, err)
	}
	if !ok {
		return 0, nil
	}
	return int(stat.NumChildren), nil
}

func (r *reader) summary() (*FleetSummary, error) {
	now := time.Now().UTC()
	names, err := r.children(r.s.Tree.Services(), true)
	if err != nil {
		return nil, err
	}
	if names == nil {
		if err := r.s.CheckSeeded(); err != nil {
			return nil, err
		}
	}
	services := Catalog{}
	for _, name := range names {
		var svc Service
		if err := r.decode(r.s.Tree.Service(name), &svc, true); err != nil {
			return nil, err
		}
		services[name] = svc
	}
	var root Root
	if err := r.decode(r.s.Tree.Root, &root, true); err != nil {
		return nil, err
	}
	deploy, steps, err := r.deploy()
	if err != nil {
		return nil, err
	}
	fs := &FleetSummary{Root: r.s.Tree.Root, Time: now, Services: []ServiceSummary{}, Deploy: deploy}
	for _, name := range services.Names() {
		ss, next, err := r.service(services, name, root, deploy.Paused, steps, now)
		if err != nil {
			return nil, err
		}
		fs.Services = append(fs.Services, ss)
		if !next.IsZero() && (fs.NextChange.IsZero() || next.Before(fs.NextChange)) {
			fs.NextChange = next
		}
	}
	if fs.Deploy.Progress, err = r.progress(fs, steps, now); err != nil {
		return nil, err
	}
	if fs.Refused, err = r.refusals(); err != nil {
		return nil, err
	}
	if sk := r.s.Skipped(); len(sk) > 0 {
		fs.Skipped = sk
	}
	return fs, nil
}

// refusals reads every refusal (rare: one per machine refused its name),
// watched for new ones.
func (r *reader) refusals() ([]Refusal, error) {
	names, err := r.children(r.s.Tree.Refused(), true)
	if err != nil {
		return nil, err
	}
	var out []Refusal
	bad := map[string]string{}
	for _, name := range names {
		var ref Refusal
		// A refusal changes only by going: its removal is watched above.
		p := r.s.Tree.join("refused", name)
		err := r.decode(p, &ref, false)
		switch {
		case err == nil:
			out = append(out, ref)
		case errors.Is(err, zk.ErrNoNode):
		case errors.Is(err, ErrBadNode):
			bad[p] = err.Error()
		default:
			return nil, err
		}
	}
	r.s.skipBad(r.s.Tree.Refused(), bad)
	return out, nil
}

// deploy reads the deploy queue and its control.
func (r *reader) deploy() (DeployStatus, []StepEntry, error) {
	ds := DeployStatus{Steps: []StepStatus{}}
	var ctl DeployControl
	if err := r.decode(r.s.Tree.Deploy(), &ctl, true); err != nil {
		return ds, nil, err
	}
	ds.Paused = ctl.Paused
	names, err := r.children(r.s.Tree.Deploy(), true)
	if err != nil {
		return ds, nil, err
	}
	var steps []StepEntry
	bad := map[string]string{}
	for _, n := range names {
		var st Step
		// A step does not change: only its creation and removal matter.
		err := r.decode(r.s.Tree.step(n), &st, false)
		switch {
		case err == nil:
		case errors.Is(err, zk.ErrNoNode):
			continue
		case errors.Is(err, ErrBadNode):
			bad[r.s.Tree.step(n)] = err.Error() // a barrier, as the hosts see it
		default:
			return ds, nil, err
		}
		steps = append(steps, StepEntry{Name: n, Step: st, bad: err != nil})
		ds.Steps = append(ds.Steps, StepStatus{Name: n, Services: st.Services})
	}
	r.s.skipBad(r.s.Tree.Deploy(), bad)
	return ds, steps, nil
}

// fleetFacts is what is known of a service's online hosts: the view, and
// when it was counted here, every online host's version.
type fleetFacts struct {
	view    FleetView
	members int
	// offline are the offline members with since when (zero: not known).
	offline map[string]time.Time
	// known is every online host's version, when counted.
	known   map[string]string
	counted bool
}

// facts reads the fleet view of svc, or counts /current without one.
func (r *reader) facts(svc string) (fleetFacts, error) {
	var f fleetFacts
	var err error
	if f.members, err = r.count(r.s.Tree.Members(svc)); err != nil {
		return f, err
	}
	err = r.decode(r.s.Tree.Fleet(svc), &f.view, true)
	switch {
	case err == nil:
		f.offline = maps.Clone(f.view.Gone)
		if f.offline == nil {
			f.offline = map[string]time.Time{}
		}
		if f.members-len(f.offline) <= f.view.Online {
			return f, nil
		}
		// Members the view does not name as gone: a view older than they
		// are, or written by an advancer that did not name them. Name
		// them from the lists.
		members, err := r.s.Members(svc)
		if err != nil {
			return f, err
		}
		online, err := r.children(r.s.Tree.CurrentDir(svc), false)
		if err != nil {
			return f, err
		}
		online = r.s.validHosts(r.s.Tree.CurrentDir(svc), online)
		for _, h := range members {
			if _, ok := slices.BinarySearch(online, h); !ok {
				if _, ok := f.offline[h]; !ok {
					f.offline[h] = time.Time{}
				}
			}
		}
		f.members = len(members)
		return f, nil
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, ErrBadNode):
		// No view yet (or one this dcroll cannot read): count.
	default:
		return f, err
	}
	f.counted = true
	if _, err := r.children(r.s.Tree.CurrentDir(svc), true); err != nil {
		return f, err
	}
	cur, err := r.s.CurrentOf(svc)
	if err != nil {
		return f, err
	}
	members, err := r.s.Members(svc)
	if err != nil {
		return f, err
	}
	f.members = len(members)
	f.view = countVersions(cur)
	f.view.Gone = nil
	f.known = map[string]string{}
	for h, c := range cur {
		f.known[h] = c.Version
	}
	f.offline = map[string]time.Time{}
	for _, h := range members {
		if _, ok := cur[h]; !ok {
			f.offline[h] = time.Time{}
		}
	}
	return f, nil
}

// versionsByHost gives every online host's version, from the view's named
// hosts and the list of /current (one request): a host the view does not
// name runs the common version. ok is false when the view leaves a version
// other than the common one unnamed (too many hosts).
func (r *reader) versionsByHost(svc string, f fleetFacts) (map[string]string, bool, error) {
	if f.known != nil {
		return f.known, true, nil
	}
	common := f.view.Common()
	for ver, n := range f.view.Versions {
		if ver != common && len(f.view.Hosts[ver]) != n {
			return nil, false, nil
		}
	}
	online, err := r.children(r.s.Tree.CurrentDir(svc), false)
	if err != nil {
		return nil, false, err
	}
	online = r.s.validHosts(r.s.Tree.CurrentDir(svc), online)
	out := make(map[string]string, len(online))
	for _, h := range online {
		out[h] = common
	}
	for ver, hs := range f.view.Hosts {
		for _, h := range hs {
			if _, ok := out[h]; ok {
				out[h] = ver
			}
		}
	}
	return out, true, nil
}

// service summarizes one service, and says when its judgements of time
// change next.
func (r *reader) service(services Catalog, svc string, root Root, deployPaused bool, steps []StepEntry, now time.Time) (ServiceSummary, time.Time, error) {
	pol := services[svc]
	ss := ServiceSummary{Name: svc, Policy: pol, Upgrading: []string{}, Attention: []Attention{}}
	var next time.Time
	later := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	f, err := r.facts(svc)
	if err != nil {
		return ss, next, err
	}
	ss.Members, ss.Online, ss.Offline, ss.Counted = f.members, f.view.Online, len(f.offline), f.counted
	ss.Versions = maps.Clone(f.view.Versions)
	if ss.Versions == nil {
		ss.Versions = map[string]int{}
	}
	ss.Common, ss.ViewAt = f.view.Common(), f.view.At

	ttl := pol.TTL()
	expired := map[string]bool{}
	for h, since := range f.offline {
		if ttl > 0 && !since.IsZero() {
			if now.Sub(since) > ttl {
				expired[h] = true
			} else {
				later(since.Add(ttl))
			}
		}
	}
	ss.Expired = len(expired)
	ss.QuorumHosts = pol.Quorum.Need(ss.Members - ss.Expired)

	var ctl Control
	if err := r.decode(r.s.Tree.Roll(svc), &ctl, true); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return ss, next, err
	}
	ss.Paused, ss.Halted, ss.PauseReason, ss.Canary = ctl.Paused, ctl.Halted, ctl.Reason, ctl.Canary
	turnHosts, err := r.children(r.s.Tree.turnsDir(svc), true)
	if err != nil {
		return ss, next, err
	}
	ss.Upgrading = append(ss.Upgrading, turnHosts...)
	turns := map[string]Turn{}
	badTurns := map[string]string{}
	for _, h := range turnHosts {
		var t Turn
		// A turn does not change: it comes and goes.
		err := r.decode(r.s.Tree.Turn(svc, h), &t, false)
		switch {
		case err == nil:
			turns[h] = t
		case errors.Is(err, zk.ErrNoNode):
		case errors.Is(err, ErrBadNode):
			// Still a turn, as the hosts count it; its times are unknown.
			badTurns[r.s.Tree.Turn(svc, h)] = err.Error()
		default:
			return ss, next, err
		}
	}
	r.s.skipBad(r.s.Tree.turnsDir(svc), badTurns)

	var att []Attention
	add := func(a Attention) { att = append(att, a) }
	for _, h := range slices.Sorted(maps.Keys(f.offline)) {
		add(Attention{Host: h, Kind: AttentionOffline, Since: f.offline[h], Expired: expired[h]})
	}
	long := LongTurn(pol)
	for _, h := range slices.Sorted(maps.Keys(turns)) {
		t := turns[h]
		if t.Started.IsZero() {
			continue
		}
		if now.Sub(t.Started) > long {
			add(Attention{Host: h, Kind: AttentionLongTurn, Since: t.Started, From: t.From, Version: t.To})
		} else {
			later(t.Started.Add(long))
		}
	}

	var m Manifest
	err = r.decode(r.s.Tree.Staging(svc), &m, true)
	switch {
	case errors.Is(err, zk.ErrNoNode):
	case err != nil:
		return ss, next, err
	default:
		ss.Staged = m.Version
	}
	var queue []ReadyEntry
	if ss.Staged != "" {
		names, err := r.children(r.s.Tree.readyDir(svc), true)
		if err != nil {
			return ss, next, err
		}
		queue = sortReady(names)
		var tickets []int64
		for _, n := range names {
			if seq, ok := parseTicket(n); ok {
				tickets = append(tickets, seq)
			}
		}
		ss.Ready = len(queue) + len(tickets)
		switch {
		case len(queue) > 0:
			ss.Next = queue[0].Host
		case len(tickets) > 0:
			// The front ticket names its host in its data.
			var front Ready
			err := r.decode(r.s.Tree.readyNode(svc, ticketName(slices.Min(tickets))), &front, false)
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return ss, next, err
			}
			ss.Next = front.Host
		}
		if len(tickets) > 0 {
			// The queued hosts' names, for the hosts lacking the release.
			hosts, err := r.children(r.s.Tree.queuedDir(svc), false)
			if err != nil {
				return ss, next, err
			}
			for _, h := range hosts {
				queue = append(queue, ReadyEntry{Host: h})
			}
		}
	}

	// Hosts on a version that is neither the common one nor the staged one,
	// nor, while a release is staged, the one the rollout comes from: the
	// most common of the others. Once most hosts run the staged release it
	// is the common one, and the hosts not yet upgraded are no news.
	from := ""
	if ss.Staged != "" {
		others := maps.Clone(ss.Versions)
		delete(others, ss.Staged)
		from = commonVersion(others)
	}
	for _, ver := range slices.Sorted(maps.Keys(ss.Versions)) {
		if ver == ss.Common || ver == ss.Staged || ver == from {
			continue
		}
		var hosts []string
		if f.known != nil {
			for h, v := range f.known {
				if v == ver {
					hosts = append(hosts, h)
				}
			}
			slices.Sort(hosts)
		} else {
			hosts = f.view.Hosts[ver]
		}
		for _, h := range hosts {
			add(Attention{Host: h, Kind: AttentionOddVersion, Version: ver})
		}
		if unnamed := ss.Versions[ver] - len(hosts); unnamed > 0 {
			if ss.Unlisted == nil {
				ss.Unlisted = map[string]int{}
			}
			ss.Unlisted[AttentionOddVersion] += unnamed
		}
	}

	// The online hosts without the staged release: when few are left, look
	// for the stuck ones among them.
	var lacking []string
	if ss.Staged != "" {
		holding := map[string]bool{}
		for _, e := range queue {
			holding[e.Host] = true
		}
		for h := range turns {
			holding[h] = true
		}
		n := ss.Online - ss.Versions[ss.Staged]
		for h := range holding {
			if _, off := f.offline[h]; !off {
				n--
			}
		}
		ss.Lacking = max(n, 0)
		if ss.Lacking > 0 && ss.Lacking <= SummaryLimit {
			byHost, ok, err := r.versionsByHost(svc, f)
			if err != nil {
				return ss, next, err
			}
			for h, v := range byHost {
				if ok && v != ss.Staged && !holding[h] {
					lacking = append(lacking, h)
				}
			}
			slices.Sort(lacking)
			ss.Lacking = len(lacking)
		}
	}

	// The agents of the hosts named.
	agents := map[string]*Host{}
	read := func(h string) (*Host, error) {
		if a, ok := agents[h]; ok {
			return a, nil
		}
		var a Host
		err := r.decode(r.s.Tree.Host(h), &a, true)
		switch {
		case errors.Is(err, ErrBadNode):
			// Shown as an agent that is not up; Hosts records it.
			agents[h] = nil
			return nil, nil
		case errors.Is(err, zk.ErrNoNode):
			agents[h] = nil
			return nil, nil
		case err != nil:
			return nil, err
		}
		agents[h] = &a
		return &a, nil
	}
	for _, h := range lacking {
		a, err := read(h)
		if err != nil {
			return ss, next, err
		}
		if a != nil && a.Stuck[svc] != "" {
			add(Attention{Host: h, Kind: AttentionStuck, Why: a.Stuck[svc]})
		}
	}
	ss.Attention, ss.Unlisted = limitAttention(att, ss.Unlisted)
	for i := range ss.Attention {
		a, err := read(ss.Attention[i].Host)
		if err != nil {
			return ss, next, err
		}
		if a != nil {
			ss.Attention[i].AgentUp, ss.Attention[i].Agent = true, a.Agent
			if why := a.Stuck[svc]; why != "" && ss.Attention[i].Kind != AttentionStuck && ss.Staged != "" {
				ss.Attention[i].Why = why
			}
		}
	}

	r.verdict(&ss, services, root, deployPaused, steps, f, turns, expired)
	return ss, next, nil
}

// limitAttention keeps at most SummaryLimit hosts of each kind, in the
// order of kinds most urgent first, and counts the others in unlisted.
func limitAttention(att []Attention, unlisted map[string]int) ([]Attention, map[string]int) {
	order := map[string]int{AttentionLongTurn: 0, AttentionStuck: 1, AttentionOffline: 2, AttentionOddVersion: 3}
	sort.SliceStable(att, func(i, j int) bool { return order[att[i].Kind] < order[att[j].Kind] })
	kept := []Attention{}
	n := map[string]int{}
	for _, a := range att {
		n[a.Kind]++
		if n[a.Kind] > SummaryLimit {
			if unlisted == nil {
				unlisted = map[string]int{}
			}
			unlisted[a.Kind]++
			continue
		}
		kept = append(kept, a)
	}
	return kept, unlisted
}

// verdict judges, as Decide would on the counts, whether the front of the
// ready queue may take its turn, or why not. The counts come from the
// fleet view, which lags /current by about a second: the verdict is for
// the operator; the front host itself decides on the exact counts (turnState).
func (r *reader) verdict(ss *ServiceSummary, services Catalog, root Root, deployPaused bool, steps []StepEntry, f fleetFacts, turns map[string]Turn, expired map[string]bool) {
	switch {
	case ss.Staged == "":
		ss.RollWait = "nothing staged"
		return
	case ss.Ready == 0:
		ss.RollWait = "no host ready"
		if len(ss.Upgrading) == 0 && ss.Online > 0 && ss.Versions[ss.Staged] == ss.Online {
			ss.RollWait = "rolled out"
		}
		return
	}
	c := turnCounts{
		Policy: ss.Policy, Protocol: r.s.protocol, MinProtocol: root.MinProtocol,
		Paused: ss.Paused || deployPaused, ReadyFront: true, DepsDone: true,
	}
	if ss.Halted != nil {
		c.Halted = ss.Halted.String()
	}
	queued := false
	c.DepsDone = depsDone(services, ss.Name, steps)
	if len(steps) == 0 || !steps[0].Now || !slices.Contains(steps[0].Services, ss.Name) {
		c.Window, _ = outsideWindows(ss.Policy.Windows, r.s.now())
	}
	for i, st := range steps {
		if slices.Contains(st.Services, ss.Name) {
			queued = true
			c.HeadStep = c.HeadStep || i == 0
		}
	}
	if !queued {
		n := ss.Versions[ss.Staged]
		c.HeadStep = n > 0 && 2*n > ss.Online
	}
	front := ss.Next
	_, frontOff := f.offline[front]
	onlineMembers := ss.Members - ss.Offline
	for h := range turns {
		if h == front {
			continue
		}
		c.InTurn++
		if _, off := f.offline[h]; !off {
			onlineMembers-- // still in /current, but not serving
		}
	}
	c.Members = ss.Members - len(expired)
	c.Online = max(onlineMembers, 0)
	c.Expired = len(expired)
	c.HostOnline, c.HostMember = !frontOff, true
	v := decideCounts(c)
	if v.on == onControl && ss.Paused && ss.PauseReason != "" {
		v.Wait = "paused: " + ss.PauseReason
	}
	ss.RollReady, ss.RollWait = v.Go, v.Wait
}

// ErrUnknownHost means a host named to status has no agent registered, is
// a member of no service and serves none.
var ErrUnknownHost = errors.New("roll: unknown host")

// HostsStatus reads the named hosts alone, as Status would show them: its
// agent, and each service it is a member of or serves. It costs one
// request per host and two per host and service, whatever the fleet's
// size.
func (s *Store) HostsStatus(names []string) ([]HostStatus, error) {
	services, _, err := s.conn.Children(s.Tree.Services())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, s.CheckSeeded()
	}
	if err != nil {
		return nil, fmt.Errorf("roll: list %s: %w", s.Tree.Services(), err)
	}
	slices.Sort(services)
	refused, err := s.Refusals()
	if err != nil {
		return nil, err
	}
	out := []HostStatus{}
	for _, name := range names {
		h := HostStatus{Name: name, Services: []HostService{}, Refused: refused[name]}
		var a Host
		_, err := s.get(s.Tree.Host(name), &a)
		switch {
		case err == nil:
			h.AgentUp, h.Agent, h.Rack, h.Site, h.MachineID = true, a.Agent, a.Rack, a.Site, a.MachineID
			h.Fetching, h.Stuck = a.Fetching, a.Stuck
		case errors.Is(err, ErrBadNode):
			h.Bad = err.Error() // shown, not fatal: the agent is not up
		case !errors.Is(err, zk.ErrNoNode):
			return nil, err
		}
		for _, svc := range services {
			var c Current
			_, err := s.get(s.Tree.Current(svc, name), &c)
			switch {
			case err == nil:
				h.Services = append(h.Services, HostService{Name: svc, Online: true, Version: c.Version, Since: c.Since})
				continue
			case errors.Is(err, ErrBadNode):
				h.Bad = err.Error()
			case !errors.Is(err, zk.ErrNoNode):
				return nil, err
			}
			member, _, err := s.conn.Exists(s.Tree.Member(svc, name))
			if err != nil {
				return nil, fmt.Errorf("roll: read %s: %w", s.Tree.Member(svc, name), err)
			}
			if member {
				h.Services = append(h.Services, HostService{Name: svc})
			}
		}
		if !h.AgentUp && len(h.Services) == 0 && len(h.Refused) == 0 && h.Bad == "" {
			return nil, fmt.Errorf("%w %q: no agent holds %s, and it is a member of no service", ErrUnknownHost, name, s.Tree.Host(name))
		}
		out = append(out, h)
	}
	return out, nil
}
