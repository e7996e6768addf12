package roll

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/zktest"
)

// A host whose agent knows only an observer takes its turn: the observer
// answers its reads and watches and forwards its writes (the ready queue,
// the turn, /current) to the leader, where the operator's store, connected
// to the voters, sees them.
func TestIntegration_TurnThroughAnObserver(t *testing.T) {
	zkc := zktest.EnsembleObservers(t, 3, 1, "")
	const root = "/observed"
	var voters []string
	for _, i := range zkc.Voters() {
		voters = append(voters, zkc.Servers()[i])
	}
	admin := openOn(t, voters, root)
	seed(t, admin, parse(t, "[services.db]\nquorum = 0\n"))

	store := openOn(t, zkc.Observers(), root)
	if got := store.Session().Server; got != zkc.Observers()[0] {
		t.Fatalf("the host's session is on %q, want the observer %s", got, zkc.Observers()[0])
	}
	if got := zkc.Mode(3); got != zktest.ModeObserver {
		t.Fatalf("server 3 reports mode %q, want %q", got, zktest.ModeObserver)
	}

	h := &simHost{name: "observed", store: store}
	if err := h.store.EnsureMember("db", h.name, Member{Joined: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SetCurrent("db", h.name, Current{Version: "v1", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Stage("db", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("b", 64)}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Order([][]string{{"db"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.turn(ctx, "db", "v2"); err != nil {
		t.Fatalf("the turn through the observer: %v", err)
	}

	if _, err := admin.conn.Sync(admin.Tree.CurrentDir("db")); err != nil {
		t.Fatal(err)
	}
	cur, err := admin.CurrentOf("db")
	if err != nil {
		t.Fatal(err)
	}
	if cur[h.name].Version != "v2" {
		t.Errorf("the voters see %s on %+v after its turn, want v2", h.name, cur[h.name])
	}
	if steps, err := admin.Steps(); err != nil || len(steps) != 0 {
		t.Errorf("deploy queue %v (%v) after the only host upgraded, want it empty", steps, err)
	}
	if got := store.Session().Server; got != zkc.Observers()[0] {
		t.Errorf("the host's session moved to %q during its turn, want the observer %s", got, zkc.Observers()[0])
	}
}

// openOn connects a store to servers alone.
func openOn(t *testing.T, servers []string, root string) *Store {
	t.Helper()
	cfg := config.ZooKeeper{Servers: servers, Root: root, SessionTimeout: 4 * time.Second, ACL: "open"}
	store, err := Open(context.Background(), cfg, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	return store
}
