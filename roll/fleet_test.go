package roll

import "testing"

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
