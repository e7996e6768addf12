package roll

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
)

const summaryCatalog = `
[services.web]
quorum = "50%"
max_parallel = 2
[services.web.health]
deadline = "1m"
`

// The hosts buildFleet adds that need attention, and why.
var attentionWant = []string{
	"w-slow long_turn",
	"w-stuck stuck",
	"w-gone1 offline",
	"w-gone2 offline",
	"w-odd odd_version",
}

// buildFleet writes a data center of web into s's tree as n agents would
// (every host a member, registered, online on v1 and queued for the staged
// v2, which is ordered) plus one host of each kind that needs attention: w-gone1 and w-gone2
// are members but offline, w-odd runs v0, w-stuck says it cannot get v2,
// and w-slow has been in its turn for an hour. Then it writes the fleet
// view, as the advancer would.
func buildFleet(t testing.TB, s *Store, n int) {
	t.Helper()
	seed(t, s, parse(t, summaryCatalog))
	now := time.Now().UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	online := map[string]string{"w-odd": "v0", "w-stuck": "v1", "w-slow": "v1"}
	for i := range n {
		online[fmt.Sprintf("w%04d", i)] = "v1"
	}
	for _, h := range []string{"w-gone1", "w-gone2"} {
		must(s.EnsureMember("web", h, Member{Joined: now}))
	}
	for _, h := range slices.Sorted(func(yield func(string) bool) {
		for h := range online {
			if !yield(h) {
				return
			}
		}
	}) {
		must(s.EnsureMember("web", h, Member{Joined: now}))
		host := Host{Agent: "1.0", Started: now, Services: []string{"web"}}
		if h == "w-stuck" {
			host.Stuck = map[string]string{"web": "v2: unpack web v2: unexpected EOF"}
		}
		must(s.RegisterHost(h, host))
		must(s.SetCurrent("web", h, Current{Version: online[h], Since: now}))
	}
	must(s.Stage("web", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("a", 64), URLs: []string{"http://origin.example/web"}, Staged: now}, false))
	for h, v := range online {
		if v == "v1" && h != "w-stuck" && h != "w-slow" {
			_, err := s.JoinReady("web", h, "v2")
			must(err)
		}
	}
	data, err := encode(Turn{From: "v1", To: "v2", Started: now.Add(-time.Hour)})
	must(err)
	_, err = s.conn.Create(s.Tree.Turn("web", "w-slow"), data, zk.FlagEphemeral, s.acls.of(s.Tree.Turn("web", "w-slow")))
	must(err)
	must(s.AppendSteps([][]string{{"web"}}))
	_, err = newSummarizer().look(s)
	must(err)
}

// attentionOf renders a summary's hosts that need attention as "host kind".
func attentionOf(ss ServiceSummary) []string {
	var out []string
	for _, a := range ss.Attention {
		out = append(out, a.Host+" "+a.Kind)
	}
	return out
}

// A summary costs the same number of requests at 20 hosts as at 200: it
// reads counts, the fleet view and the hosts it names, never every host.
// The full status, which reads every host, grows, so the count would show
// a summary that did.
func TestIntegration_SummaryCostDoesNotGrowWithTheFleet(t *testing.T) {
	zkc := zktest.Standalone(t)
	summaryOps, fullOps := map[int]int64{}, map[int]int64{}
	for _, n := range []int{20, 200} {
		root := fmt.Sprintf("/summary%d", n)
		buildFleet(t, connect(t, zkc, root), n)
		probe := connect(t, zkc, root)
		before := probe.Ops()
		sum, err := probe.Summary()
		if err != nil {
			t.Fatal(err)
		}
		summaryOps[n] = probe.Ops() - before
		before = probe.Ops()
		if _, err := probe.Status(); err != nil {
			t.Fatal(err)
		}
		fullOps[n] = probe.Ops() - before

		ss := sum.Services[0]
		if got := attentionOf(ss); !slices.Equal(got, attentionWant) {
			t.Errorf("%d hosts: attention %q, want %q", n, got, attentionWant)
		}
		members := n + 5
		if ss.Counted || ss.Members != members || ss.Online != n+3 || ss.Offline != 2 || ss.Versions["v1"] != n+2 || ss.Versions["v0"] != 1 ||
			ss.Common != "v1" || ss.Staged != "v2" || ss.Ready != n || ss.Lacking != 2 || !slices.Equal(ss.Upgrading, []string{"w-slow"}) {
			t.Errorf("%d hosts: summary %+v", n, ss)
		}
		// 50% of n+5 members; two more online than that stay after the
		// front leaves, w-slow's turn aside.
		if ss.QuorumHosts != (members+1)/2 || !ss.RollReady {
			t.Errorf("%d hosts: quorum %d, roll ready %v (%s); want %d, ready", n, ss.QuorumHosts, ss.RollReady, ss.RollWait, (members+1)/2)
		}
		for _, a := range ss.Attention {
			if up := a.Kind != AttentionOffline; a.AgentUp != up {
				t.Errorf("%d hosts: %s's agent up %v, want %v", n, a.Host, a.AgentUp, up)
			}
		}
		if want := time.Minute*2 + time.Minute; LongTurn(ss.Policy) != want {
			t.Errorf("long turn %s, want %s", LongTurn(ss.Policy), want)
		}
	}
	t.Logf("requests: summary %v, full status %v", summaryOps, fullOps)
	if summaryOps[200] != summaryOps[20] {
		t.Errorf("a summary of 200 hosts made %d requests, of 20 hosts %d: it grows with the fleet", summaryOps[200], summaryOps[20])
	}
	if fullOps[200] < fullOps[20]+180 {
		t.Errorf("the full status made %d requests at 200 hosts, %d at 20: the count does not see per-host reads", fullOps[200], fullOps[20])
	}
}

// A summary names at most SummaryLimit hosts of a kind and counts the
// others, reading only the agents it names.
func TestIntegration_SummaryNamesAtMostTheLimit(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/limit")
	seed(t, s, parse(t, summaryCatalog))
	now := time.Now().UTC()
	for i := range SummaryLimit + 5 {
		if err := s.EnsureMember("web", fmt.Sprintf("gone%02d", i), Member{Joined: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EnsureMember("web", "up", Member{Joined: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCurrent("web", "up", Current{Version: "v1", Since: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := newSummarizer().look(s); err != nil {
		t.Fatal(err)
	}
	sum, err := s.Summary()
	if err != nil {
		t.Fatal(err)
	}
	ss := sum.Services[0]
	if len(ss.Attention) != SummaryLimit || ss.Unlisted[AttentionOffline] != 5 || ss.Offline != SummaryLimit+5 {
		t.Errorf("%d listed, %v unlisted, %d offline; want %d, 5 offline, %d", len(ss.Attention), ss.Unlisted, ss.Offline, SummaryLimit, SummaryLimit+5)
	}
	if ss.Attention[0].Host != "gone00" || ss.Attention[0].Since.IsZero() {
		t.Errorf("first listed %+v, want gone00 with the time it went", ss.Attention[0])
	}
}

// Without a fleet view (agents that predate it) the summary counts
// /current itself, and says so.
func TestIntegration_SummaryWithoutAFleetViewCounts(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/noview")
	seed(t, s, parse(t, summaryCatalog))
	now := time.Now().UTC()
	for _, h := range []string{"h1", "h2", "h3"} {
		if err := s.EnsureMember("web", h, Member{Joined: now}); err != nil {
			t.Fatal(err)
		}
	}
	for h, v := range map[string]string{"h1": "v1", "h2": "v0"} {
		if err := s.SetCurrent("web", h, Current{Version: v, Since: now}); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := s.Summary()
	if err != nil {
		t.Fatal(err)
	}
	ss := sum.Services[0]
	// v1 and v0 tie at one host each: the newer, v1, is the common one.
	if !ss.Counted || ss.Online != 2 || ss.Offline != 1 || ss.Common != "v1" ||
		!slices.Equal(attentionOf(ss), []string{"h3 offline", "h2 odd_version"}) {
		t.Errorf("summary without a view: %+v", ss)
	}
}

// A watched summary makes no request while nothing changes, wakes on a
// change, and holds one watch per node however often it is read.
func TestIntegration_SummaryWatchIsQuietUntilAChange(t *testing.T) {
	zkc := zktest.Standalone(t)
	buildFleet(t, connect(t, zkc, "/watch"), 20)
	s := connect(t, zkc, "/watch")
	w := s.WatchSummary()
	if _, err := w.Read(); err != nil {
		t.Fatal(err)
	}
	held := len(w.r.held)
	if _, err := w.Read(); err != nil {
		t.Fatal(err)
	}
	if len(w.r.held) != held {
		t.Errorf("a second read holds %d watches, the first %d", len(w.r.held), held)
	}
	before := s.Ops()
	idle, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w.Wait(idle, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on an idle fleet: %v, want the deadline", err)
	}
	if n := s.Ops() - before; n != 0 {
		t.Errorf("an idle second of waiting made %d requests", n)
	}

	other := connect(t, zkc, "/watch")
	if err := other.UpdateControl("web", func(c *Control) { c.Paused = true }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := w.Wait(ctx, time.Time{}); err != nil {
		t.Fatalf("wait after a pause: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		sum, err := w.Read()
		if err != nil {
			return err
		}
		if !sum.Services[0].Paused {
			return errors.New("not paused yet")
		}
		return nil
	})

	// A time-bound judgement wakes the wait without a change.
	until := time.Now().Add(100 * time.Millisecond)
	if err := w.Wait(ctx, until); err != nil || time.Now().Before(until) {
		t.Errorf("wait until %v returned %v at %v", until, err, time.Now())
	}
}

// stage's look at the progress costs the same at 20 hosts as at 200, and
// its look by name finds the hosts without the release.
func TestIntegration_StageCountsCostDoesNotGrowWithTheFleet(t *testing.T) {
	zkc := zktest.Standalone(t)
	ops := map[int]int64{}
	for _, n := range []int{20, 200} {
		root := fmt.Sprintf("/progress%d", n)
		buildFleet(t, connect(t, zkc, root), n)
		probe := connect(t, zkc, root)
		before := probe.Ops()
		p, err := probe.StageCounts("web", "v2", 20)
		if err != nil {
			t.Fatal(err)
		}
		ops[n] = probe.Ops() - before
		// Online members: all but w-gone1 and w-gone2; ready: the queue
		// and w-slow's turn; w-odd and w-stuck lack it.
		if p.Named || p.Online != n+3 || p.Ready != n+1 {
			t.Errorf("%d hosts: counts %+v, want %d online, %d ready", n, p, n+3, n+1)
		}
		p, err = probe.StageNames("web", "v2", 20)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Named || p.Online != n+3 || p.Ready != n+1 || !slices.Equal(p.NotReady, []string{"w-odd", "w-stuck"}) ||
			p.Agents["w-stuck"].Stuck["web"] == "" {
			t.Errorf("%d hosts: by name %+v", n, p)
		}
	}
	if ops[200] != ops[20] {
		t.Errorf("stage's count made %d requests at 200 hosts, %d at 20", ops[200], ops[20])
	}
}

// Mid-rollout, once most hosts run the staged release, the hosts not yet
// upgraded are not on an odd version: only a host on a third version is.
func TestIntegration_SummaryMidRolloutFlagsOnlyAThirdVersion(t *testing.T) {
	zkc := zktest.Standalone(t)
	s := connect(t, zkc, "/mid")
	seed(t, s, parse(t, summaryCatalog))
	now := time.Now().UTC()
	versions := map[string]string{"a": "v2", "b": "v2", "c": "v2", "d": "v1", "e": "v1", "f": "v0"}
	for _, h := range slices.Sorted(maps.Keys(versions)) {
		if err := s.EnsureMember("web", h, Member{Joined: now}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrent("web", h, Current{Version: versions[h], Since: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Stage("web", Manifest{Version: "v2", Size: 1, SHA256: strings.Repeat("a", 64), URLs: []string{"http://origin.example/web"}, Staged: now}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := newSummarizer().look(s); err != nil {
		t.Fatal(err)
	}
	sum, err := s.Summary()
	if err != nil {
		t.Fatal(err)
	}
	ss := sum.Services[0]
	if got := attentionOf(ss); !slices.Equal(got, []string{"f odd_version"}) || ss.Common != "v2" {
		t.Errorf("attention %v (common %s), want f alone on an odd version: d and e are on the version the rollout comes from", got, ss.Common)
	}
}
