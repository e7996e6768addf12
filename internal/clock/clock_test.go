package clock

import (
	"context"
	"testing"
	"time"
)

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep on an ended context reported that the hour passed")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep of 1ms reported its context ended")
	}
}

func TestJitterStaysInRange(t *testing.T) {
	if Jitter(0) != 0 || Jitter(-time.Second) != 0 {
		t.Error("Jitter of a duration that is not positive is not 0")
	}
	for range 1000 {
		if j := Jitter(time.Second); j < 0 || j >= time.Second {
			t.Fatalf("Jitter(1s) = %s", j)
		}
	}
}
