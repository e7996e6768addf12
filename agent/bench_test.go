package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/agent"
	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/state"
)

// BenchmarkBoot measures how long an agent takes from Run to its service's
// process started (ns/op) and to the service answering its health endpoint
// (healthy-ms), with a warm local cache. zookeeper-down points the agent at
// a port where nothing listens; zookeeper-up is the baseline with a live
// server. The goal: the same, well under a second, whether ZooKeeper answers
// or not.
func BenchmarkBoot(b *testing.B) {
	b.Run("zookeeper-down", func(b *testing.B) {
		benchBoot(b, fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(b)))
	})
	b.Run("zookeeper-up", func(b *testing.B) {
		zkc := zktest.Standalone(b)
		s := connect(b, zkc, "/dc")
		seed(b, s)
		benchBoot(b, zkc.ConnString())
	})
}

func benchBoot(b *testing.B, zkServers string) {
	h := newHost(b, "bench", zkServers, "/dc", "v1", "v2")
	cache := &state.File{Services: map[string]*state.Service{"web": {Fleet: map[string]int{"v1": 9, "v2": 1}}}}
	if err := state.Save(h.dir, cache); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(h.config)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(config.Sources{File: filepath.Base(h.config), FileData: data})
	if err != nil {
		b.Fatal(err)
	}
	var healthy time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		started := make(chan struct{}, 1)
		a := agent.New(agent.Options{
			Config:  cfg,
			Log:     hclog.NewNullLogger(),
			Version: "bench",
			Started: func(svc, version string) {
				if version != "v1" {
					b.Errorf("started %s, want the cached most popular v1", version)
				}
				started <- struct{}{}
			},
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		t0 := time.Now()
		go func() { done <- a.Run(ctx) }()
		<-started
		b.StopTimer()
		// Time to healthy includes the process's own start-up: poll the
		// service itself, as a client would.
		for {
			if _, err := h.serving(); err == nil {
				break
			}
			if time.Since(t0) > 30*time.Second {
				b.Fatal("service never answered")
			}
			time.Sleep(time.Millisecond)
		}
		healthy += time.Since(t0)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(healthy.Milliseconds())/float64(b.N), "healthy-ms")
}
