package roll

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
)

// A retired host leaves every quorum's denominator when forgotten, and
// cannot be forgotten while its agent is up.
func TestIntegration_ForgetRemovesMembershipsOnlyOfAHostThatIsDown(t *testing.T) {
	zkc := zktest.Standalone(t)
	admin := connect(t, zkc, "/forget")
	seed(t, admin, parse(t, "[services.db]\nquorum = 1\n[services.api]\nquorum = 1\n[services.web]\nquorum = 1\n"))
	agent := connect(t, zkc, "/forget")
	for _, svc := range []string{"api", "db"} {
		for _, h := range []string{"h1", "h2"} {
			if err := admin.EnsureMember(svc, h, Member{Joined: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := agent.RegisterHost("h2", Host{Agent: "test"}); err != nil {
		t.Fatal(err)
	}
	before := dump(t, admin, "/forget")
	if _, err := admin.Forget("h2"); !errors.Is(err, ErrHostUp) || !strings.Contains(err.Error(), "/forget/hosts/h2 exists") {
		t.Errorf("forget a host whose agent is up: %v; want refused, naming its node", err)
	}
	if after := dump(t, admin, "/forget"); len(after) != len(before) {
		t.Errorf("a refused forget changed the tree")
	}
	forgot, err := admin.Forget("h1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(forgot, []string{"api", "db"}) {
		t.Errorf("forgot h1 in %q, want api and db", forgot)
	}
	for _, svc := range []string{"api", "db"} {
		if m, err := admin.Members(svc); err != nil || !slices.Equal(m, []string{"h2"}) {
			t.Errorf("%s members %q (%v) after forgetting h1, want h2 only", svc, m, err)
		}
	}
	if _, err := admin.Hosts(); err != nil {
		t.Fatal(err)
	}
	if forgot, err := admin.Forget("h1"); err != nil || len(forgot) != 0 {
		t.Errorf("forgetting h1 again: %q, %v; want nothing to do", forgot, err)
	}
	if _, err := admin.Forget("../x"); err == nil {
		t.Errorf("a bad host name was accepted")
	}
}
