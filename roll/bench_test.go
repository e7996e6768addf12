package roll

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/zktest"
)

// BenchmarkRollout rolls a release over a fleet whose hosts restart
// instantly, so that what is measured is the coordination alone: joining
// the ready queue, waiting for and taking the turn, leaving and re-entering
// /current, releasing the turn and advancing the deploy queue, all against
// a real ZooKeeper. One op is one whole rollout; it reports the wall time
// and the ZooKeeper requests per turn. The 8-host case is the baseline for
// the 32-host one: per turn, both should cost about the same.
func BenchmarkRollout(b *testing.B) {
	zkc := zktest.Standalone(b)
	for _, n := range []int{8, 32} {
		for _, par := range []int{1, 4} {
			b.Run(fmt.Sprintf("hosts=%d/max_parallel=%d", n, par), func(b *testing.B) {
				benchRollout(b, zkc, n, par)
			})
		}
	}
}

func benchRollout(b *testing.B, zkc *zktest.Cluster, n, par int) {
	root := fmt.Sprintf("/bench%d_%d", n, par)
	admin := connect(b, zkc, root)
	seed(b, admin, parse(b, fmt.Sprintf("[services.db]\nquorum = 1\nmax_parallel = %d\n", par)))
	hosts := make([]*simHost, n)
	for i := range hosts {
		h := &simHost{name: fmt.Sprintf("h%02d", i), store: connect(b, zkc, root)}
		if err := h.store.EnsureMember("db", h.name, Member{Joined: time.Now()}); err != nil {
			b.Fatal(err)
		}
		if err := h.store.SetCurrent("db", h.name, Current{Version: "v0", Since: time.Now()}); err != nil {
			b.Fatal(err)
		}
		hosts[i] = h
	}
	var requests int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		version := fmt.Sprintf("v%d", i+1)
		m := Manifest{Version: version, Size: 1, SHA256: strings.Repeat("c", 64)}
		if err := admin.Stage("db", m, true); err != nil {
			b.Fatal(err)
		}
		if err := admin.AppendSteps([][]string{{"db"}}); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		costs := make([]int64, n)
		errs := make([]error, n)
		for j, h := range hosts {
			wg.Add(1)
			go func() { defer wg.Done(); costs[j], errs[j] = h.turn(context.Background(), "db", version) }()
		}
		wg.Wait()
		for j, err := range errs {
			if err != nil {
				b.Fatalf("%s: %v", hosts[j].name, err)
			}
			requests += costs[j]
		}
		if steps, err := admin.Steps(); err != nil || len(steps) != 0 {
			b.Fatalf("rollout %d did not finish: %v %v", i, steps, err)
		}
	}
	b.StopTimer()
	turns := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/turns, "ms/turn")
	b.ReportMetric(float64(requests)/turns, "requests/turn")
}
