package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcroll/dcroll/fetch"
	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/internal/proc"
	"github.com/dcroll/dcroll/roll"
	"github.com/dcroll/dcroll/state"
)

// payloadSize is the random payload of every release, so that a transfer
// takes long enough for a slow link to matter.
const payloadSize = 1 << 20

// Deadlines of a schedule's phases.
const (
	stageTimeout  = 30 * time.Second // until the manifests are in ZooKeeper
	settleTimeout = 3 * time.Minute  // until the deploy queue empties or halts
	// convergeTimeout is until every host runs the release, once the
	// nemesis is done.
	convergeTimeout = 2 * time.Minute
	// maxResumes is how often a schedule resumes halted services.
	maxResumes = 3
	// operatorTries is how often an operator's command is tried.
	operatorTries = 10
	// autoRollbackWait is how long a halt of a deploy ordered with
	// --auto-rollback may stay before the operator rolls back by hand:
	// the host that recorded the halt may have died before its rollback.
	autoRollbackWait = 30 * time.Second
)

// Chaos runs schedules against a data center, one after the other, each a
// new release of every service.
type Chaos struct {
	DC    *DC
	Model Model
	// Staged maps each service's versions to the sha256 of their
	// artifacts, version 1 included.
	Staged  map[string]map[string]string
	version int // the last version staged
	dir     string
	// origin is the base URL of the HTTP server of dir, the origin of
	// detached stages; detached says the schedule running stages so.
	origin   string
	detached bool
	// final is the version every host ran at the end of the last
	// schedule, by service: the release a rollback goes back to.
	final map[string]string
	// kept says whether a release was staged and rolled out before, so
	// that there is an earlier release to go back to.
	kept bool

	// Counts of what the schedules did, for the report.
	Faults   map[string]int
	Ops      map[string]int // the operator's actions taken
	Finished int            // rollouts that finished without a halt
	Halts    []string
}

// Outcome is one schedule's result.
type Outcome struct {
	Schedule   Schedule
	Violations []Violation
	// Halts are the halts recorded while the schedule ran.
	Halts    []string
	Duration time.Duration
	// Final is the version every host runs at the end, by service.
	Final map[string]string
}

// NewChaos installs version 1 of every service on every host of dc, starts
// the agents and waits until every host serves.
func NewChaos(t testing.TB, dc *DC) *Chaos {
	t.Helper()
	c := &Chaos{
		DC: dc,
		Model: Model{
			Policies:  dc.Policies,
			Detection: SessionTimeout + 2*time.Second,
		},
		Staged: map[string]map[string]string{},
		dir:    filepath.Join(dc.Dir, "releases"),
		Faults: map[string]int{},
		Ops:    map[string]int{},
		final:  map[string]string{"db": "1", "web": "1"},
	}
	for _, h := range dc.Hosts {
		c.Model.Hosts = append(c.Model.Hosts, h.Name)
	}
	c.serveOrigin(t)
	c.version = 1
	for _, svc := range Services {
		art, err := c.release(svc, "1", false, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range dc.Hosts {
			if err := h.Install(svc, "1", art); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range dc.Hosts {
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
	}
	rec := c.record()
	defer rec.Stop()
	if err := c.waitAll(context.Background(), rec, time.Minute, map[string]string{"db": "1", "web": "1"}); err != nil {
		t.Fatalf("fleet did not come up: %v", err)
	}
	return c
}

// release packs version of svc (a VERSION file, a random payload, and the
// marker that fails the health check if unhealthy) and records its sha256.
func (c *Chaos) release(svc, version string, unhealthy bool, seed uint64) (string, error) {
	src := filepath.Join(c.dir, svc, version)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte(svc+" "+version+"\n"), 0o644); err != nil {
		return "", err
	}
	payload := make([]byte, payloadSize)
	rng := rand.New(rand.NewPCG(seed, uint64(len(svc))<<32|uint64(c.version)))
	for i := 0; i < len(payload); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < len(payload); j++ {
			payload[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(filepath.Join(src, "payload"), payload, 0o644); err != nil {
		return "", err
	}
	if unhealthy {
		if err := os.WriteFile(filepath.Join(src, "unhealthy"), nil, 0o644); err != nil {
			return "", err
		}
	}
	art := filepath.Join(c.dir, svc+"-"+version+".tar.gz")
	if err := fetch.PackFile(src, art); err != nil {
		return "", err
	}
	_, sum, err := fetch.Describe(art)
	if err != nil {
		return "", err
	}
	if c.Staged[svc] == nil {
		c.Staged[svc] = map[string]string{}
	}
	c.Staged[svc][version] = sum
	return art, nil
}

// serveOrigin serves the releases' directory over plain HTTP, as an
// artifact store would (net/http answers ranges), on every address of the
// root namespace, named by this machine's name as stage names itself.
func (c *Chaos) serveOrigin(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(c.dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	c.origin = "http://" + net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

func (c *Chaos) record() *Recorder {
	var targets []Target
	for _, h := range c.DC.Hosts {
		for _, svc := range Services {
			targets = append(targets, Target{Host: h.Name, Service: svc, URL: h.ServiceURL(svc)})
		}
	}
	return Record(c.DC.Store, Services, targets, c.Staged)
}

// Run runs schedule s: it stages a release of every service, orders it, lets
// the nemesis loose, waits until the rollout finished or halted, fixes a
// halted one, waits until every host runs the final release, checks the
// disks and then the recorded history. An error is a failure to run the
// schedule; violations are in the outcome.
func (c *Chaos) Run(ctx context.Context, t testing.TB, s Schedule) (out Outcome, err error) {
	start := time.Now()
	out.Schedule = s
	rec := c.record()
	defer func() {
		h := rec.Stop()
		out.Violations = append(out.Violations, Check(c.Model, h)...)
		out.Duration = time.Since(start)
	}()

	c.version++
	c.detached = s.Detached
	v := strconv.Itoa(c.version)
	arts := map[string]string{}
	for _, svc := range Services {
		if arts[svc], err = c.release(svc, v, s.Bad == svc, s.Seed); err != nil {
			return out, err
		}
		rec.Staged(svc, v, c.Staged[svc][v])
	}
	if s.Bad != "" {
		c.Faults[BadRelease]++
	}
	op := s.Operator
	if op.Action != "" && !c.kept {
		t.Logf("chaos: schedule %d: no earlier release staged yet, so no %s", s.Index, op.Action)
		op = Operator{}
	}
	if op.Action != "" {
		c.Ops[op.Action]++
	}
	before := maps.Clone(c.final)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stagers []*proc.Proc
	defer func() {
		for _, p := range stagers {
			p.Terminate(10 * time.Second)
		}
	}()
	operator := make(chan error, 1)
	go func() {
		var err error
		stagers, err = c.stage(ctx, v, arts, false)
		if err == nil {
			err = c.order(ctx, op)
		}
		if err == nil {
			err = c.act(ctx, s.Index, op, t)
		}
		operator <- err
	}()
	nemesisErr := c.nemesis(ctx, rec, s)
	if err := <-operator; err != nil {
		return out, err
	}
	if nemesisErr != nil {
		return out, nemesisErr
	}

	// want is what every host must run at the end: the new release, a
	// fix of a bad one, or after a rollback the release before.
	want := map[string]string{}
	for _, svc := range Services {
		want[svc] = v
	}
	// either: services whose end depends on faults (a halt of a deploy
	// ordered with --auto-rollback rolls it back), which may end on the
	// new release or the one before.
	either := map[string]bool{}
	switch op.Action {
	case OpRollback:
		for _, svc := range Services {
			if svc == op.Service || dependsOn(c.Model.Policies, svc, op.Service) {
				want[svc] = before[svc]
			}
		}
	case OpAutoRollback:
		for _, svc := range Services {
			if svc == s.Bad || dependsOn(c.Model.Policies, svc, s.Bad) {
				want[svc] = before[svc]
			} else {
				either[svc] = true
			}
		}
	}
	// A halted bad release is fixed with a new release staged over it; a
	// good one halted by a fault is retried; a halted rollback too. Under
	// --auto-rollback the halt is rolled back by dcroll, or else by the
	// operator. Then the operator resumes, as a person would, a few times
	// at most.
	fixed := map[string]bool{}
	for round := 0; ; round++ {
		halts, err := c.settle(ctx, rec, time.Now())
		if err != nil {
			c.diagnose(t)
			return out, err
		}
		if len(halts) == 0 {
			break
		}
		if round == maxResumes {
			return out, fmt.Errorf("still halted after %d resumes: %v", maxResumes, halts)
		}
		for svc, why := range halts {
			t.Logf("chaos: schedule %d: %s halted: %s", s.Index, svc, why)
			out.Halts = append(out.Halts, svc+": "+why)
			c.Halts = append(c.Halts, fmt.Sprintf("schedule %d: %s: %s", s.Index, svc, why))
			rollingBack, err := c.rollingBack(ctx, svc)
			if err != nil {
				return out, err
			}
			if op.Action == OpAutoRollback && !rollingBack {
				lifted, err := c.awaitAutoRollback(ctx, rec, svc)
				if err != nil {
					return out, err
				}
				if !lifted {
					t.Logf("chaos: schedule %d: %s still halted %s after its halt: the operator rolls it back", s.Index, svc, autoRollbackWait)
					if err := c.operator(ctx, "staged already", "rollback", svc); err != nil {
						return out, err
					}
				}
				continue
			}
			if svc == s.Bad && !fixed[svc] && op.Action != OpAutoRollback {
				fixed[svc] = true
				c.version++
				fix := strconv.Itoa(c.version)
				art, err := c.release(svc, fix, false, s.Seed)
				if err != nil {
					return out, err
				}
				rec.Staged(svc, fix, c.Staged[svc][fix])
				more, err := c.stage(ctx, fix, map[string]string{svc: art}, true)
				stagers = append(stagers, more...)
				if err != nil {
					return out, err
				}
				want[svc] = fix
			}
			if err := c.operator(ctx, "", "resume", svc); err != nil {
				return out, err
			}
		}
	}
	if len(out.Halts) == 0 {
		c.Finished++
	}
	final, err := c.stagedVersions(ctx)
	if err != nil {
		return out, err
	}
	for _, svc := range Services {
		if final[svc] != want[svc] && !(either[svc] && final[svc] == before[svc]) {
			out.Violations = append(out.Violations, Violation{At: time.Now(), Invariant: "operator",
				Detail: fmt.Sprintf("%s: %s is staged at the end, want %s (before the schedule %s; operator %+v)", svc, final[svc], want[svc], before[svc], op)})
		}
	}
	if op.Action == OpCanary && !slices.ContainsFunc(out.Halts, func(h string) bool { return strings.HasPrefix(h, "web:") }) {
		// web's canary, not halted (a resume would have ended it), ended
		// by its canary_hold: the history says so.
		if err := c.promotedByHold(ctx, "web", start); err != nil {
			out.Violations = append(out.Violations, Violation{At: time.Now(), Invariant: "canary_hold", Detail: err.Error()})
		}
	}
	out.Final = final
	c.final, c.kept = final, true
	if err := c.waitAll(ctx, rec, convergeTimeout, final); ctx.Err() != nil {
		return out, ctx.Err()
	} else if err != nil {
		out.Violations = append(out.Violations, Violation{At: time.Now(), Invariant: "convergence", Detail: err.Error()})
		return out, nil
	}
	for _, err := range c.checkDisks(final) {
		out.Violations = append(out.Violations, Violation{At: time.Now(), Invariant: "durability", Detail: err.Error()})
	}
	return out, nil
}

// stage runs `dcroll stage` for each service's artifact, seeding it from the
// root namespace, and waits until its manifest is in ZooKeeper.
func (c *Chaos) stage(ctx context.Context, version string, arts map[string]string, replace bool) ([]*proc.Proc, error) {
	var procs []*proc.Proc
	starts := map[string]func() (*proc.Proc, error){}
	stagers := map[string]*proc.Proc{}
	for _, svc := range Services {
		art, ok := arts[svc]
		if !ok {
			continue
		}
		// Listening on every address and advertising this machine's name,
		// stage's defaults: the hosts resolve the name to the bridge.
		args := []string{"stage", "--timeout", "5m", "--sign-key", c.DC.SignKey}
		if replace {
			args = append(args, "--replace")
		}
		if c.detached {
			args = append(args, "--detach", "--url", c.origin+"/"+filepath.Base(art))
		}
		args = append(args, svc, version, art)
		start := func() (*proc.Proc, error) {
			return c.DC.StartOperator(filepath.Join(c.DC.Dir, fmt.Sprintf("stage-%s-%s.log", svc, version)), args...)
		}
		p, err := start()
		if err != nil {
			return procs, err
		}
		procs = append(procs, p)
		starts[svc] = start
		stagers[svc] = p
	}
	deadline := time.Now().Add(stageTimeout)
	for _, svc := range Services {
		if _, ok := arts[svc]; !ok {
			continue
		}
		for {
			m, err := c.DC.Store.Manifest(svc)
			if err == nil && m.Version == version {
				if len(m.Signatures) == 0 {
					return procs, fmt.Errorf("stage %s %s: the manifest is not signed", svc, version)
				}
				break
			}
			// A stage that failed before its manifest was written (it
			// met ZooKeeper down) is run again, as a person would.
			if stagers[svc].Exited() {
				if err := pause(ctx, time.Second); err != nil {
					return procs, err
				}
				p, err := starts[svc]()
				if err != nil {
					return procs, err
				}
				procs = append(procs, p)
				stagers[svc] = p
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return procs, fmt.Errorf("stage %s %s: no manifest after %s (see stage-%s-%s.log): %v", svc, version, stageTimeout, svc, version, err)
			}
			time.Sleep(50 * time.Millisecond) // polling ZooKeeper
		}
	}
	return procs, nil
}

func (c *Chaos) order(ctx context.Context, op Operator) error {
	args := []string{"order", "--auto"}
	switch op.Action {
	case OpAutoRollback:
		args = append(args, "--auto-rollback")
	case OpCanary:
		args = append(args, "--canary", op.Canary)
	}
	return c.operator(ctx, "already queued", args...)
}

// act takes the operator's action once the release is ordered: a rollback
// after op.After; or, for a canary, a promote of db once its canary has
// paused it. web's canary is left to its canary_hold. A canary that a
// halt stops is the settle loop's: resume ends it.
func (c *Chaos) act(ctx context.Context, index int, op Operator, t testing.TB) error {
	switch op.Action {
	case OpRollback:
		if err := pause(ctx, op.After); err != nil {
			return err
		}
		out, err := c.DC.Operator("rollback", op.Service)
		if err != nil {
			// Met ZooKeeper down: as a person would, again, until it
			// says it went through ("staged already": the first did).
			return c.operator(ctx, "staged already", "rollback", op.Service)
		}
		t.Logf("chaos: schedule %d: dcroll rollback %s:\n%s", index, op.Service, out)
	case OpCanary:
		deadline := time.Now().Add(settleTimeout)
		for {
			ctl, err := c.DC.Store.Control("db")
			switch {
			case err != nil:
				// ZooKeeper down: look again.
			case ctl.Halted != nil || ctl.Canary == nil:
				return nil
			case ctl.Reason == roll.CanaryWait:
				t.Logf("chaos: schedule %d: db's canary of %d hosts paused it: promote", index, ctl.Canary.Hosts)
				return c.operator(ctx, "not in a canary deploy", "promote", "db")
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("db's canary neither paused nor ended within %s: control %+v (%v)", settleTimeout, ctl, err)
			}
			time.Sleep(50 * time.Millisecond) // polling ZooKeeper
		}
	}
	return nil
}

// rollingBack reports whether svc's staged release is a rollback's.
func (c *Chaos) rollingBack(ctx context.Context, svc string) (bool, error) {
	for try := 1; ; try++ {
		m, err := c.DC.Store.Manifest(svc)
		if err == nil {
			return m.RollbackOf != "", nil
		}
		if try == operatorTries {
			return false, fmt.Errorf("read %s's manifest: %w", svc, err)
		}
		if err := pause(ctx, time.Second); err != nil {
			return false, err
		}
	}
}

// awaitAutoRollback waits until a read of ZooKeeper shows svc no longer
// halted (the rollback lifts the halt) and reports whether it did within
// autoRollbackWait.
func (c *Chaos) awaitAutoRollback(ctx context.Context, rec *Recorder, svc string) (bool, error) {
	since := time.Now()
	for {
		if s, ok := rec.LastSample(); ok && s.At.After(since) {
			if _, halted := s.Halted[svc]; !halted {
				return true, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if time.Since(since) > autoRollbackWait {
			return false, nil
		}
		time.Sleep(50 * time.Millisecond) // polling the recorder
	}
}

// promotedByHold checks that the history records a promote of svc by its
// canary_hold since since.
func (c *Chaos) promotedByHold(ctx context.Context, svc string, since time.Time) error {
	var events []roll.HistoryEvent
	var err error
	for try := 1; try <= operatorTries; try++ {
		if events, err = c.DC.Store.History(svc, 50); err == nil {
			break
		}
		if err := pause(ctx, time.Second); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("read %s's history: %w", svc, err)
	}
	var seen []string
	for _, e := range events {
		if e.At.Before(since) {
			continue
		}
		seen = append(seen, e.Action+" "+e.Detail)
		if e.Action == roll.ActPromote && strings.HasPrefix(e.Detail, roll.AutoPromoteDetail) {
			return nil
		}
	}
	return fmt.Errorf("%s's canary ended without a promote by its canary_hold in the history: %v", svc, seen)
}

// stagedVersions reads the version staged of every service: what every
// host must run once the deploy is done.
func (c *Chaos) stagedVersions(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, svc := range Services {
		for try := 1; ; try++ {
			m, err := c.DC.Store.Manifest(svc)
			if err == nil {
				out[svc] = m.Version
				break
			}
			if try == operatorTries {
				return nil, fmt.Errorf("read %s's manifest: %w", svc, err)
			}
			if err := pause(ctx, time.Second); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// operator runs an operator's command, and runs it again, as a person would,
// when it fails while the nemesis has ZooKeeper down or electing. done is
// what a repeat says when the first try did its work after all.
func (c *Chaos) operator(ctx context.Context, done string, args ...string) error {
	var out string
	var err error
	for try := 1; try <= operatorTries; try++ {
		out, err = c.DC.Operator(args...)
		if err == nil || try > 1 && done != "" && strings.Contains(out, done) {
			return nil
		}
		if perr := pause(ctx, time.Second); perr != nil {
			return perr
		}
	}
	return fmt.Errorf("%s: %v after %d tries: %s", strings.Join(args, " "), err, operatorTries, out)
}

// nemesis injects s's faults one after the other, each healed after its
// hold, and records them.
func (c *Chaos) nemesis(ctx context.Context, rec *Recorder, s Schedule) error {
	for _, f := range s.Faults {
		if err := pause(ctx, f.After); err != nil {
			return err
		}
		c.Faults[f.Kind]++
		h := c.DC.Hosts[f.Host%len(c.DC.Hosts)]
		switch f.Kind {
		case Kill:
			healed := rec.Fault(f.Kind, h.Name)
			h.Kill()
			if err := pause(ctx, f.Hold); err != nil {
				return err
			}
			if err := h.Start(); err != nil {
				return err
			}
			healed()
		case Partition:
			healed := rec.Fault(f.Kind, h.Name)
			if err := h.Cut(); err != nil {
				return err
			}
			err := pause(ctx, f.Hold)
			if herr := h.Heal(); herr != nil {
				return herr
			}
			healed()
			if err != nil {
				return err
			}
		case Pause:
			healed := rec.Fault(f.Kind, h.Name)
			h.Signal(syscall.SIGSTOP)
			err := pause(ctx, f.Hold)
			h.Signal(syscall.SIGCONT)
			healed()
			if err != nil {
				return err
			}
		case Slow:
			healed := rec.Fault(f.Kind, h.Name)
			if err := h.Slow(slowRate); err != nil {
				return err
			}
			err := pause(ctx, f.Hold)
			if uerr := h.Unslow(); uerr != nil {
				return uerr
			}
			healed()
			if err != nil {
				return err
			}
		case ZKLeader:
			leader := c.DC.ZK.Leader()
			if leader < 0 {
				return errors.New("zk-leader: no ZooKeeper server is leader")
			}
			healed := rec.Fault(f.Kind, "")
			c.DC.ZK.Stop(leader)
			if err := pause(ctx, f.Hold); err != nil {
				return err
			}
			c.DC.ZK.Start(leader)
			healed()
		case ZKQuorum:
			down := []int{f.Host % 3, (f.Host + 1) % 3}
			healed := rec.Fault(f.Kind, "")
			for _, i := range down {
				c.DC.ZK.Stop(i)
			}
			if err := pause(ctx, f.Hold); err != nil {
				return err
			}
			for _, i := range down {
				c.DC.ZK.Start(i)
			}
			healed()
		default:
			return fmt.Errorf("unknown fault kind %q", f.Kind)
		}
	}
	return nil
}

// pause waits d: the schedule's own timing, not a wait for a condition.
func pause(ctx context.Context, d time.Duration) error {
	if !clock.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// settle waits until a read of ZooKeeper after since shows the deploy queue
// empty or a service halted, and returns the halts.
func (c *Chaos) settle(ctx context.Context, rec *Recorder, since time.Time) (map[string]string, error) {
	deadline := time.Now().Add(settleTimeout)
	for {
		if s, ok := rec.LastSample(); ok && s.At.After(since) {
			if len(s.Halted) > 0 {
				return s.Halted, nil
			}
			if len(s.Steps) == 0 {
				return nil, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			s, _ := rec.LastSample()
			return nil, fmt.Errorf("progress: the deploy neither finished nor halted within %s: steps %v, turns %v", settleTimeout, s.Steps, s.Turns)
		}
		time.Sleep(50 * time.Millisecond) // polling the recorder
	}
}

// waitAll waits until every host serves version want[svc] of every service
// and is in /current for it.
func (c *Chaos) waitAll(ctx context.Context, rec *Recorder, timeout time.Duration, want map[string]string) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.allOn(rec, want)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every host runs %v after %s: %v", want, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the recorder
	}
}

func (c *Chaos) allOn(rec *Recorder, want map[string]string) error {
	s, ok := rec.LastSample()
	if !ok {
		return errors.New("no sample of ZooKeeper yet")
	}
	var problems []string
	for _, h := range c.DC.Hosts {
		for _, svc := range Services {
			p, ok := rec.Last(h.Name, svc)
			switch {
			case !ok:
				problems = append(problems, h.Name+" "+svc+" not asked yet")
			case !p.OK || p.Version != want[svc]:
				problems = append(problems, fmt.Sprintf("%s %s answers ok=%t version %q", h.Name, svc, p.OK, p.Version))
			case !slices.Contains(s.Current[svc], h.Name):
				problems = append(problems, fmt.Sprintf("%s %s not in /current", h.Name, svc))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// checkDisks checks what every host has on disk: state.json loads, no
// switch is in progress, current points at the final version, and every
// unpacked release is byte for byte a staged artifact.
func (c *Chaos) checkDisks(final map[string]string) []error {
	var errs []error
	for _, h := range c.DC.Hosts {
		f, err := state.Load(h.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
		} else if f.Switch != nil {
			errs = append(errs, fmt.Errorf("%s: state.json still records a switch of %s to %s", h.Name, f.Switch.Service, f.Switch.To))
		}
		for _, svc := range Services {
			r := state.Releases{Dir: filepath.Join(h.Dir, "releases", svc)}
			cur, err := r.Current()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", h.Name, svc, err))
			} else if cur != final[svc] {
				errs = append(errs, fmt.Errorf("%s %s: current is %s, want %s", h.Name, svc, cur, final[svc]))
			}
			installed, err := r.Installed()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", h.Name, svc, err))
			}
			for _, v := range installed {
				sum, err := treeSum(r.Path(v))
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %s %s: %w", h.Name, svc, v, err))
				} else if want := c.Staged[svc][v]; sum != want {
					errs = append(errs, fmt.Errorf("%s %s %s: unpacked release packs to sha256 %s, the artifact has %s", h.Name, svc, v, sum, want))
				}
			}
		}
	}
	return errs
}

// treeSum is the sha256 of dir packed as dcroll packs releases.
func treeSum(dir string) (string, error) {
	h := sha256.New()
	if err := fetch.Pack(dir, h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diagnose logs what a stalled deploy looks like from ZooKeeper, per
// service (its ready queue, turns, online hosts and the front's verdict),
// and the last lines of every agent's log: a failed run on a machine
// whose temporary files are gone still says why it stalled.
func (c *Chaos) diagnose(t testing.TB) {
	st, err := c.DC.Store.Status()
	if err != nil {
		t.Logf("chaos: diagnose: status: %v", err)
	} else {
		for _, svc := range st.Services {
			t.Logf("chaos: diagnose: %s: staged %q, ready %v, upgrading %v, online %v, roll_ready %v, roll_wait %q, paused %v, halted %v",
				svc.Name, svc.Staged, svc.Ready, svc.Upgrading, svc.Online, svc.RollReady, svc.RollWait, svc.Paused, svc.Halted)
		}
		for _, h := range st.Hosts {
			t.Logf("chaos: diagnose: host %s: agent up %v, services %v, stuck %v", h.Name, h.AgentUp, h.Services, h.Stuck)
		}
	}
	for _, h := range c.DC.Hosts {
		b, err := os.ReadFile(h.logPath())
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("chaos: diagnose: last lines of %s's log:\n%s", h.Name, strings.Join(lines[max(0, len(lines)-diagnoseLines):], "\n"))
	}
}

// diagnoseLines is how many of each agent's last log lines diagnose shows.
const diagnoseLines = 25
