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
type secretCache struct {
	reader client.Reader
	now    func() time.Time

	mu      sync.Mutex
	entries map[types.NamespacedName]cachedSecret
}

type cachedSecret struct {
	data    map[string][]byte
	fetched time.Time
}

// get returns the Secret's data, from the cache when it is fresh.
func (c *secretCache) get(ctx context.Context, key types.NamespacedName) (map[string][]byte, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < secretTTL {
		return e.data, nil
	}
	sec := &corev1.Secret{}
	if err := c.reader.Get(ctx, key, sec); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]cachedSecret{}
	}
	c.entries[key] = cachedSecret{data: sec.Data, fetched: now}
	c.mu.Unlock()
	return sec.Data, nil
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
