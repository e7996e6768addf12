package agent

import (
	"time"

	"github.com/cenkalti/backoff/v5"
)

// newBackoff is the agent's one retry schedule: waits that start at
// initial, double up to limit, and are each spread by half either way, so
// that ten thousand agents back from an ensemble outage do not retry in
// lockstep.
func newBackoff(initial, limit time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         limit,
	}
}
