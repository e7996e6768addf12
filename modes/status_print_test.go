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

// A host name refused to another machine shows on a line of its own, with
// both machines and, when the holder is down, how to replace it.
func TestStatusShowsMachinesRefusedAHostName(t *testing.T) {
	since := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st := &roll.FleetStatus{Root: "/dc", Time: time.Now(), Hosts: []roll.HostStatus{
		{Name: "h1", AgentUp: true, Agent: "1.0", MachineID: "aaaa", Services: []roll.HostService{{Name: "web", Online: true, Version: "v1"}},
			Refused: []roll.Refusal{{Host: "h1", Machine: "bbbb", Holder: "aaaa", HolderUp: true, Since: since}}},
		{Name: "h2", Services: []roll.HostService{{Name: "web"}},
			Refused: []roll.Refusal{{Host: "h2", Holder: "cccc", Since: since}}},
	}}
	var b strings.Builder
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"h1 refused to machine bbbb since 2026-12-01T09:00:00Z: the name is machine aaaa's (its agent is up)\n",
		"h2 refused to a machine without a machine id since 2026-12-01T09:00:00Z: the name is machine cccc's (its agent is down); " +
			"if that machine is retired, start the agent with --replace on the new one, or run `dcroll forget h2`\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "--replace") != 1 {
		t.Errorf("the hint to replace shows for a holder that is up:\n%s", out)
	}
}

// The summary, status's default, shows the refusals too.
func TestSummaryShowsMachinesRefusedAHostName(t *testing.T) {
	since := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st := &roll.FleetSummary{Root: "/dc", Time: time.Now(),
		Refused: []roll.Refusal{{Host: "h1", Machine: "bbbb", Holder: "aaaa", HolderUp: true, Since: since}}}
	var b strings.Builder
	printSummary(&b, st)
	want := "h1 refused to machine bbbb since 2026-12-01T09:00:00Z: the name is machine aaaa's (its agent is up)\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("the summary does not say %q:\n%s", want, b.String())
	}
}
