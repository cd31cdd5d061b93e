package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// Extra fields the apiserver puts in a pod-bound ServiceAccount token's review.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
	// labelSessionUID is the runner pod's link to its session (controllers.LabelSessionUID).
	labelSessionUID = "agentry.dev/session-uid"
)

// identity is who a request acts for: one session, through its runner pod.
type identity struct {
	Session types.NamespacedName
	UID     types.UID
	Pod     string
}

// authError carries the HTTP status to answer: 401 when the token is not a
// valid gateway token, 403 when it is valid but may not act for a session.
type authError struct {
	status int
	msg    string
}

func (e *authError) Error() string { return e.msg }

func unauthorized(format string, a ...any) error {
	return &authError{http.StatusUnauthorized, fmt.Sprintf(format, a...)}
}

func forbidden(format string, a ...any) error {
	return &authError{http.StatusForbidden, fmt.Sprintf(format, a...)}
}

// authenticator checks tokens with TokenReview and maps the bound pod to its
// session. Successful results are cached briefly (keyed by the token's hash)
// so a busy session does not review its token on every event batch.
type authenticator struct {
	c client.Client
	// live reads around the cache when an object is not there yet: a pod that
	// started seconds after it was created must not be refused.
	live client.Reader
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedIdentity
}

type cachedIdentity struct {
	id      identity
	expires time.Time
}

func newAuthenticator(c client.Client, live client.Reader) *authenticator {
	return &authenticator{c: c, live: live, ttl: 30 * time.Second, now: time.Now, cache: map[[32]byte]cachedIdentity{}}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (a *authenticator) authenticate(ctx context.Context, token string) (identity, error) {
	if token == "" {
		return identity{}, unauthorized("missing bearer token: present the pod's projected ServiceAccount token (audience %s)", contract.GatewayAudience)
	}
	key := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	if c, ok := a.cache[key]; ok && now.Before(c.expires) {
		a.mu.Unlock()
		return c.id, nil
	}
	a.mu.Unlock()

	id, err := a.review(ctx, token)
	if err != nil {
		return identity{}, err
	}
	a.mu.Lock()
	if len(a.cache) > 10000 {
		for k, c := range a.cache {
			if !now.Before(c.expires) {
				delete(a.cache, k)
			}
		}
	}
	a.cache[key] = cachedIdentity{id: id, expires: now.Add(a.ttl)}
	a.mu.Unlock()
	return id, nil
}

func (a *authenticator) review(ctx context.Context, token string) (identity, error) {
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{contract.GatewayAudience}}}
	if err := a.c.Create(ctx, tr); err != nil {
		return identity{}, fmt.Errorf("reviewing token: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		return identity{}, unauthorized("token rejected: %s", orText(st.Error, "not authenticated"))
	}
	audOK := false
	for _, aud := range st.Audiences {
		audOK = audOK || aud == contract.GatewayAudience
	}
	if !audOK {
		return identity{}, unauthorized("token is not for audience %s", contract.GatewayAudience)
	}
	podName, podUID := first(st.User.Extra[extraPodName]), first(st.User.Extra[extraPodUID])
	parts := strings.Split(st.User.Username, ":")
	if podName == "" || podUID == "" || len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return identity{}, forbidden("token of %s is not bound to a pod", st.User.Username)
	}
	ns := parts[2]
	pod := &corev1.Pod{}
	if err := a.get(ctx, types.NamespacedName{Namespace: ns, Name: podName}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return identity{}, forbidden("pod %s/%s is not an Agentry runner pod", ns, podName)
		}
		return identity{}, fmt.Errorf("getting pod %s/%s: %w", ns, podName, err)
	}
	if string(pod.UID) != podUID {
		return identity{}, forbidden("token is bound to an earlier pod named %s/%s", ns, podName)
	}
	var owner *types.NamespacedName
	var ownerUID types.UID
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && ref.Kind == "AgentSession" && strings.HasPrefix(ref.APIVersion, v1.GroupVersion.Group+"/") {
			owner, ownerUID = &types.NamespacedName{Namespace: ns, Name: ref.Name}, ref.UID
		}
	}
	label := pod.Labels[labelSessionUID]
	if owner == nil || label == "" {
		return identity{}, forbidden("pod %s/%s is not an Agentry runner pod", ns, podName)
	}
	// The label is how the reconciler finds the pod; the owner reference is set
	// by whoever created it. A pod acts for a session only when both agree.
	if types.UID(label) != ownerUID {
		return identity{}, forbidden("pod %s/%s: label %s=%s does not match its controller AgentSession %s (%s)", ns, podName, labelSessionUID, label, owner.Name, ownerUID)
	}
	sess := &v1.AgentSession{}
	if err := a.get(ctx, *owner, sess); err != nil {
		if apierrors.IsNotFound(err) {
			return identity{}, forbidden("session %s of pod %s/%s does not exist", owner.Name, ns, podName)
		}
		return identity{}, fmt.Errorf("getting session %s: %w", owner, err)
	}
	if sess.UID != ownerUID {
		return identity{}, forbidden("pod %s/%s belongs to an earlier session named %s", ns, podName, owner.Name)
	}
	return identity{Session: *owner, UID: sess.UID, Pod: podName}, nil
}

func (a *authenticator) get(ctx context.Context, key types.NamespacedName, obj client.Object) error {
	err := a.c.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && a.live != nil {
		err = a.live.Get(ctx, key, obj)
	}
	return err
}

func first(v authnv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type identityKey struct{}

// authenticated wraps a handler with authentication and request metrics.
func (s *Server) authenticated(name string, h func(http.ResponseWriter, *http.Request, identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			requestsTotal.WithLabelValues(name, strconv.Itoa(rec.status)).Inc()
			requestDuration.WithLabelValues(name).Observe(s.now().Sub(start).Seconds())
		}()
		id, err := s.auth.authenticate(r.Context(), bearer(r))
		if err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				log.FromContext(r.Context()).Error(err, "Authenticating runner")
				s.refuse(rec, name, http.StatusServiceUnavailable, "authentication unavailable: "+err.Error())
				return
			}
			s.refuse(rec, name, ae.status, ae.msg)
			return
		}
		h(rec, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), id)
	})
}

// refuse answers in the dialect the caller speaks: OpenAI-style for the proxy.
func (s *Server) refuse(w http.ResponseWriter, handler string, status int, msg string) {
	if handler == "chat" {
		typ := "invalid_request_error"
		if status == http.StatusUnauthorized {
			typ = "authentication_error"
		}
		writeOpenAIError(w, status, msg, typ, "")
		return
	}
	writeError(w, status, "%s", msg)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
