package gateway

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretTTL is how long a key Secret read is reused: a rotated provider key is used within
// this long. Reading the Secret from the apiserver on every model call made the apiserver
// the gateway's queue under load (docs/benchmarks.md, "Session gateway under load").
const secretTTL = 10 * time.Second

// secretCache reuses Secret reads for secretTTL. It keeps only the Secrets the gateway asked
// for (the providers' key Secrets), not every Secret of the namespace as an informer would;
// a failed read is not kept, so a Secret created after a miss is seen at the next call.
//
// One read per Secret is in flight at a time, and a Secret in use is read again in the
// background once half its TTL has passed: under load the apiserver answers in seconds,
// and a call must not wait for it (nor every call that arrives meanwhile read it too).
type secretCache struct {
	reader client.Reader
	now    func() time.Time

	mu       sync.Mutex
	entries  map[types.NamespacedName]cachedSecret
	inflight map[types.NamespacedName]*secretRead
}

type cachedSecret struct {
	data    map[string][]byte
	fetched time.Time
}

// secretRead is one read of a Secret; done is closed when data and err are set.
type secretRead struct {
	done chan struct{}
	data map[string][]byte
	err  error
}

// secretReadTimeout bounds one read, which outlives the call that started it.
const secretReadTimeout = 30 * time.Second

// get returns the Secret's data, from the cache when it is fresh.
func (c *secretCache) get(ctx context.Context, key types.NamespacedName) (map[string][]byte, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && now.Sub(e.fetched) < secretTTL {
		if now.Sub(e.fetched) >= secretTTL/2 {
			c.readLocked(key, now)
		}
		c.mu.Unlock()
		return e.data, nil
	}
	rd := c.readLocked(key, now)
	c.mu.Unlock()
	select {
	case <-rd.done:
		return rd.data, rd.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readLocked starts a read of key, or returns the one in flight. Callers hold mu.
func (c *secretCache) readLocked(key types.NamespacedName, now time.Time) *secretRead {
	if rd := c.inflight[key]; rd != nil {
		return rd
	}
	if c.inflight == nil {
		c.inflight = map[types.NamespacedName]*secretRead{}
	}
	rd := &secretRead{done: make(chan struct{})}
	c.inflight[key] = rd
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), secretReadTimeout)
		defer cancel()
		sec := &corev1.Secret{}
		err := c.reader.Get(ctx, key, sec)
		c.mu.Lock()
		delete(c.inflight, key)
		if err == nil {
			if c.entries == nil {
				c.entries = map[types.NamespacedName]cachedSecret{}
			}
			// Aged from when the read began: what it returns is at least that fresh.
			c.entries[key] = cachedSecret{data: sec.Data, fetched: now}
			rd.data = sec.Data
		}
		rd.err = err
		c.mu.Unlock()
		close(rd.done)
	}()
	return rd
}

// Get reads Secrets through the cache and anything else from the reader, so code written
// against a client.Reader (the MCP header Secrets) shares it.
func (c *secretCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	sec, ok := obj.(*corev1.Secret)
	if !ok || len(opts) > 0 {
		return c.reader.Get(ctx, key, obj, opts...)
	}
	data, err := c.get(ctx, key)
	if err != nil {
		return err
	}
	sec.Name, sec.Namespace, sec.Data = key.Name, key.Namespace, data
	return nil
}

// List is the reader's: only single Secrets are cached.
func (c *secretCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.reader.List(ctx, list, opts...)
}
