package agent

import (
	"context"
	"time"

	"github.com/dcroll/dcroll/internal/clock"
	"github.com/dcroll/dcroll/roll"
)

// canaryHoldLoop ends, for this session, the canary pauses of services
// with canary_hold while this agent is the elected advancer
// (roll.RunCanaryHold).
func (a *Agent) canaryHoldLoop(ctx context.Context, store *roll.Store) {
	backoff := newBackoff(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		err := store.RunCanaryHold(ctx)
		if ctx.Err() != nil {
			return
		}
		d := backoff.NextBackOff()
		a.log.Warn("ending a canary pause after canary_hold failed, retrying", "error", err, "retry_in", d)
		if !clock.Sleep(ctx, d) {
			return
		}
	}
}
