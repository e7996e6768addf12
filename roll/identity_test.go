package roll

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/zktest"
)

const (
	machineA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	machineB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func claim(host, machine string, replace bool) Claim {
	return Claim{Host: host, Machine: machine, Services: []string{"api", "db"}, Replace: replace, Joined: time.Now().UTC()}
}

// memberOf reads host's membership of svc.
func memberOf(t *testing.T, s *Store, svc, host string) Member {
	t.Helper()
	var m Member
	if _, err := s.get(s.Tree.Member(svc, host), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A second machine with a name in use is refused, with an error naming the
// name and both machines, and writes nothing; the first keeps every node.
func TestIntegration_RegisterRefusesANameInUseByAnotherMachine(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/id")
	seed(t, admin, parse(t, goodSeed))
	a, b := connect(t, zkc, "/id"), connect(t, zkc, "/id")
	if _, err := a.Register(claim("h1", machineA, false), Host{Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetCurrent("db", "h1", Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	before := dump(t, admin, "/id")
	for _, replace := range []bool{false, true} {
		_, err := b.Register(claim("h1", machineB, replace), Host{Agent: "b"})
		var taken *HostTakenError
		if !errors.As(err, &taken) || !errors.Is(err, ErrHostTaken) {
			t.Fatalf("replace %v: %v, want a HostTakenError", replace, err)
		}
		if !taken.Live || taken.Holder != machineA || taken.Machine != machineB || taken.Path != "/id/hosts/h1" {
			t.Errorf("replace %v: %+v", replace, taken)
		}
		for _, want := range []string{`"h1"`, "machine " + machineA, "machine " + machineB, "agent is up"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %s", err, want)
			}
		}
		if after := dump(t, admin, "/id"); !mapsEqual(before, after) {
			t.Fatalf("a refused registration changed the tree:\n%v\n%v", before, after)
		}
	}
	_, stat, err := admin.conn.Get("/id/hosts/h1")
	if err != nil || stat.EphemeralOwner != a.conn.SessionID() {
		t.Fatalf("/id/hosts/h1 no longer a's: %v", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A machine whose agent is down keeps its name through its memberships:
// another machine is refused, unless it replaces it on purpose.
func TestIntegration_RegisterReplacesADownMachineOnlyOnPurpose(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/id")
	seed(t, admin, parse(t, goodSeed))
	a := connect(t, zkc, "/id")
	if _, err := a.Register(claim("h1", machineA, false), Host{Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	joined := memberOf(t, admin, "db", "h1").Joined
	a.Close()

	b := connect(t, zkc, "/id")
	// Not even for an instant does the refused machine show as h1.
	_, _, shown, err := admin.conn.ExistsW("/id/hosts/h1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Register(claim("h1", machineB, false), Host{Agent: "b"})
	if _, err := admin.session.Sync("/id/hosts"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-shown:
		t.Fatalf("a refused registration showed up: %+v", ev)
	default:
	}
	var taken *HostTakenError
	if !errors.As(err, &taken) || taken.Live || taken.Holder != machineA || !strings.HasPrefix(taken.Path, "/id/members/") {
		t.Fatalf("%v: want refused by a membership naming machine a", err)
	}
	if !strings.Contains(err.Error(), "--replace") || !strings.Contains(err.Error(), "dcroll forget h1") {
		t.Errorf("error %q does not say how to replace the machine", err)
	}
	if ok, _, _ := admin.conn.Exists("/id/hosts/h1"); ok {
		t.Fatal("a refused registration left /hosts/h1")
	}
	if m := memberOf(t, admin, "api", "h1"); m.MachineID != machineA {
		t.Fatalf("membership %+v after a refusal", m)
	}

	reg, err := b.Register(claim("h1", machineB, true), Host{Agent: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Replaced != machineA {
		t.Errorf("registration %+v: want machine a replaced", reg)
	}
	for _, svc := range []string{"api", "db"} {
		if m := memberOf(t, admin, svc, "h1"); m.MachineID != machineB || !m.Joined.After(joined) {
			t.Errorf("%s membership %+v: want machine b, joined now", svc, m)
		}
	}
	var h Host
	if _, err := admin.get("/id/hosts/h1", &h); err != nil || h.MachineID != machineB || h.Protocol != ProtocolVersion {
		t.Errorf("/id/hosts/h1: %+v %v", h, err)
	}
}

// An agent restarted before its earlier session expired (same machine)
// clears every node that session holds under the name, and only those.
func TestIntegration_RegisterClearsThisMachinesEarlierSession(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/id")
	seed(t, admin, parse(t, "[services.db]\nquorum = 0\n[services.api]\nquorum = 0\n"))
	for _, svc := range []string{"api", "db"} {
		if err := admin.Stage(svc, Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.AppendSteps([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	earlier := connect(t, zkc, "/id")
	if _, err := earlier.Register(claim("h1", machineA, false), Host{Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	ready, err := earlier.JoinReady("db", "h1", "v2")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := earlier.AwaitTurn(ctx, "db", "h1", ready, Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	queued, err := earlier.JoinReady("api", "h1", "v2")
	if err != nil {
		t.Fatal(err)
	}
	// The same session holds another host's nodes: they stay.
	if err := earlier.SetCurrent("db", "h2", Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"api", "db"} {
		if err := earlier.SetCurrent(svc, "h1", Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := earlier.conn.Create(earlier.Tree.advancerPath(), []byte("h1"), zk.FlagEphemeral, earlier.acls.of(earlier.Tree.advancerPath())); err != nil {
		t.Fatal(err)
	}

	restarted := connect(t, zkc, "/id")
	reg, err := restarted.Register(claim("h1", machineA, false), Host{Agent: "a2"})
	if err != nil {
		t.Fatal(err)
	}
	// The ticket is found from the host's queued node.
	want := []string{"/id/current/api/h1", queued, "/id/staging/api/queued/h1", "/id/current/db/h1", "/id/roll/db/turns/h1", "/id/roll/_advancer", "/id/hosts/h1"}
	if reg.StaleSession != earlier.conn.SessionID() || !slices.Equal(reg.Cleared, want) {
		t.Errorf("registration %+v:\nwant session %#x cleared of %v", reg, earlier.conn.SessionID(), want)
	}
	for _, p := range want[:len(want)-1] {
		if ok, _, err := admin.conn.Exists(p); err != nil || ok {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	_, stat, err := admin.conn.Get("/id/hosts/h1")
	if err != nil || stat.EphemeralOwner != restarted.conn.SessionID() {
		t.Errorf("/id/hosts/h1 not the restarted agent's: %v", err)
	}

	if _, stat, err := admin.conn.Get("/id/current/db/h2"); err != nil || stat.EphemeralOwner != earlier.conn.SessionID() {
		t.Errorf("h2's node of the same session was touched: %v", err)
	}
	if !earlier.Session().Up {
		t.Fatal("the earlier session ended: the test proves nothing")
	}
}

// Two agents without a machine id cannot be told apart: they are one
// machine, as before machine ids (the restart case). An agent with one
// takes nothing from an agent without, nor the reverse.
func TestIntegration_RegisterWithoutMachineIDs(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/id")
	seed(t, admin, parse(t, goodSeed))
	earlier := connect(t, zkc, "/id")
	if _, err := earlier.Register(claim("h1", "", false), Host{Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	withID := connect(t, zkc, "/id")
	_, err := withID.Register(claim("h1", machineB, false), Host{Agent: "b"})
	var taken *HostTakenError
	if !errors.As(err, &taken) || !taken.Live || taken.Holder != "" || !strings.Contains(err.Error(), "a machine without a machine id") {
		t.Fatalf("a machine with an id against a live agent without: %v", err)
	}
	again := connect(t, zkc, "/id")
	reg, err := again.Register(claim("h1", "", false), Host{Agent: "a2"})
	if err != nil || reg.StaleSession != earlier.conn.SessionID() {
		t.Fatalf("an agent without a machine id restarted: %+v %v", reg, err)
	}
	again.Close()
	// Its memberships name no machine: a machine with an id adopts them.
	reg, err = withID.Register(claim("h1", machineB, false), Host{Agent: "b"})
	if err != nil || !slices.Equal(reg.Adopted, []string{"api", "db"}) || reg.Replaced != "" {
		t.Fatalf("adopting memberships without a machine id: %+v %v", reg, err)
	}
	joined := memberOf(t, admin, "db", "h1")
	withID.Close()
	// And an agent without an id is refused a name that names a machine.
	none := connect(t, zkc, "/id")
	if _, err := none.Register(claim("h1", "", false), Host{Agent: "c"}); !errors.As(err, &taken) || taken.Holder != machineB || taken.Machine != "" {
		t.Fatalf("an agent without a machine id, the name a machine's: %v", err)
	}
	if m := memberOf(t, admin, "db", "h1"); m != joined {
		t.Errorf("membership %+v, was %+v", m, joined)
	}
}

// Nodes written by agents from before machine ids parse, and mean "no
// machine id"; a bad machine id is refused on write.
func TestMachineIDIsOptionalAndChecked(t *testing.T) {
	var h Host
	if err := decode("/dc/hosts/h1", []byte(`{"agent":"0.9","started":"2026-01-01T00:00:00Z","services":["db"]}`), &h); err != nil || h.MachineID != "" {
		t.Fatalf("an old agent's /hosts: %+v %v", h, err)
	}
	var m Member
	if err := decode("/dc/members/db/h1", []byte(`{"joined":"2026-01-01T00:00:00Z"}`), &m); err != nil || m.MachineID != "" {
		t.Fatalf("an old agent's membership: %+v %v", m, err)
	}
	if err := decode("/dc/members/db/h1", []byte(`{"joined":"2026-01-01T00:00:00Z","machine_id":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`), &m); err == nil {
		t.Error("an upper-case machine id was accepted")
	}
	if _, err := encode(Host{Agent: "1", MachineID: "web-01"}); err == nil || !strings.Contains(err.Error(), "machine_id") {
		t.Errorf("writing a bad machine id: %v", err)
	}
	b, err := encode(Host{Agent: "1"})
	if err != nil || strings.Contains(string(b), "machine_id") {
		t.Errorf("no machine id is written as none: %s %v", b, err)
	}
}

// A refusal is published for status until the machine registers.
func TestIntegration_RefusalsAreShownUntilWithdrawn(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/id")
	seed(t, admin, parse(t, goodSeed))
	a, b := connect(t, zkc, "/id"), connect(t, zkc, "/id")
	if _, err := a.Register(claim("h1", machineA, false), Host{Agent: "a"}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Register(claim("h1", machineB, false), Host{Agent: "b"})
	var taken *HostTakenError
	if !errors.As(err, &taken) {
		t.Fatal(err)
	}
	// Twice: the second rewrites the first.
	for range 2 {
		if err := b.ReportRefused(RefusalOf(taken, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	st, err := admin.Status()
	if err != nil {
		t.Fatal(err)
	}
	var h1 HostStatus
	for _, h := range st.Hosts {
		if h.Name == "h1" {
			h1 = h
		}
	}
	if h1.MachineID != machineA || len(h1.Refused) != 1 {
		t.Fatalf("h1's status %+v: want machine a up, machine b refused", h1)
	}
	if r := h1.Refused[0]; r.Machine != machineB || r.Holder != machineA || !r.HolderUp || r.Reason != taken.Error() {
		t.Errorf("refusal %+v", r)
	}
	js, _ := json.Marshal(h1)
	if !strings.Contains(string(js), `"refused":[{"host":"h1","machine_id":"`+machineB) {
		t.Errorf("status JSON %s", js)
	}
	// The summary, status's default, and status of the host alone show it.
	sum, err := admin.Summary()
	if err != nil || len(sum.Refused) != 1 || sum.Refused[0] != h1.Refused[0] {
		t.Errorf("summary refusals %+v %v, want %+v", sum.Refused, err, h1.Refused)
	}
	hs, err := admin.HostsStatus([]string{"h1"})
	if err != nil || len(hs) != 1 || len(hs[0].Refused) != 1 || hs[0].MachineID != machineA {
		t.Errorf("status of h1 alone: %+v %v", hs, err)
	}
	a.Close()
	if _, err := b.Register(claim("h1", machineB, true), Host{Agent: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := b.ClearRefused("h1", machineB); err != nil {
		t.Fatal(err)
	}
	if rs, err := admin.Refusals(); err != nil || len(rs) != 0 {
		t.Errorf("refusals after registering: %v %v", rs, err)
	}
	if sum, err := admin.Summary(); err != nil || len(sum.Refused) != 0 {
		t.Errorf("summary refusals after registering: %+v %v", sum, err)
	}
}

// Nothing of another session is taken by the turn or the queue: a turn or
// a ready node under the host's name held by another session (an agent of
// another machine, of a dcroll that does not register) is left alone.
func TestIntegration_TurnAndQueueLeaveAnotherSessionsNodes(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/id")
	seed(t, admin, parse(t, "[services.db]\nquorum = 0\nmax_parallel = 2\n"))
	if err := admin.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("e", 64)}, false); err != nil {
		t.Fatal(err)
	}
	if err := admin.AppendSteps([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	other, mine := connect(t, zkc, "/id"), connect(t, zkc, "/id")
	for _, s := range []*Store{other, mine} {
		if err := s.EnsureMember("db", "h1", Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	theirs, err := other.JoinReady("db", "h1", "v2")
	if err != nil {
		t.Fatal(err)
	}
	// The host is queued already, by the other session: refused, and
	// nothing of theirs is touched.
	if _, err := mine.JoinReady("db", "h1", "v2"); err == nil || !strings.Contains(err.Error(), "h1 is queued by another session") {
		t.Fatalf("joining under a name another session has queued: %v, want it refused", err)
	}
	for _, p := range []string{theirs, admin.Tree.queued("db", "h1")} {
		if _, stat, err := admin.conn.Get(p); err != nil || stat.EphemeralOwner != other.conn.SessionID() {
			t.Fatalf("JoinReady touched another session's %s: %v", p, err)
		}
	}
	if err := other.AwaitTurn(t.Context(), "db", "h1", theirs, Turn{From: "v1", To: "v2", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ready, err := mine.JoinReady("db", "h1", "v2")
	if err != nil {
		t.Fatal(err)
	}
	err = mine.AwaitTurn(t.Context(), "db", "h1", ready, Turn{From: "v1", To: "v2", Started: time.Now()})
	if !errors.Is(err, ErrHeldElsewhere) {
		t.Fatalf("taking a turn another session holds under the name: %v, want ErrHeldElsewhere", err)
	}
	if _, stat, err := admin.conn.Get("/id/roll/db/turns/h1"); err != nil || stat.EphemeralOwner != other.conn.SessionID() {
		t.Fatalf("the other session's turn was touched: %v", err)
	}
}
