package agent

import (
	"testing"
	"time"
)

// The waits grow, stay within half of the capped schedule either way, and
// are not all alike.
func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := newBackoff(100*time.Millisecond, time.Second)
	interval := 100 * time.Millisecond
	seen := map[time.Duration]bool{}
	for range 50 {
		d := b.NextBackOff()
		if d < interval/2 || d > interval*3/2 {
			t.Fatalf("wait %v outside [%v, %v]", d, interval/2, interval*3/2)
		}
		seen[d] = true
		interval = min(2*interval, time.Second)
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct waits in 50: no jitter", len(seen))
	}
	b.Reset()
	if d := b.NextBackOff(); d > 150*time.Millisecond {
		t.Fatalf("after Reset the wait is %v", d)
	}
}
