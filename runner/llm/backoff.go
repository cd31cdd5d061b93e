package llm

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff decides how long to wait before retrying a failed call.
type Backoff struct {
	// MaxAttempts bounds the number of HTTP attempts per model turn (first try included).
	MaxAttempts int
	// Initial is the base delay of the first retry; it doubles per attempt.
	Initial time.Duration
	// Max caps any single wait, Retry-After included, so a provider asking for
	// an hour cannot stall a session silently.
	Max time.Duration
	// Jitter returns a value in [0,1); nil means math/rand.
	Jitter func() float64
	// Sleep waits or returns ctx's error; nil means a real timer. Tests inject
	// a recorder so they neither wait nor depend on timing.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultBackoff retries for up to roughly two minutes of waiting.
func DefaultBackoff() Backoff {
	return Backoff{MaxAttempts: 8, Initial: 500 * time.Millisecond, Max: 30 * time.Second}
}

// Delay is the wait before attempt+1, given the server's Retry-After (0 if none).
// Without Retry-After it is "equal jitter" exponential backoff: half the
// exponential step plus a random half, so concurrent runners spread out but
// never retry immediately. With Retry-After it waits at least that long, plus
// up to 10% jitter.
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	j := b.jitter()
	var d time.Duration
	if retryAfter > 0 {
		d = retryAfter + time.Duration(float64(retryAfter)*0.1*j)
	} else {
		step := b.Initial
		for i := 1; i < attempt && step < b.Max; i++ {
			step *= 2
		}
		step = min(step, b.Max)
		d = step/2 + time.Duration(float64(step/2)*j)
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d
}

func (b Backoff) jitter() float64 {
	if b.Jitter != nil {
		return b.Jitter()
	}
	return rand.Float64()
}

func (b Backoff) sleep(ctx context.Context, d time.Duration) error {
	if b.Sleep != nil {
		return b.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// retryAfter reads Retry-After (seconds or an HTTP date) and OpenAI's
// retry-after-ms, preferring the more precise one.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if ms := h.Get("Retry-After-Ms"); ms != "" {
		if v, err := strconv.ParseFloat(strings.TrimSpace(ms), 64); err == nil && v >= 0 {
			return time.Duration(v * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
