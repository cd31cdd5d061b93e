package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/notify"
)

var fastBackoff = notify.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 3}

// script answers requests with the given statuses in turn (the last one repeated) and keeps the
// event id and arrival time of each.
type script struct {
	mu       sync.Mutex
	statuses []int
	header   http.Header
	ids      []string
	times    []time.Time
	arrived  chan struct{}
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev struct{ ID string }
	_ = decodeJSON(r, &ev)
	s.mu.Lock()
	n := len(s.ids)
	s.ids = append(s.ids, ev.ID)
	s.times = append(s.times, time.Now())
	code := s.statuses[min(n, len(s.statuses)-1)]
	s.mu.Unlock()
	if s.arrived != nil {
		s.arrived <- struct{}{}
	}
	if code != http.StatusOK {
		for k, v := range s.header {
			w.Header()[k] = v
		}
		http.Error(w, "status "+http.StatusText(code), code)
	}
}

func TestDeliverRetriesServerErrors(t *testing.T) {
	sc := &script{statuses: []int{503, 503, 200}}
	srv := httptest.NewServer(sc)
	defer srv.Close()

	n, err := notify.Deliver(context.Background(), notify.Webhook{URL: srv.URL}, finished(), fastBackoff)
	if n != 3 || err != nil {
		t.Fatalf("Deliver = %d, %v; want 3, nil", n, err)
	}
	for _, id := range sc.ids {
		if id != finished().ID() {
			t.Errorf("attempt ids %q, want %q on each", sc.ids, finished().ID())
			break
		}
	}
}

func TestDeliverGivesUp(t *testing.T) {
	cases := map[string]struct {
		status       int
		wantAttempts int
		wantInError  string
	}{
		"client error is final":      {http.StatusBadRequest, 1, "HTTP 400 Bad Request: status Bad Request"},
		"forbidden is final":         {http.StatusForbidden, 1, "HTTP 403"},
		"server error until the end": {http.StatusInternalServerError, 3, "HTTP 500 Internal Server Error"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			sc := &script{statuses: []int{tc.status}}
			srv := httptest.NewServer(sc)
			defer srv.Close()
			n, err := notify.Deliver(context.Background(), notify.Webhook{URL: srv.URL}, finished(), fastBackoff)
			if n != tc.wantAttempts || len(sc.ids) != tc.wantAttempts {
				t.Errorf("Deliver made %d attempts (server saw %d), want %d", n, len(sc.ids), tc.wantAttempts)
			}
			var se *notify.StatusError
			if !errors.As(err, &se) || se.Code != tc.status || !strings.Contains(err.Error(), tc.wantInError) {
				t.Errorf("error = %v, want a StatusError %d containing %q", err, tc.status, tc.wantInError)
			}
		})
	}
}

func TestDeliverHonoursRetryAfter(t *testing.T) {
	sc := &script{statuses: []int{http.StatusTooManyRequests, http.StatusOK}, header: http.Header{"Retry-After": {"1"}}}
	srv := httptest.NewServer(sc)
	defer srv.Close()

	b := notify.Backoff{Initial: time.Millisecond, Max: 5 * time.Second, Attempts: 2}
	n, err := notify.Deliver(context.Background(), notify.Webhook{URL: srv.URL}, finished(), b)
	if n != 2 || err != nil {
		t.Fatalf("Deliver = %d, %v; want 2, nil", n, err)
	}
	if gap := sc.times[1].Sub(sc.times[0]); gap < time.Second {
		t.Errorf("second attempt %v after the first, want at least the 1s Retry-After asked for", gap)
	}

	// A Retry-After beyond Max waits Max: an hour would time the test out.
	sc = &script{statuses: []int{http.StatusTooManyRequests, http.StatusOK}, header: http.Header{"Retry-After": {"3600"}}}
	capped := httptest.NewServer(sc)
	defer capped.Close()
	b.Max = 10 * time.Millisecond
	if n, err := notify.Deliver(context.Background(), notify.Webhook{URL: capped.URL}, finished(), b); n != 2 || err != nil {
		t.Fatalf("Deliver = %d, %v; want 2, nil", n, err)
	}
}

func TestDeliverStopsWhenContextEnds(t *testing.T) {
	sc := &script{statuses: []int{http.StatusServiceUnavailable}, arrived: make(chan struct{}, 10)}
	srv := httptest.NewServer(sc)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := notify.Deliver(ctx, notify.Webhook{URL: srv.URL}, finished(), notify.Backoff{Initial: time.Hour, Max: time.Hour, Attempts: 5})
		done <- result{n, err}
	}()
	<-sc.arrived
	cancel()
	select {
	case r := <-done:
		if r.n != 1 || !errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "last attempt: webhook:") {
			t.Errorf("Deliver = %d, %v; want 1 attempt, context.Canceled and the last attempt's error", r.n, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Deliver still waits to retry after its context was cancelled")
	}
}

// An attempt that hangs ends at Backoff.Timeout and counts as a failure to retry.
func TestDeliverTimesOutEachAttempt(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	b := notify.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Attempts: 2, Timeout: 50 * time.Millisecond}
	n, err := notify.Deliver(context.Background(), notify.Webhook{URL: srv.URL}, finished(), b)
	if n != 2 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver = %d, %v; want 2 attempts ending in context.DeadlineExceeded", n, err)
	}
}

func decodeJSON(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v)
}
