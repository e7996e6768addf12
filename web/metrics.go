package web

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The page's server also serves the fleet's counts as Prometheus metrics
// (/metrics), from the same reading of the summary: scraping it costs
// ZooKeeper nothing. An agent's metrics say what one host does; these say
// what the data center does, for alerts such as a halted service.

var (
	descMembers   = fleetDesc("service_members", "Members of the service: the quorum's denominator.", "service")
	descOnline    = fleetDesc("service_online", "Members of the service online: serving and healthy, in /current.", "service")
	descOffline   = fleetDesc("service_offline", "Members of the service not in /current.", "service")
	descVersion   = fleetDesc("service_version_hosts", "Online hosts of the service per version.", "service", "version")
	descStaged    = fleetDesc("service_staged_info", "The service's staged release: 1, labelled with its version.", "service", "version")
	descReady     = fleetDesc("service_ready_hosts", "Hosts in the service's ready queue: the staged release verified on disk.", "service")
	descUpgrading = fleetDesc("service_upgrading_hosts", "Hosts of the service holding an upgrade turn.", "service")
	descHalted    = fleetDesc("service_halted", "Whether the service is halted by a failed switch (1) or not (0).", "service")
	descPaused    = fleetDesc("service_paused", "Whether the service is paused (1) or not (0).", "service")
	descSteps     = fleetDesc("deploy_steps", "Steps in the deploy queue.")
	descDPaused   = fleetDesc("deploy_paused", "Whether the whole deploy is paused (1) or not (0).")
	descRead      = fleetDesc("read_timestamp_seconds", "When the summary these metrics come from was read, in seconds since the epoch.")
	descUp        = fleetDesc("read_ok", "Whether the last reading of the summary succeeded (1) or not (0).")
)

func fleetDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("dcroll_fleet_"+name, help, labels, nil)
}

// fleetCollector turns the server's last reading into metrics.
type fleetCollector struct{ s *Server }

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descOnline, descOffline, descVersion, descStaged, descReady,
		descUpgrading, descHalted, descPaused, descSteps, descDPaused, descRead, descUp} {
		ch <- d
	}
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	v, _, _ := c.s.snapshot()
	gauge := func(d *prometheus.Desc, x float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, labels...)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descUp, flag(v.Err == "" && v.Sum != nil))
	sum := v.Sum
	if sum == nil {
		return
	}
	gauge(descRead, float64(sum.Time.UnixNano())/1e9)
	gauge(descSteps, float64(len(sum.Deploy.Steps)))
	gauge(descDPaused, flag(sum.Deploy.Paused))
	for _, s := range sum.Services {
		gauge(descMembers, float64(s.Members), s.Name)
		gauge(descOnline, float64(s.Online), s.Name)
		gauge(descOffline, float64(s.Offline), s.Name)
		for ver, n := range s.Versions {
			gauge(descVersion, float64(n), s.Name, ver)
		}
		if s.Staged != "" {
			gauge(descStaged, 1, s.Name, s.Staged)
		}
		gauge(descReady, float64(s.Ready), s.Name)
		gauge(descUpgrading, float64(len(s.Upgrading)), s.Name)
		gauge(descHalted, flag(s.Halted != nil), s.Name)
		gauge(descPaused, flag(s.Paused), s.Name)
	}
}
