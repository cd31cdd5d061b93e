package gateway

import (
	"math"
	"sync"
	"time"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// bucket is a token bucket holding up to capacity, refilled at capacity per
// minute. level may go below zero when a call used more than it reserved.
type bucket struct {
	capacity float64
	level    float64
	at       time.Time
}

func (b *bucket) refill(now time.Time, capacity float64) {
	if b.capacity != capacity { // first use, or spec.rateLimits changed
		if b.at.IsZero() || b.level > capacity {
			b.level = capacity
		}
		b.capacity = capacity
	}
	if !b.at.IsZero() && now.After(b.at) {
		b.level = min(b.capacity, b.level+now.Sub(b.at).Minutes()*b.capacity)
	}
	b.at = now
}

// wait is how long until the bucket holds need.
func (b *bucket) wait(need float64) time.Duration {
	if b.level >= need {
		return 0
	}
	return time.Duration((need - b.level) / b.capacity * float64(time.Minute))
}

// providerLimiter enforces one ModelProvider's spec.rateLimits on this replica.
type providerLimiter struct {
	mu       sync.Mutex
	requests bucket
	tokens   bucket
}

func (s *Server) limiter(provider string) *providerLimiter {
	l := s.ledger()
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.providers[provider]
	if p == nil {
		p = &providerLimiter{}
		l.providers[provider] = p
	}
	return p
}

// admit takes one request and tokens (a call's reservation) from the
// provider's buckets, or returns how long to wait when either lacks them.
// A call larger than the whole per-minute token limit waits for a full bucket.
func (p *providerLimiter) admit(rl *v1.RateLimits, now time.Time, tokens int64) (time.Duration, bool) {
	if rl == nil || (rl.RequestsPerMinute == nil && rl.TokensPerMinute == nil) {
		return 0, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var wait time.Duration
	if rl.RequestsPerMinute != nil {
		p.requests.refill(now, float64(*rl.RequestsPerMinute))
		wait = max(wait, p.requests.wait(1))
	}
	var need float64
	if rl.TokensPerMinute != nil {
		p.tokens.refill(now, float64(*rl.TokensPerMinute))
		need = min(float64(tokens), p.tokens.capacity)
		wait = max(wait, p.tokens.wait(need))
	}
	if wait > 0 {
		return wait, false
	}
	if rl.RequestsPerMinute != nil {
		p.requests.level--
	}
	if rl.TokensPerMinute != nil {
		p.tokens.level -= need
	}
	return 0, true
}

// adjust returns to the token bucket what a call reserved but did not use,
// or takes what it used beyond its reservation.
func (p *providerLimiter) adjust(rl *v1.RateLimits, reserved, used int64) {
	if rl == nil || rl.TokensPerMinute == nil || reserved == used {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tokens.capacity == 0 {
		return
	}
	took := min(float64(reserved), p.tokens.capacity)
	p.tokens.level = min(p.tokens.capacity, p.tokens.level+took-float64(used))
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}
