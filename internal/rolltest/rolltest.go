// Package rolltest holds helpers for tests that build and inspect a
// data center's tree in a real ZooKeeper (internal/zktest) behind dcroll's
// back. roll's own tests cannot use it: it imports roll.
package rolltest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
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
	return store
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
