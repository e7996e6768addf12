package roll

import (
	"maps"
	"slices"
	"time"
)

// FleetStatus is what `dcroll status` shows, and its --json schema: a
// stable interface, so fields are only ever added.
type FleetStatus struct {
	Root     string          `json:"root"`
	Time     time.Time       `json:"time"`
	Services []ServiceStatus `json:"services"`
	Hosts    []HostStatus    `json:"hosts"`
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
	// Versions counts online hosts per version.
	Versions map[string]int `json:"versions"`
}

// HostStatus is one host: whether its agent holds a session, and what it
// serves.
type HostStatus struct {
	Name     string        `json:"name"`
	AgentUp  bool          `json:"agent_up"`
	Agent    string        `json:"agent_version,omitempty"`
	Rack     string        `json:"rack,omitempty"`
	Site     string        `json:"site,omitempty"`
	Services []HostService `json:"services"`
}

// HostService is one service on one host; Version is empty when offline.
type HostService struct {
	Name    string    `json:"name"`
	Online  bool      `json:"online"`
	Version string    `json:"version,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// Status reads the whole fleet.
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
				h.AgentUp, h.Agent, h.Rack, h.Site = true, a.Agent, a.Rack, a.Site
			}
			hosts[name] = h
		}
		return h
	}
	for name := range agents {
		hostOf(name)
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
		fs.Services = append(fs.Services, ss)
	}
	for _, name := range slices.Sorted(maps.Keys(hosts)) {
		fs.Hosts = append(fs.Hosts, *hosts[name])
	}
	return fs, nil
}
