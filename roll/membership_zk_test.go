package roll

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

// A member out of /current for longer than member_ttl stops counting
// towards a percentage quorum: the advancer records when it went, in the
// fleet view; status and the turn's decision read it from there. The times
// outlive a change of advancer, and a member that comes back counts again.
func TestIntegration_MembersGoneLongerThanTTLAreNotCounted(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/ttl")
	seed(t, s, parse(t, "[services.db]\nquorum = \"80%\"\nmember_ttl = \"1s\"\n"))
	hosts := []string{"h1", "h2", "h3", "h4", "h5"}
	for _, h := range hosts {
		if err := s.EnsureMember("db", h, Member{Joined: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hosts[:3] {
		if err := s.SetCurrent("db", h, Current{Version: "v1", Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	quorum := func() (int, []string) {
		t.Helper()
		fs, err := s.Status()
		if err != nil {
			t.Fatal(err)
		}
		return fs.Services[0].QuorumHosts, fs.Services[0].Expired
	}
	// No advancer has seen h4 and h5 go: they count.
	if q, exp := quorum(); q != 4 || len(exp) != 0 {
		t.Fatalf("before any advancer: quorum %d hosts, expired %v; want 4 of 5, none", q, exp)
	}
	z := newSummarizer()
	if _, err := z.look(s); err != nil {
		t.Fatal(err)
	}
	first := z.written["db"].Gone
	if !slices.Equal(slices.Sorted(maps.Keys(first)), []string{"h4", "h5"}) {
		t.Fatalf("gone after the advancer's look: %v, want h4 and h5", first)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if q, exp := quorum(); q != 3 || !slices.Equal(exp, []string{"h4", "h5"}) {
			return fmt.Errorf("quorum %d hosts, expired %v; want 3 of 3, h4 and h5", q, exp)
		}
		return nil
	})
	// The turn's decision leaves them out too: 80% of the 3 others.
	if err := s.Stage("db", release("v2", "a"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendSteps([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	_, v, err := s.TurnStateOf("db", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "waiting for quorum: 3 online of 3 members, quorum 3 (2 more offline for longer than member_ttl, not counted)"; !strings.HasPrefix(v.Wait, want) {
		t.Errorf("h1 at the front: %q, want %q", v.Wait, want)
	}

	// Another advancer takes the times over instead of starting them anew.
	if _, err := newSummarizer().look(s); err != nil {
		t.Fatal(err)
	}
	view, err := s.FleetView("db")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(view.Gone, first, time.Time.Equal) {
		t.Errorf("a new advancer wrote gone %v, want the times it found, %v", view.Gone, first)
	}

	// h4 comes back: it counts again, at once.
	if err := s.SetCurrent("db", "h4", Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if q, exp := quorum(); q != 4 || !slices.Equal(exp, []string{"h5"}) {
		t.Errorf("h4 back: quorum %d hosts, expired %v; want 4 of 4, h5", q, exp)
	}
}

// member_ttl defaults to a day, and 0 keeps members until they are
// forgotten.
func TestIntegration_MemberTTLDefaultAndOff(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/ttldefault")
	seed(t, s, parse(t, "[services.db]\nquorum = 1\n[services.api]\nquorum = 1\nmember_ttl = \"0s\"\n"))
	services, err := s.Services()
	if err != nil {
		t.Fatal(err)
	}
	if got := services["db"].TTL(); got != 24*time.Hour {
		t.Errorf("db's member_ttl %s, want the default 24h", got)
	}
	if got := services["api"].TTL(); got != 0 {
		t.Errorf("api's member_ttl %s, want 0 (never)", got)
	}
	for _, bad := range []string{"member_ttl = \"-1h\"\n", "member_ttl = \"a day\"\n"} {
		if _, err := ParseCatalog("seed.toml", strings.NewReader("[services.db]\nquorum = 1\n"+bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
