package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

// reviewer answers TokenReviews for one pod-bound token and counts them: the apiserver
// round trips a request would wait for.
type reviewer struct {
	mu      sync.Mutex
	reviews int
	valid   bool
}

func (r *reviewer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reviews
}

func (r *reviewer) create(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
	tr, ok := obj.(*authnv1.TokenReview)
	if !ok {
		return c.Create(ctx, obj, opts...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reviews++
	tr.Status = authnv1.TokenReviewStatus{Authenticated: r.valid, Audiences: []string{contract.GatewayAudience}, User: authnv1.UserInfo{
		Username: "system:serviceaccount:ns:default",
		Extra:    map[string]authnv1.ExtraValue{extraPodName: {"s-runner"}, extraPodUID: {"pod-uid"}},
	}}
	return nil
}

// A busy session's token is reviewed again in the background before its cached review
// expires, so its requests never wait for the apiserver; a token that stopped
// authenticating is dropped by that review and refused at the next request.
func TestTokenReviewIsRenewedAheadOfExpiry(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	sess := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "session-uid"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "s-runner", Namespace: "ns", UID: "pod-uid",
		Labels:          map[string]string{contract.LabelSessionUID: "session-uid"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "AgentSession", Name: "s", UID: "session-uid", Controller: ptr.To(true)}}}}
	rev := &reviewer{valid: true}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sess, pod).WithInterceptorFuncs(interceptor.Funcs{Create: rev.create}).Build()
	a := newAuthenticator(c, nil)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	at := func(d time.Duration) (identity, error) {
		a.now = func() time.Time { return t0.Add(d) }
		return a.authenticate(ctx, "token")
	}
	settled := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.refreshing) == 0
	}

	if id, err := at(0); err != nil || id.PodUID != "pod-uid" {
		t.Fatalf("first request: %+v %v", id, err)
	}
	if _, err := at(10 * time.Second); err != nil || rev.count() != 1 {
		t.Fatalf("request within the review's lifetime: %v, %d reviews, want 1", err, rev.count())
	}
	// Past half the lifetime: answered from the cache, renewed in the background.
	if _, err := at(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Within(t, 10*time.Second, "the background review", testutil.Holds(func() bool { return rev.count() == 2 && settled() }))
	// Past the first review's expiry (30 s), the renewed one (made at 20 s) answers without
	// another round trip. Not at 35 s: that is the renewed review's own half-life, where a
	// second background review starts and may already have counted.
	if _, err := at(34 * time.Second); err != nil || rev.count() != 2 {
		t.Fatalf("request after the first review expired: %v, %d reviews, want 2", err, rev.count())
	}

	rev.mu.Lock()
	rev.valid = false // the ServiceAccount was deleted, say
	rev.mu.Unlock()
	if _, err := at(40 * time.Second); err != nil {
		t.Fatalf("request before the renewal found out: %v", err)
	}
	testutil.Within(t, 10*time.Second, "the background review", testutil.Holds(func() bool { return rev.count() == 3 && settled() }))
	var ae *authError
	if _, err := at(41 * time.Second); !errors.As(err, &ae) || ae.status != http.StatusUnauthorized {
		t.Fatalf("request after the token stopped authenticating: %v, want 401", err)
	}
}
