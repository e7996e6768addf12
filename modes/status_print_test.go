package modes

import (
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/roll"
)

// A host stuck on a staged release shows why, on its own line.
func TestStatusShowsWhyAHostIsStuck(t *testing.T) {
	st := &roll.FleetStatus{Root: "/dc", Time: time.Now(), Hosts: []roll.HostStatus{
		{Name: "h1", AgentUp: true, Agent: "1.0", Services: []roll.HostService{{Name: "web", Online: true, Version: "v1"}},
			Stuck: map[string]string{"web": "v2: unpack web v2: unexpected EOF"}},
		{Name: "h2", AgentUp: true, Agent: "1.0", Services: []roll.HostService{{Name: "web", Online: true, Version: "v1"}}},
	}}
	var b strings.Builder
	printStatus(&b, st)
	lines := strings.Split(b.String(), "\n")
	var h1, h2 string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "h1 "):
			h1 = l
		case strings.HasPrefix(l, "h2 "):
			h2 = l
		}
	}
	if !strings.Contains(h1, "(stuck: v2: unpack web v2: unexpected EOF)") {
		t.Fatalf("h1's line does not say why it is stuck: %q\n%s", h1, b.String())
	}
	if strings.Contains(h2, "stuck") {
		t.Fatalf("h2 is not stuck: %q", h2)
	}
}
