package gateway

import (
	"testing"
	"time"

	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

func TestProviderLimiterRefillsAndSettles(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	rl := &v1.RateLimits{RequestsPerMinute: ptr.To[int32](60), TokensPerMinute: ptr.To[int64](600)}
	p := &providerLimiter{}
	if _, ok := p.admit(rl, t0, 500); !ok {
		t.Fatal("first call refused")
	}
	wait, ok := p.admit(rl, t0, 500)
	if ok || wait != 40*time.Second { // 100 left, 400 more at 10 tokens/s
		t.Fatalf("second call: ok=%v wait=%s, want refused for 40s", ok, wait)
	}
	// The first call used only 100 of its 500: 400 come back at once.
	p.adjust(rl, 500, 100)
	if _, ok := p.admit(rl, t0, 500); !ok {
		t.Fatal("call after the refund refused")
	}
	// A call using more than it reserved overdraws the bucket.
	p.adjust(rl, 500, 1100)
	if wait, ok := p.admit(rl, t0.Add(30*time.Second), 100); ok || wait != 40*time.Second {
		t.Fatalf("after an overdraw: ok=%v wait=%s", ok, wait)
	}
	// A call bigger than the whole limit waits for a full bucket, not for ever.
	if _, ok := p.admit(rl, t0.Add(10*time.Minute), 5000); !ok {
		t.Fatal("oversized call refused with a full bucket")
	}
	// Requests per minute: 60/min is one a second.
	q := &providerLimiter{}
	rpm := &v1.RateLimits{RequestsPerMinute: ptr.To[int32](2)}
	q.admit(rpm, t0, 0)
	q.admit(rpm, t0, 0)
	if wait, ok := q.admit(rpm, t0, 0); ok || wait != 30*time.Second {
		t.Fatalf("third request: ok=%v wait=%s, want 30s", ok, wait)
	}
}
