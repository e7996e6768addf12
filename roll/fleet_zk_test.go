package roll

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// A host that leaves /current and comes back on another version between two
// looks of the advancer (a switch shorter than its settle) is in both of
// its lists. The fleet view must still show the new version at the next
// look, not at the next recount minutes later; and finding it must cost a
// read of the hosts that held a turn, not of the fleet.
func TestIntegration_FleetViewSeesHostsThatLeftAndCameBackBetweenLooks(t *testing.T) {
	var hosts []string
	for i := range 20 {
		hosts = append(hosts, fmt.Sprintf("h%02d", i))
	}
	s := rollingFleet(t, hosts...)
	z := newSummarizer()
	look := func() (FleetView, int64) {
		t.Helper()
		before := s.Ops()
		if _, err := z.look(s); err != nil {
			t.Fatal(err)
		}
		ops := s.Ops() - before
		v, err := s.FleetView("db")
		if err != nil {
			t.Fatal(err)
		}
		return v, ops
	}
	if v, _ := look(); !maps.Equal(v.Versions, map[string]int{"v1": 20}) {
		t.Fatalf("first look: %v, want 20 on v1", v.Versions)
	}
	switchTo := func(h, version string) {
		t.Helper()
		if err := s.ClearCurrent("db", h); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrent("db", h, Current{Version: version, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}

	// h03 takes a turn, seen by a look; it switches and releases the turn
	// before the next.
	turn := s.Tree.Turn("db", "h03")
	if _, err := s.conn.Create(turn, nil, zk.FlagEphemeral, s.acls.of(turn)); err != nil {
		t.Fatal(err)
	}
	look()
	switchTo("h03", "v2")
	if err := s.conn.Delete(turn, -1); err != nil {
		t.Fatal(err)
	}
	v, ops := look()
	if !maps.Equal(v.Versions, map[string]int{"v1": 19, "v2": 1}) {
		t.Fatalf("after h03's turn: %v, want 19 on v1 and 1 on v2", v.Versions)
	}
	// services, /current, the turns, h03's node, the members, the view.
	if ops > 8 {
		t.Errorf("the look cost %d requests; it should read h03 alone, not the 20 hosts", ops)
	}

	// h07 does it with no turn seen at all (taken and released between
	// looks): the changes are not accounted for, and every node is read.
	switchTo("h07", "v2")
	if v, _ := look(); !maps.Equal(v.Versions, map[string]int{"v1": 18, "v2": 2}) {
		t.Fatalf("after h07 came back unseen: %v, want 18 on v1 and 2 on v2", v.Versions)
	}
}
