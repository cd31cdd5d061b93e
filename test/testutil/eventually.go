package testutil

import (
	"context"
	"errors"
	"testing"
	"time"
)

// PollInterval is how often Poll and Eventually look again.
const PollInterval = 50 * time.Millisecond

// errNotYet is the last error of a condition given as a bool.
var errNotYet = errors.New("the condition does not hold yet")

// Poll calls cond every PollInterval until it returns nil (Poll returns nil) or ctx ends
// (Poll returns cond's last error, or ctx's when cond never ran).
func Poll(ctx context.Context, cond func() error) error {
	return PollEvery(ctx, PollInterval, cond)
}

// PollEvery is Poll at another interval (a condition that runs a process, say).
func PollEvery(ctx context.Context, interval time.Duration, cond func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		last := cond()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}

// Eventually polls cond until it returns nil; when ctx ends first, the test fails with what
// it was waiting for and cond's last error.
func Eventually(ctx context.Context, t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := Poll(ctx, cond); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// Holds adapts a bool condition for Poll and Eventually.
func Holds(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}
}

// Within is Eventually with a timeout instead of a context.
func Within(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	Eventually(ctx, t, what, cond)
}
