package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/test/testutil"
)

// slowReader is an apiserver under load: each read waits until the test releases it.
type slowReader struct {
	client.Reader
	release chan struct{}
	reads   atomic.Int32
}

func (r *slowReader) Get(ctx context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.reads.Add(1)
	select {
	case <-r.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	obj.(*corev1.Secret).Data = map[string][]byte{"apiKey": []byte("sk")}
	return nil
}

// When the cached key expires under load, the calls that arrive while the apiserver is
// slow to answer share one read; and a key in use is renewed in the background, so a call
// never waits for the apiserver while its cached read is still valid.
func TestKeySecretReadsAreSharedAndRenewedAhead(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	r := &slowReader{release: make(chan struct{})}
	c := &secretCache{reader: r, now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	key := types.NamespacedName{Namespace: "agentry-system", Name: "openai"}
	ctx := context.Background()

	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, err := c.get(ctx, key); err != nil || string(d["apiKey"]) != "sk" {
				failed.Add(1)
			}
		}()
	}
	testutil.Within(t, 10*time.Second, "the first read to start", testutil.Holds(func() bool { return r.reads.Load() >= 1 }))
	r.release <- struct{}{}
	wg.Wait()
	if n := r.reads.Load(); n != 1 || failed.Load() != 0 {
		t.Fatalf("50 concurrent calls made %d reads (%d failed), want 1 read shared by all", n, failed.Load())
	}

	// Past half the TTL: answered at once from the cache while a renewal waits on the apiserver.
	mu.Lock()
	now = now.Add(secretTTL * 3 / 4)
	mu.Unlock()
	answered := make(chan error, 1)
	go func() {
		_, err := c.get(ctx, key)
		answered <- err
	}()
	testutil.Within(t, 10*time.Second, "a call with a valid cached key to be answered while the renewal is pending",
		testutil.Holds(func() bool { return len(answered) == 1 }))
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	testutil.Within(t, 10*time.Second, "the renewal to start", testutil.Holds(func() bool { return r.reads.Load() == 2 }))
	r.release <- struct{}{}
	// The renewal is what later calls see: no read while it is fresh.
	testutil.Within(t, 10*time.Second, "the renewal to land", testutil.Holds(func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inflight) == 0
	}))
	mu.Lock()
	now = now.Add(secretTTL / 4)
	mu.Unlock()
	if _, err := c.get(ctx, key); err != nil || r.reads.Load() != 2 {
		t.Fatalf("call after the first read's TTL: %v, %d reads, want the renewal's (2)", err, r.reads.Load())
	}
}
