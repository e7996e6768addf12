package agent

import (
	"fmt"
	"time"

	"github.com/dcroll/dcroll/internal/machineid"
	"github.com/dcroll/dcroll/roll"
)

// identify reads this machine's id: host.machine_id_file, else the
// system's (machineid.DefaultPaths). A machine without one still runs: it
// publishes no machine id, and is then taken for any other agent of its
// host name that publishes none either (see roll.Register).
func (a *Agent) identify() string {
	var paths []string
	if f := a.cfg.Host.MachineIDFile; f != "" {
		paths = []string{f}
	}
	id, from, err := machineid.Read(paths...)
	if err != nil {
		a.log.Warn("this machine has no machine id: another machine of the same host name that has none cannot be told from it", "error", err)
		return ""
	}
	a.log.Info("machine identified", "machine_id", id, "from", from)
	if a.opts.Replace {
		a.log.Warn("--replace: this machine takes the host name from the machine it belongs to, if that machine's agent is down", "host", a.host)
	}
	return id
}

// refused logs and publishes (under /refused, for status) that the host
// name is another machine's. The agent goes on serving from its cache,
// writes nothing under the name and tries again later.
func (a *Agent) refused(store *roll.Store, sess *session, taken *roll.HostTakenError) {
	msg := taken.Error()
	if msg != sess.refused {
		a.log.Error("refusing to register: the host name is another machine's; serving from the local cache, out of ZooKeeper, trying again later",
			"host", taken.Host, "machine_id", taken.Machine, "holder_machine_id", taken.Holder, "holder_up", taken.Live, "error", msg)
		sess.refused = msg
	} else {
		a.log.Debug("host name still refused", "error", msg)
	}
	if sess.reported == msg {
		return
	}
	if err := store.ReportRefused(roll.RefusalOf(taken, time.Now().UTC())); err != nil {
		a.log.Warn("cannot publish the refusal", "error", err)
		return
	}
	sess.reported = msg
}

// registered logs what Register did besides registering, and withdraws a
// refusal this machine published earlier.
func (a *Agent) registered(store *roll.Store, sess *session, reg roll.Registration) {
	if reg.StaleSession != 0 {
		a.log.Info("cleared the nodes of this machine's earlier session, left by an agent restarted before it expired",
			"session", fmt.Sprintf("%#x", reg.StaleSession), "nodes", reg.Cleared)
	}
	if reg.Replaced != "" {
		a.log.Warn("took the host name over (--replace)", "host", a.host, "from_machine_id", reg.Replaced, "machine_id", a.machine)
	}
	if len(reg.Adopted) > 0 {
		a.log.Info("memberships without a machine id now name this machine", "services", reg.Adopted, "machine_id", a.machine)
	}
	if sess.refused != "" {
		a.log.Info("registered: the host name is this machine's now", "host", a.host, "machine_id", a.machine)
	}
	// A refusal of this machine, of this session or an earlier one.
	if err := store.ClearRefused(a.host, a.machine); err != nil {
		a.log.Warn("cannot withdraw the refusal", "error", err)
	}
	sess.refused, sess.reported = "", ""
}
