package roll

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/zktest"
)

// The review's bad znodes: one /current/web child of deeply nested JSON
// kept every agent from reading the fleet and made status exit 1; a member
// named "bad host" counted toward the quorum; a host name with a
// right-to-left override printed raw. Each is now skipped and reported,
// and the fleet is read without it.
func TestIntegration_BadChildrenAreSkipped(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/bad")
	seed(t, s, parse(t, "[services.web]\nquorum = \"100%\"\n"))
	now := time.Now().UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		must(s.EnsureMember("web", h, Member{Joined: now}))
	}
	for _, h := range []string{"h1", "h2"} {
		must(s.SetCurrent("web", h, Current{Version: "v1", Since: now}))
		must(s.RegisterHost(h, Host{Agent: "1.0", Started: now, Services: []string{"web"}}))
	}
	nested := strings.Repeat("[", 60000)
	rlo := "evil\u202eh"
	raw := func(path string, v any) {
		t.Helper()
		data, ok := v.([]byte)
		if !ok {
			var err error
			data, err = json.Marshal(v)
			must(err)
		}
		_, err := s.conn.Create(path, data, 0, zk.WorldACL(zk.PermAll))
		must(err)
	}
	raw(s.Tree.Current("web", "h3"), []byte(nested))
	raw(s.Tree.Current("web", "bad host"), Current{Version: "v1", Since: now})
	raw(s.Tree.Member("web", "bad host"), Member{Joined: now})
	raw(s.Tree.Member("web", rlo), Member{Joined: now})
	raw(s.Tree.Host(rlo), Host{Agent: "1.0", Started: now, Services: []string{"web"}})
	raw(s.Tree.Host("h4"), []byte(nested))

	cur, err := s.CurrentOf("web")
	if err != nil {
		t.Fatalf("CurrentOf with a bad child: %v", err)
	}
	if got := slices.Sorted(maps.Keys(cur)); !slices.Equal(got, []string{"h1", "h2"}) {
		t.Errorf("current = %q, want h1 h2", got)
	}
	members, err := s.Members("web")
	must(err)
	if !slices.Equal(members, []string{"h1", "h2", "h3"}) {
		t.Errorf("members = %q, want h1 h2 h3: bad names count toward no quorum", members)
	}
	online, err := s.OnlineHosts("web")
	must(err)
	if !slices.Equal(online, []string{"h1", "h2", "h3"}) {
		t.Errorf("online hosts = %q, want h1 h2 h3 (h3's data is bad, its name is fine)", online)
	}
	hosts, err := s.Hosts()
	if err != nil {
		t.Fatalf("Hosts with a bad child: %v", err)
	}
	if got := slices.Sorted(maps.Keys(hosts)); !slices.Equal(got, []string{"h1", "h2"}) {
		t.Errorf("hosts = %q, want h1 h2", got)
	}

	// The advancer writes the fleet view from the same reads.
	_, err = newSummarizer().look(s)
	must(err)
	view, err := s.FleetView("web")
	must(err)
	if view.Online != 2 || view.Versions["v1"] != 2 {
		t.Errorf("fleet view %+v: want 2 online on v1", view)
	}

	// Status and its summary: the quorum is 100% of the three members.
	st, err := s.Status()
	if err != nil {
		t.Fatalf("status with bad children: %v", err)
	}
	ss := st.Services[0]
	if len(ss.Members) != 3 || ss.QuorumHosts != 3 || len(ss.Online) != 2 {
		t.Errorf("status: members %q, quorum %d, online %q; want 3 members, quorum 3, 2 online", ss.Members, ss.QuorumHosts, ss.Online)
	}
	for _, h := range st.Hosts {
		if !config.ValidName(h.Name) {
			t.Errorf("status lists host %q", h.Name)
		}
	}
	sum, err := s.Summary()
	if err != nil {
		t.Fatalf("summary with bad children: %v", err)
	}
	if sv := sum.Services[0]; sv.Members != 3 || sv.QuorumHosts != 3 || sv.Online != 2 {
		t.Errorf("summary: %d members, quorum %d, %d online; want 3, 3, 2", sv.Members, sv.QuorumHosts, sv.Online)
	}

	// Every bad node is reported, its path quoted so that nothing prints
	// raw.
	var paths []string
	for _, sk := range st.Skipped {
		paths = append(paths, sk.Path)
	}
	for _, want := range []string{`"/bad/current/web/h3"`, `"/bad/current/web/bad host"`, `"/bad/members/web/bad host"`,
		`"/bad/members/web/evil\u202eh"`, `"/bad/hosts/evil\u202eh"`, `"/bad/hosts/h4"`} {
		if !slices.Contains(paths, want) {
			t.Errorf("skipped %q: %s missing", paths, want)
		}
	}
	b, _ := json.Marshal(st)
	if strings.ContainsRune(string(b), '\u202e') {
		t.Error("the status holds a raw right-to-left override")
	}
	if st.Skipped[0].Why == "" {
		t.Error("a skipped node without a reason")
	}

	// Fixed, it is no longer reported.
	must(s.conn.Delete(s.Tree.Current("web", "h3"), -1))
	must(s.SetCurrent("web", "h3", Current{Version: "v1", Since: now}))
	if _, err := s.CurrentOf("web"); err != nil {
		t.Fatal(err)
	}
	for _, sk := range s.Skipped() {
		if sk.Path == `"/bad/current/web/h3"` {
			t.Errorf("still skipped after the fix: %+v", sk)
		}
	}
}

// A bad child of a service's turns, of /refused or of the deploy queue is
// skipped and reported too: status and the agents' decisions read on. A
// turn with bad data still counts as a turn, and a step with bad data is a
// barrier the steps behind it wait at (its services are unknown), never
// removed by the agents.
func TestIntegration_BadTurnsRefusalsAndStepsAreSkipped(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/bad")
	seed(t, s, parse(t, "[services.web]\nquorum = 0\n"))
	nested := []byte(strings.Repeat("[", 60000))
	raw := func(path string, data []byte) {
		t.Helper()
		if _, err := s.conn.Create(path, data, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	raw(s.Tree.Turn("web", "h1"), nested)
	raw(s.Tree.Turn("web", "bad host"), []byte(`{"from":"v1","to":"v2"}`))
	raw(s.Tree.refusedNode("h2", "none"), nested)
	raw(s.Tree.step("step-0000000000"), nested)
	if err := s.AppendSteps([][]string{{"web"}}); err != nil {
		t.Fatal(err)
	}

	turns, err := s.Turns("web")
	if err != nil || len(turns) != 0 {
		t.Fatalf("Turns with bad children: %v %v, want none and no error", turns, err)
	}
	steps, err := s.Steps()
	if err != nil || len(steps) != 2 || !steps[0].bad || !slices.Equal(steps[1].Services, []string{"web"}) {
		t.Fatalf("Steps with a bad step: %+v %v, want the bad one, then web", steps, err)
	}
	if n, err := s.AdvanceSteps(); err != nil || n != 0 {
		t.Fatalf("AdvanceSteps at a bad head step: removed %d, %v; want it left for the operator", n, err)
	}
	st, _, err := s.TurnStateOf("web", "h3")
	if err != nil {
		t.Fatalf("the turn decision's read with bad children: %v", err)
	}
	if st.HeadStep || len(st.InTurn) != 2 {
		t.Errorf("turn state: head step %v, in turn %q; want web behind the bad step, both turns counted", st.HeadStep, st.InTurn)
	}

	status, err := s.Status()
	if err != nil {
		t.Fatalf("status with bad children: %v", err)
	}
	if _, err := s.Summary(); err != nil {
		t.Fatalf("summary with bad children: %v", err)
	}
	var paths []string
	for _, sk := range s.Skipped() {
		paths = append(paths, sk.Path)
	}
	for _, want := range []string{`"/bad/roll/web/turns/h1"`, `"/bad/roll/web/turns/bad host"`, `"/bad/refused/h2@none"`, `"/bad/deploy/step-0000000000"`} {
		if !slices.Contains(paths, want) {
			t.Errorf("skipped %q: %s missing", paths, want)
		}
	}
	if len(status.Deploy.Steps) != 2 {
		t.Errorf("status shows steps %+v, want both", status.Deploy.Steps)
	}
}
