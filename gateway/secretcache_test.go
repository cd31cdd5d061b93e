package gateway

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingReader serves one Secret whose value the test rotates, and counts reads.
type countingReader struct {
	client.Reader
	value  string
	exists bool
	reads  int
}

func (r *countingReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.reads++
	if !r.exists {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	obj.(*corev1.Secret).Data = map[string][]byte{"apiKey": []byte(r.value)}
	return nil
}

// Under load every model call read the provider's key Secret from the apiserver; now a read
// is reused for secretTTL, a rotated key is used once it expires, and a missing Secret is
// not remembered.
func TestProviderKeyReadsAreReusedBriefly(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	r := &countingReader{value: "sk-old"}
	c := &secretCache{reader: r, now: func() time.Time { return now }}
	key := types.NamespacedName{Namespace: "agentry-system", Name: "openai"}

	if _, err := c.get(context.Background(), key); !apierrors.IsNotFound(err) {
		t.Fatalf("missing Secret: %v", err)
	}
	r.exists = true
	for range 100 {
		d, err := c.get(context.Background(), key)
		if err != nil || string(d["apiKey"]) != "sk-old" {
			t.Fatalf("= %q, %v", d, err)
		}
	}
	if r.reads != 2 {
		t.Errorf("%d reads for a miss and 100 calls, want 2 (a miss is not cached, a hit is)", r.reads)
	}
	r.value = "sk-new"
	now = now.Add(secretTTL - time.Millisecond)
	if d, _ := c.get(context.Background(), key); string(d["apiKey"]) != "sk-old" {
		t.Errorf("within the TTL: %q", d["apiKey"])
	}
	now = now.Add(2 * time.Millisecond)
	if d, _ := c.get(context.Background(), key); string(d["apiKey"]) != "sk-new" {
		t.Errorf("after the TTL the rotated key is not used: %q", d["apiKey"])
	}
}
