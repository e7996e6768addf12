package demo

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// The second act: a bad release of badService, ordered as a canary of one
// host with auto-rollback. The canary's switch fails its health check,
// the service halts, and dcroll rolls it back to toVersion by itself.
const (
	badService = "web"
	badVersion = "3"
)

// act2 is what the second act saw.
type act2 struct {
	canary    string // the host that took the canary's turn
	halted    *roll.Failure
	announced bool
}

// badRelease stages badVersion of badService, which fails its health
// check, and orders it as `dcroll order --canary 1 --auto-rollback` would.
func (d *run) badRelease() error {
	d.act2 = time.Now()
	d.printf("\nsecond act: a bad release on a canary, rolled back by itself\n")
	if err := d.publish(badService, badVersion, true); err != nil {
		return err
	}
	d.event("staged %s %s, signed; it fails its health check (its release holds the file \"unhealthy\")", badService, badVersion)
	if _, err := d.store.OrderWith([][]string{{badService}}, roll.OrderOptions{CanaryHosts: 1, AutoRollback: true}); err != nil {
		return err
	}
	d.event("ordered %s %s as a canary of 1 host with auto-rollback (dcroll order --canary 1 --auto-rollback %s)", badService, badVersion, badService)
	return nil
}

// rolledBack follows the second act and reports done once badService's
// staged release is toVersion again, as a rollback of badVersion, the
// deploy queue is empty, nobody holds a turn, and every host is online on
// toVersion of it.
func (d *run) rolledBack(st *snapshot) (bool, error) {
	ss := st.service(badService)
	if d.a2.canary == "" && len(ss.Upgrading) > 0 {
		d.a2.canary = ss.Upgrading[0]
		d.event("canary: %s takes its turn to %s %s", d.a2.canary, badService, badVersion)
	}
	if ss.Halted != nil && d.a2.halted == nil {
		d.a2.halted = ss.Halted
		d.event("%s HALTED: %s", badService, ss.Halted)
	}
	if len(st.sum.Deploy.Steps) > 0 || len(ss.Upgrading) > 0 || ss.Halted != nil || ss.Online != len(d.hosts) {
		return false, nil
	}
	for _, h := range d.hosts {
		if st.on[h.name][badService] != toVersion {
			return false, nil
		}
	}
	m, err := d.store.Manifest(badService)
	if err != nil {
		return false, nil // a display refresh: read again at the next tick
	}
	if m.Version != toVersion || m.RollbackOf != badVersion {
		return false, nil
	}
	if !d.a2.announced {
		d.a2.announced = true
		d.event("rolled back: every host runs %s %s again, staged as the rollback of %s", badService, toVersion, badVersion)
	}
	return true, nil
}

// summaryAct2 prints what the second act showed, from the data center's
// history: the halt and the rollback dcroll made of itself.
func (d *run) summaryAct2() error {
	events, err := d.store.History(badService, 20)
	if err != nil {
		return err
	}
	var lines []string
	for _, e := range slices.Backward(events) {
		if e.At.Before(d.act2.Add(-time.Second)) || (e.Action != roll.ActHalt && e.Action != roll.ActRollback) {
			continue
		}
		line := fmt.Sprintf("  %s %s %s", e.At.Local().Format("15:04:05"), e.Action, e.Detail)
		if e.Outcome != "" && e.Outcome != "ok" {
			line += " (" + e.Outcome + ")"
		}
		lines = append(lines, line)
	}
	d.printf("\nsecond act done in %s: %s %s failed its health check on the canary, %s halted and dcroll rolled it back to %s by itself; every host runs %s %s. The history's events of it (dcroll history %s):\n%s\n",
		time.Since(d.act2).Round(100*time.Millisecond), badService, badVersion, badService, toVersion, badService, toVersion, badService, strings.Join(lines, "\n"))
	return nil
}
