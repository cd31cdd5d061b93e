package notify

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestBackoffNext(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 10 * time.Second, Attempts: 5}.withDefaults()
	network := errors.New("connection refused")
	cases := map[string]struct {
		err      error
		attempt  int
		min, max time.Duration
		retry    bool
	}{
		"network error, first wait": {network, 1, 500 * time.Millisecond, time.Second, true},
		"network error, doubles":    {network, 3, 2 * time.Second, 4 * time.Second, true},
		"network error, capped":     {network, 30, 5 * time.Second, 10 * time.Second, true},
		"503":                       {&StatusError{Code: 503}, 2, time.Second, 2 * time.Second, true},
		"429 without Retry-After":   {&StatusError{Code: 429}, 1, 500 * time.Millisecond, time.Second, true},
		"429 Retry-After exactly":   {&StatusError{Code: 429, RetryAfter: 7 * time.Second}, 1, 7 * time.Second, 7 * time.Second, true},
		"429 Retry-After over Max":  {&StatusError{Code: 429, RetryAfter: time.Hour}, 1, 10 * time.Second, 10 * time.Second, true},
		"400 is final":              {&StatusError{Code: 400}, 1, 0, 0, false},
		"404 is final":              {&StatusError{Code: 404}, 1, 0, 0, false},
		"redirect is final":         {&StatusError{Code: 302}, 1, 0, 0, false},
		"invalid event is final":    {permanent("webhook: unknown event kind %q", "Started"), 1, 0, 0, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for range 50 { // the jitter is random
				d, retry := b.next(tc.err, tc.attempt)
				if retry != tc.retry || d < tc.min || d > tc.max {
					t.Fatalf("next = %v, %v; want %v in [%v, %v]", d, retry, tc.retry, tc.min, tc.max)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	cases := map[string]time.Duration{
		"":     0,
		"3":    3 * time.Second,
		"0":    0,
		"-5":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
		"99999999999": 24 * time.Hour,
	}
	for in, want := range cases {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	cases := map[string]struct {
		raw      string
		keepPath bool
		want     string
	}{
		"slack":     {"https://hooks.slack.example/services/T0/B0/xyz", false, "https://hooks.slack.example/…"},
		"webhook":   {"https://hooks.example.com/agentry?token=abc", true, "https://hooks.example.com/agentry?…"},
		"userinfo":  {"https://u:p@hooks.example.com/x", true, "https://hooks.example.com/x"},
		"no path":   {"https://hooks.example.com", false, "https://hooks.example.com"},
		"not a URL": {"::::", false, "<invalid URL>"},
	}
	for name, tc := range cases {
		if got := redactURL(tc.raw, tc.keepPath); got != tc.want {
			t.Errorf("%s: redactURL = %q, want %q", name, got, tc.want)
		}
	}
}
