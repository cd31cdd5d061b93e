package gateway

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// webCallsPerMinute bounds one session's web_fetch and web_search calls
// together: the model cannot turn the gateway into a crawler.
const webCallsPerMinute = 60

// webLimiter is a per-session token bucket for the web tools, on this replica.
type webLimiter struct {
	mu      sync.Mutex
	buckets map[types.UID]*bucket
}

// webLimits is shared by the gateways of one process; sessions are keyed by UID.
var webLimits = &webLimiter{buckets: map[types.UID]*bucket{}}

// take spends one call of the session's bucket, or says how long to wait.
func (l *webLimiter) take(uid types.UID, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) > 10000 {
		for k, b := range l.buckets {
			if now.Sub(b.at) > time.Minute { // full again: forgetting it changes nothing
				delete(l.buckets, k)
			}
		}
	}
	b, ok := l.buckets[uid]
	if !ok {
		b = &bucket{}
		l.buckets[uid] = b
	}
	b.refill(now, webCallsPerMinute)
	if wait := b.wait(1); wait > 0 {
		return wait, false
	}
	b.level--
	return 0, true
}

// rateLimitError is a webError with the time until the next call may go.
type rateLimitError struct {
	*webError
	retryAfter time.Duration
}

func (e *rateLimitError) Unwrap() error { return e.webError }

func webRateLimited(wait time.Duration) error {
	return &rateLimitError{&webError{http.StatusTooManyRequests, "rate_limited",
		fmt.Sprintf("more than %d web_fetch and web_search calls in a minute; wait %s before the next", webCallsPerMinute, max(wait.Round(time.Second), time.Second))}, wait}
}
