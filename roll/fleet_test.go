package roll

import (
	"fmt"
	"testing"
	"time"
)

func TestFleetViewDecisive(t *testing.T) {
	for _, tc := range []struct {
		versions map[string]int
		off      int
		want     bool
	}{
		{nil, 0, true},                      // an empty fleet, counted right
		{nil, 2, false},                     // two hosts the view has not counted yet
		{map[string]int{"v1": 2}, 2, false}, // they could all run v2
		{map[string]int{"v1": 5}, 2, true},  // they could not outnumber v1
		{map[string]int{"v1": 5, "v2": 3}, 2, false},
		{map[string]int{"v1": 5, "v2": 2}, 2, true},
		{map[string]int{"v1": 3, "v2": 3}, 0, true}, // a tie, counted right: byPopularity decides
	} {
		v := FleetView{Versions: tc.versions}
		if got := v.decisive(tc.off); got != tc.want {
			t.Errorf("%v off by %d: decisive %v, want %v", tc.versions, tc.off, got, tc.want)
		}
	}
}

func TestFleetViewValidates(t *testing.T) {
	for _, v := range []FleetView{
		{Versions: map[string]int{"v1": 2}, Online: 3},
		{Versions: map[string]int{"v1": -1}, Online: -1},
		{Versions: map[string]int{"../x": 1}, Online: 1},
	} {
		if _, err := encode(v); err == nil {
			t.Errorf("%+v encoded", v)
		}
	}
	var v FleetView
	if err := decode("/dc/fleet/web", []byte(`{"versions":{"v1":2},"online":2}`), &v); err != nil || v.Versions["v1"] != 2 {
		t.Errorf("decode: %+v, %v", v, err)
	}
}

// A mass outage must not make the fleet view too big to write: gone keeps
// the members gone longest, within its budget, and the view still encodes.
func TestGoneFitsTheFleetView(t *testing.T) {
	now := time.Now().UTC()
	var members []string
	before := map[string]time.Time{}
	for i := range 10000 {
		h := fmt.Sprintf("a-rather-long-host-name-of-a-big-data-center-%05d", i)
		members = append(members, h)
		before[h] = now.Add(-time.Duration(i) * time.Second)
	}
	g := gone(members, map[string]bool{}, before, now)
	if len(g) == 0 || len(g) == len(members) {
		t.Fatalf("gone kept %d of %d", len(g), len(members))
	}
	oldest := members[len(members)-1]
	if _, ok := g[oldest]; !ok {
		t.Errorf("the member gone longest, %s, was left out", oldest)
	}
	if _, ok := g[members[0]]; ok {
		t.Errorf("the member gone last, %s, was kept over older ones", members[0])
	}
	if _, err := encode(FleetView{Versions: map[string]int{"v1": 0}, Gone: g}); err != nil {
		t.Errorf("the view with %d gone does not encode: %v", len(g), err)
	}
	if g := gone([]string{"h1", "h2"}, map[string]bool{"h1": true}, nil, now); len(g) != 1 || !g["h2"].Equal(now) {
		t.Errorf("gone of h2 alone: %v", g)
	}
}
