package testutil

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPollReturnsTheLastErrorWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n := 0
	err := Poll(ctx, func() error { n++; return errors.New("still 3 pods") })
	if err == nil || err.Error() != "still 3 pods" || n < 2 {
		t.Errorf("err %v after %d calls", err, n)
	}
	n = 0
	if err := Poll(context.Background(), Holds(func() bool { n++; return n == 3 })); err != nil || n != 3 {
		t.Errorf("err %v after %d calls, want nil after 3", err, n)
	}
}
