package plugin

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// TestConsoleRenewsWithAThirdLeft: the local page never forwards to a link about to expire.
func TestConsoleRenewsWithAThirdLeft(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	at := func(created, expires time.Duration) *v1.AgentSessionShare {
		sh := &v1.AgentSessionShare{}
		sh.CreationTimestamp = metav1.NewTime(now.Add(created))
		exp := metav1.NewTime(now.Add(expires))
		sh.Status.ExpiresAt = &exp
		return sh
	}
	cases := map[string]struct {
		share *v1.AgentSessionShare
		want  time.Duration
	}{
		"fresh link":               {at(0, consoleLinkTTL), consoleLinkTTL * 2 / 3},
		"capped by a policy to 3m": {at(0, 3*time.Minute), 2 * time.Minute},
		"renewal failed, late":     {at(-consoleLinkTTL, time.Second), 5 * time.Second},
		"no expiry reported":       {&v1.AgentSessionShare{}, consoleLinkTTL / 3},
	}
	for name, tc := range cases {
		if got := renewIn(tc.share, now); got != tc.want {
			t.Errorf("%s: renewIn = %s, want %s", name, got, tc.want)
		}
	}
}
