// Package rolltest holds helpers for tests that build and inspect a
// data center's tree in a real ZooKeeper (internal/zktest) behind dcroll's
// back. roll's own tests cannot use it: it imports roll.
package rolltest

import (
	"context"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/roll"
)

// Open connects a store of the test's own to root, closed when the test ends.
func Open(t testing.TB, zkc *zktest.Cluster, root string) *roll.Store {
	t.Helper()
	cfg := config.ZooKeeper{Servers: zkc.Servers(), Root: root, SessionTimeout: 10 * time.Second, ACL: "open"}
	store, err := roll.Open(context.Background(), cfg, hclog.NewNullLogger(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	mu.Lock()
	defer mu.Unlock()
	clusters[store] = zkc
	t.Cleanup(func() { mu.Lock(); delete(clusters, store); mu.Unlock() })
	return store
}

var (
	mu       sync.Mutex
	clusters = map[*roll.Store]*zktest.Cluster{} // the cluster of each store Open made
	raws     = map[*roll.Store]*zk.Conn{}        // RawOf's connections
)

// RawOf is a raw ZooKeeper client next to a store that Open made, to the
// same cluster, made on first use: to inspect or forge what roll offers no
// call for, as an outside writer would.
func RawOf(t testing.TB, s *roll.Store) *zk.Conn {
	t.Helper()
	mu.Lock()
	conn, ok := raws[s]
	zkc := clusters[s]
	mu.Unlock()
	if ok {
		return conn
	}
	if zkc == nil {
		t.Fatal("rolltest.RawOf: the store was not made by rolltest.Open")
	}
	conn = ZK(t, zkc)
	mu.Lock()
	raws[s] = conn
	mu.Unlock()
	// The connection ends with t, which may be a subtest of the store's.
	t.Cleanup(func() {
		mu.Lock()
		delete(raws, s)
		mu.Unlock()
	})
	return conn
}

// Seed seeds the store's root with a catalog given as seed-file TOML.
func Seed(t testing.TB, s *roll.Store, catalog string) {
	t.Helper()
	c, err := roll.ParseCatalog("seed.toml", strings.NewReader(catalog))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.PlanSeed(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplySeed(p); err != nil {
		t.Fatal(err)
	}
}

// ZK connects a raw ZooKeeper client of the test's own, with a session,
// closed when the test ends: to inspect or forge nodes where roll offers no
// call, as an outside writer would.
func ZK(t testing.TB, zkc *zktest.Cluster) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(zkc.Servers(), 10*time.Second, zk.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	testutil.Eventually(t, 20*time.Second, func() error {
		if st := conn.State(); st != zk.StateHasSession {
			return fmt.Errorf("ZooKeeper session in state %v", st)
		}
		return nil
	})
	return conn
}
