package contract

import (
	"math"
	"testing"
)

// Counts from a provider, a runner or another writer are bounded before any sum: negative
// counts are none, and the largest sum of two never overflows.
func TestUsageIsBoundedBeforeItIsAdded(t *testing.T) {
	u := Usage{PromptTokens: math.MaxInt64, CompletionTokens: -5, CachedTokens: 7}.Bounded()
	if u != (Usage{PromptTokens: MaxTokenCount, CompletionTokens: 0, CachedTokens: 7}) {
		t.Errorf("bounded = %+v", u)
	}
	if sum := u.Add(u).Add(u).Total(); sum != 3*MaxTokenCount || sum < 0 {
		t.Errorf("sum of three bounded counts = %d", sum)
	}
}
