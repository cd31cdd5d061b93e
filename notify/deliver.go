package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Sender sends one event once. Webhook and Slack implement it.
type Sender interface {
	Send(ctx context.Context, e Event) error
}

// Backoff is Deliver's retry policy. A zero field takes its default.
type Backoff struct {
	// Initial is the wait after the first failed attempt (default 1s); it doubles after each
	// further one. Each wait is jittered to between half and all of its length.
	Initial time.Duration
	// Max caps every wait, one a Retry-After asks for included (default 30s).
	Max time.Duration
	// Attempts is the most attempts in all, the first included (default 3).
	Attempts int
	// Timeout bounds each attempt (default 10s).
	Timeout time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	b.Max = max(b.Max, b.Initial)
	if b.Attempts <= 0 {
		b.Attempts = 3
	}
	if b.Timeout <= 0 {
		b.Timeout = 10 * time.Second
	}
	return b
}

// Deliver sends e with s, retrying what may succeed later: a network error or timeout, a 5xx
// and a 429. Between attempts it waits as b says, or as long as a Retry-After header asks (up to
// b.Max). A 4xx other than 429, a redirect and an invalid event or target are final. It returns
// the attempts made and nil, or the last attempt's error; when ctx ends it stops at once and
// returns ctx's error joined with the last attempt's.
//
// Delivery is at least once: an attempt whose response was lost is sent again, with the same
// Event.ID.
func Deliver(ctx context.Context, s Sender, e Event, b Backoff) (attempts int, err error) {
	return deliver(ctx, s, e, b.withDefaults(), sleep)
}

// deliver is Deliver with the wait between attempts as a parameter.
func deliver(ctx context.Context, s Sender, e Event, b Backoff, wait func(context.Context, time.Duration) error) (int, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.Timeout)
		err := s.Send(actx, e)
		cancel()
		if err == nil {
			return attempt, nil
		}
		if ctx.Err() != nil {
			return attempt, fmt.Errorf("%w; last attempt: %w", context.Cause(ctx), err)
		}
		d, retry := b.next(err, attempt)
		if !retry || attempt >= b.Attempts {
			return attempt, err
		}
		if werr := wait(ctx, d); werr != nil {
			return attempt, fmt.Errorf("%w; last attempt: %w", werr, err)
		}
	}
}

// next is the wait before the attempt after attempt, which failed with err, and whether to
// make it at all.
func (b Backoff) next(err error, attempt int) (time.Duration, bool) {
	if _, ok := errors.AsType[*permanentError](err); ok {
		return 0, false
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		if !se.retryable() {
			return 0, false
		}
		if se.RetryAfter > 0 {
			return min(se.RetryAfter, b.Max), true
		}
	}
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + rand.N(d/2+1), true
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
