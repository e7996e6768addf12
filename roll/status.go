package roll

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
)

// FleetStatus is what `dcroll status` shows, and its --json schema: a
// stable interface, so fields are only ever added.
type FleetStatus struct {
	Root     string          `json:"root"`
	Time     time.Time       `json:"time"`
	Services []ServiceStatus `json:"services"`
	Hosts    []HostStatus    `json:"hosts"`
	Deploy   DeployStatus    `json:"deploy"`
	// Skipped are the bad children of /current, /members and /hosts left
	// out of the status.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// DeployStatus is the deploy queue and whether the whole deploy is paused.
type DeployStatus struct {
	Paused bool `json:"paused"`
	// Steps is the queue, head first: the head step is the one rolling.
	Steps []StepStatus `json:"steps"`
	// Progress is how far the head step is, and when it may end (in the
	// summary only).
	Progress *StepProgress `json:"progress,omitempty"`
}

// StepProgress is how far the rolling step is: its services' online hosts
// on their staged releases, since when it rolls, and an estimate of the
// time left at the pace so far.
type StepProgress struct {
	Done    int       `json:"done"`
	Online  int       `json:"online"`
	Started time.Time `json:"started,omitzero"` // zero: its start is not in the history
	// Left is the time left at the pace so far: 0 when not known (no
	// start, or no host done yet).
	Left Duration `json:"left,omitempty"`
}

// String says how far the rolling step is, and how long it may take yet,
// as status and the status page show it.
func (p StepProgress) String() string {
	s := fmt.Sprintf("%d/%d online hosts on the staged release", p.Done, p.Online)
	if !p.Started.IsZero() {
		s += fmt.Sprintf(", rolling since %s", p.Started.UTC().Format("15:04:05"))
	}
	if p.Left > 0 {
		s += fmt.Sprintf(", about %s left at this pace", time.Duration(p.Left))
	}
	return s
}

// StepStatus is one step of the deploy queue.
type StepStatus struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
}

// ServiceStatus is one service across the fleet.
type ServiceStatus struct {
	Name   string  `json:"name"`
	Policy Service `json:"policy"`
	// QuorumHosts is the quorum in hosts for the current membership.
	QuorumHosts int      `json:"quorum_hosts"`
	Members     []string `json:"members"`
	Online      []string `json:"online"`
	// Offline are members not in /current: down, unhealthy or unreachable.
	Offline []string `json:"offline"`
	// Expired are the offline members gone for longer than member_ttl: a
	// percentage quorum is taken of the other members.
	Expired []string `json:"expired"`
	// Versions counts online hosts per version.
	Versions map[string]int `json:"versions"`

	// Staged is the staged release's version, empty when none is.
	Staged string `json:"staged"`
	// Ready is the ready queue: hosts holding the staged release, in the
	// order they take their turns.
	Ready []string `json:"ready"`
	// Upgrading are the hosts holding a turn: mid-switch.
	Upgrading []string `json:"upgrading"`
	Paused    bool     `json:"paused"`
	// Halted is the failure that halted the service's deploy, if any.
	Halted *Failure `json:"halted"`
	// RollReady says whether the front of the ready queue may take its turn
	// now; RollWait says why not.
	RollReady bool   `json:"roll_ready"`
	RollWait  string `json:"roll_wait"`
}

// HostStatus is one host: whether its agent holds a session, and what it
// serves.
type HostStatus struct {
	Name    string `json:"name"`
	AgentUp bool   `json:"agent_up"`
	Agent   string `json:"agent_version,omitempty"`
	Rack    string `json:"rack,omitempty"`
	Site    string `json:"site,omitempty"`
	// MachineID is the machine whose agent holds the name, when it is up.
	MachineID string        `json:"machine_id,omitempty"`
	Services  []HostService `json:"services"`
	// Fetching is the host's downloads in progress, by service.
	Fetching map[string]Fetch `json:"fetching,omitempty"`
	// Stuck says, by service, why the host cannot get the staged release.
	Stuck map[string]string `json:"stuck,omitempty"`
	// Refused are the agents of other machines that came up with this
	// host's name and were refused it.
	Refused []Refusal `json:"refused,omitempty"`
	// Bad says which of the host's nodes holds data that does not decode
	// (HostsStatus only; Status skips such nodes).
	Bad string `json:"bad,omitempty"`
}

// HostService is one service on one host; Version is empty when offline.
type HostService struct {
	Name    string    `json:"name"`
	Online  bool      `json:"online"`
	Version string    `json:"version,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// Status reads the whole fleet. It costs a constant number of requests per
// service and per step, plus one per online host (its version).
func (s *Store) Status() (*FleetStatus, error) {
	if err := s.CheckSeeded(); err != nil {
		return nil, err
	}
	services, err := s.Services()
	if err != nil {
		return nil, err
	}
	agents, err := s.Hosts()
	if err != nil {
		return nil, err
	}
	fs := &FleetStatus{Root: s.Tree.Root, Time: time.Now().UTC(), Services: []ServiceStatus{}, Hosts: []HostStatus{}}
	hosts := map[string]*HostStatus{}
	hostOf := func(name string) *HostStatus {
		h := hosts[name]
		if h == nil {
			h = &HostStatus{Name: name, Services: []HostService{}}
			if a, ok := agents[name]; ok {
				h.AgentUp, h.Agent, h.Rack, h.Site, h.MachineID = true, a.Agent, a.Rack, a.Site, a.MachineID
				h.Fetching, h.Stuck = a.Fetching, a.Stuck
			}
			hosts[name] = h
		}
		return h
	}
	for name := range agents {
		hostOf(name)
	}
	refused, err := s.Refusals()
	if err != nil {
		return nil, err
	}
	for name, rs := range refused {
		hostOf(name).Refused = rs
	}
	for _, name := range Catalog(services).Names() {
		members, err := s.Members(name)
		if err != nil {
			return nil, err
		}
		cur, err := s.CurrentOf(name)
		if err != nil {
			return nil, err
		}
		ss := ServiceStatus{
			Name:        name,
			Policy:      services[name],
			QuorumHosts: services[name].Quorum.Need(len(members)),
			Members:     members,
			Online:      []string{},
			Offline:     []string{},
			Versions:    map[string]int{},
		}
		all := map[string]bool{}
		for _, m := range members {
			all[m] = true
		}
		for h := range cur {
			all[h] = true
		}
		for _, h := range slices.Sorted(maps.Keys(all)) {
			c, online := cur[h]
			hs := HostService{Name: name, Online: online}
			if online {
				ss.Online = append(ss.Online, h)
				ss.Versions[c.Version]++
				hs.Version, hs.Since = c.Version, c.Since
			} else {
				ss.Offline = append(ss.Offline, h)
			}
			host := hostOf(h)
			host.Services = append(host.Services, hs)
		}
		expired, err := s.expired(ss.Policy, name, members, ss.Online)
		if err != nil {
			return nil, err
		}
		ss.Expired = []string{}
		for _, h := range expired {
			if slices.Contains(ss.Offline, h) {
				ss.Expired = append(ss.Expired, h)
			}
		}
		ss.QuorumHosts = ss.Policy.Quorum.Need(len(members) - len(ss.Expired))
		if err := s.deployOf(&ss); err != nil {
			return nil, err
		}
		fs.Services = append(fs.Services, ss)
	}
	for _, name := range slices.Sorted(maps.Keys(hosts)) {
		fs.Hosts = append(fs.Hosts, *hosts[name])
	}
	if fs.Deploy, err = s.deployStatus(); err != nil {
		return nil, err
	}
	if sk := s.Skipped(); len(sk) > 0 {
		fs.Skipped = sk
	}
	return fs, nil
}

func (s *Store) deployStatus() (DeployStatus, error) {
	ds := DeployStatus{Steps: []StepStatus{}}
	ctl, err := s.DeployControl()
	if err != nil {
		return ds, err
	}
	ds.Paused = ctl.Paused
	steps, err := s.Steps()
	if err != nil {
		return ds, err
	}
	for _, st := range steps {
		ds.Steps = append(ds.Steps, StepStatus{Name: st.Name, Services: st.Services})
	}
	return ds, nil
}

// deployOf fills in ss's deploy fields: what is staged, who is ready and
// who upgrading, and whether the next host may take its turn, as Decide
// would judge it for that host now.
func (s *Store) deployOf(ss *ServiceStatus) error {
	ss.Ready, ss.Upgrading = []string{}, []string{}
	ctl, err := s.Control(ss.Name)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	ss.Paused, ss.Halted = ctl.Paused, ctl.Halted
	turns, _, err := s.childrenW(s.Tree.turnsDir(ss.Name), false)
	if err != nil {
		return err
	}
	slices.Sort(turns)
	ss.Upgrading = append(ss.Upgrading, turns...)

	m, err := s.Manifest(ss.Name)
	if errors.Is(err, ErrNotStaged) {
		ss.RollWait = "nothing staged"
		return nil
	}
	if err != nil {
		return err
	}
	ss.Staged = m.Version
	queue, err := s.ReadyQueue(ss.Name)
	if err != nil {
		return err
	}
	for _, e := range queue {
		ss.Ready = append(ss.Ready, e.Host)
	}
	if len(ss.Ready) == 0 {
		ss.RollWait = "no host ready"
		if len(ss.Upgrading) == 0 && len(ss.Online) > 0 && ss.Versions[m.Version] == len(ss.Online) {
			ss.RollWait = "rolled out"
		}
		return nil
	}
	_, v, err := s.TurnStateOf(ss.Name, ss.Ready[0])
	if err != nil {
		return err
	}
	ss.RollReady, ss.RollWait = v.Go, v.Wait
	return nil
}
