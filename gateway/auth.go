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
	"github.com/agentry-dev/agentry/display"
)

// Extra fields the apiserver puts in a pod-bound ServiceAccount token's review.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// identity is who a request acts for: one session, through its runner pod.
type identity struct {
	Session types.NamespacedName
	UID     types.UID
	Pod     string
	// PodUID is the bound pod's UID from the token review; it must equal the
	// session's status.podUID on every request.
	PodUID types.UID
}

// authError carries the HTTP status to answer: 401 when the token is not a
// valid gateway token, 403 when it is valid but may not act for a session.
// reason labels agentry_gateway_refused_total.
type authError struct {
	status int
	reason string
	msg    string
}

func (e *authError) Error() string { return e.msg }

func unauthorized(format string, a ...any) error {
	return &authError{http.StatusUnauthorized, "unauthenticated", fmt.Sprintf(format, a...)}
}

func forbidden(format string, a ...any) error {
	return &authError{http.StatusForbidden, "not_runner_pod", fmt.Sprintf(format, a...)}
}

// Reasons a request that authenticated is refused (agentry_gateway_refused_total{reason}).
const (
	refusedPodGone        = "pod_gone"
	refusedPodNotRecorded = "pod_not_recorded"
	refusedSessionGone    = "session_gone"
	refusedSessionEnded   = "session_ended"
	refusedFinished       = "finished"
	refusedBodyTooLarge   = "body_too_large"
	refusedInFlight       = "too_many_in_flight"
	refusedGatewayBusy    = "gateway_busy"
)

func refusal(status int, reason, format string, a ...any) error {
	return &authError{status, reason, fmt.Sprintf(format, a...)}
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
	// refreshing holds the tokens being reviewed again in the background.
	refreshing map[[32]byte]bool
}

type cachedIdentity struct {
	id       identity
	reviewed time.Time
	expires  time.Time
}

func newAuthenticator(c client.Client, live client.Reader) *authenticator {
	return &authenticator{c: c, live: live, ttl: 30 * time.Second, now: time.Now,
		cache: map[[32]byte]cachedIdentity{}, refreshing: map[[32]byte]bool{}}
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
	// The cache saves only the TokenReview: admit checks the pod and the session
	// on every request, so a deleted pod or an ended session stops at once.
	if c, ok := a.cache[key]; ok && now.Before(c.expires) {
		// Half-way to expiry the token is reviewed again in the background, so a busy
		// session's requests never wait for a TokenReview, and no answer is older than ttl.
		if now.Sub(c.reviewed) >= a.ttl/2 && !a.refreshing[key] {
			a.refreshing[key] = true
			go a.refresh(key, token)
		}
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
	a.cache[key] = cachedIdentity{id: id, reviewed: now, expires: now.Add(a.ttl)}
	a.mu.Unlock()
	return id, nil
}

// refresh reviews a cached token again. A token that no longer authenticates (or whose
// pod is gone) is dropped, so the next request is reviewed and refused; when the
// apiserver cannot answer, the entry lives until it expires.
func (a *authenticator) refresh(key [32]byte, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := a.now()
	id, err := a.review(ctx, token)
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.refreshing, key)
	var ae *authError
	switch _, cached := a.cache[key]; {
	case err == nil && cached: // forgetPod may have dropped it meanwhile: it stays dropped
		a.cache[key] = cachedIdentity{id: id, reviewed: now, expires: now.Add(a.ttl)}
	case errors.As(err, &ae):
		delete(a.cache, key)
	}
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
	label := pod.Labels[contract.LabelSessionUID]
	if owner == nil || label == "" {
		return identity{}, forbidden("pod %s/%s is not an Agentry runner pod", ns, podName)
	}
	// The label is how the reconciler finds the pod; the owner reference is set
	// by whoever created it. A pod acts for a session only when both agree.
	if types.UID(label) != ownerUID {
		return identity{}, forbidden("pod %s/%s: label %s=%s does not match its controller AgentSession %s (%s)", ns, podName, contract.LabelSessionUID, label, owner.Name, ownerUID)
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
	return identity{Session: *owner, UID: sess.UID, Pod: podName, PodUID: pod.UID}, nil
}

// admit checks, on every request, that the token's pod is still the session's
// runner pod and the session may still act: the pod exists with the same UID
// and is not being deleted, it is the pod the reconciler recorded in
// status.podUID (labels and owner references can be written by anyone who can
// create pods; status cannot), and the session has not ended. It returns the
// session as read.
//
// reporting is true for the endpoints through which a runner reports how its
// session went (events, finish). A runner that was cancelled or timed out is
// stopped by its pod's deletion and reports its last events and its finish
// during the grace period, after the reconciler has already set the terminal
// phase; refusing those would lose the end of every cancelled session's
// transcript. So while its pod still exists with the recorded UID, a runner
// may still report (finish is accepted once); it can never again call the
// model or ask for an approval.
func (a *authenticator) admit(ctx context.Context, id identity, reporting bool) (*v1.AgentSession, error) {
	pod := &corev1.Pod{}
	if err := a.get(ctx, types.NamespacedName{Namespace: id.Session.Namespace, Name: id.Pod}, pod); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("getting pod %s/%s: %w", id.Session.Namespace, id.Pod, err)
		}
		a.forgetPod(id.PodUID)
		return nil, refusal(http.StatusForbidden, refusedPodGone, "pod %s/%s is gone: its token no longer acts for session %s", id.Session.Namespace, id.Pod, id.Session.Name)
	}
	if pod.UID != id.PodUID || (pod.DeletionTimestamp != nil && !reporting) {
		a.forgetPod(id.PodUID)
		return nil, refusal(http.StatusForbidden, refusedPodGone, "pod %s/%s is deleted or replaced: its token no longer acts for session %s", id.Session.Namespace, id.Pod, id.Session.Name)
	}
	if runnerExited(pod) {
		// Nothing legitimate reports after the runner's exit: it waits for its last answer
		// before exiting. A token taken from it earlier is worth nothing from here on.
		return nil, refusal(http.StatusForbidden, refusedPodGone, "the runner in pod %s/%s has exited: its token no longer acts for session %s", id.Session.Namespace, id.Pod, id.Session.Name)
	}
	sess := &v1.AgentSession{}
	if err := a.get(ctx, id.Session, sess); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, refusal(http.StatusForbidden, refusedSessionGone, "session %s does not exist any more", id.Session)
		}
		return nil, fmt.Errorf("getting session %s: %w", id.Session, err)
	}
	if sess.UID != id.UID {
		return nil, refusal(http.StatusForbidden, refusedSessionGone, "session %s was deleted and replaced", id.Session)
	}
	if sess.Status.PodUID == "" && a.live != nil {
		// The reconciler records the UID right after creating the pod; a cache
		// may not have seen that write yet. A recorded UID never changes (the
		// pod is never recreated), so a mismatch is refused without a live read
		// a forged pod could repeat at will.
		fresh := &v1.AgentSession{}
		if err := a.live.Get(ctx, id.Session, fresh); err == nil && fresh.UID == id.UID {
			sess = fresh
		}
	}
	if sess.Status.PodUID == "" || sess.Status.PodUID != string(id.PodUID) {
		return nil, refusal(http.StatusForbidden, refusedPodNotRecorded, "pod %s/%s (uid %s) is not the runner pod recorded in session %s status.podUID", id.Session.Namespace, id.Pod, id.PodUID, id.Session.Name)
	}
	if p := sess.Status.Phase; p.IsTerminal() && !reporting {
		return nil, refusal(http.StatusForbidden, refusedSessionEnded, "session %s has ended (phase %s): it can no longer call the model, send events, ask for approvals or finish", id.Session, p)
	}
	return sess, nil
}

// runnerExited reports whether the pod's runner container has terminated (or the whole pod
// has: Succeeded or Failed).
func runnerExited(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == contract.ContainerRunner && cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

// forgetPod drops every cached identity of a pod, so a deleted pod's token is
// reviewed again (and refused) rather than served from the cache.
func (a *authenticator) forgetPod(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.cache {
		if c.id.PodUID == uid {
			delete(a.cache, k)
		}
	}
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

// admittedKey holds, in a request's context, the session as admission read it.
type admittedKey struct{}

// admittedSession is the session as the request's admission read it (from the cache, a
// moment ago), so a handler need not read and copy it again.
func admittedSession(ctx context.Context) (*v1.AgentSession, bool) {
	sess, ok := ctx.Value(admittedKey{}).(*v1.AgentSession)
	return sess, ok && sess != nil
}

// authenticated wraps a handler with the checks every endpoint shares, in
// order: the body's declared size, authentication, admission (the pod is the
// session's recorded runner pod and the session has not ended or finished),
// and the session's in-flight bound. Then it caps the body at the endpoint's
// limit and calls h.
func (s *Server) authenticated(name string, h func(http.ResponseWriter, *http.Request, identity)) http.Handler {
	limit := bodyLimit(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			requestsTotal.WithLabelValues(name, strconv.Itoa(rec.status)).Inc()
			requestDuration.WithLabelValues(name).Observe(s.now().Sub(start).Seconds())
		}()
		if r.ContentLength > limit {
			refusedTotal.WithLabelValues(refusedBodyTooLarge).Inc()
			s.refuse(rec, name, http.StatusRequestEntityTooLarge, tooLargeMessage(name, limit))
			return
		}
		var sess *v1.AgentSession
		id, err := s.auth.authenticate(r.Context(), bearer(r))
		if err == nil {
			// The in-flight bounds come before admission, so they also bound the
			// apiserver reads admission makes for a session.
			bytes := r.ContentLength
			if bytes < 0 { // undeclared: as large as the endpoint takes
				bytes = limit
			}
			release, refused := s.acquire(id, bytes)
			if refused != nil {
				refusedTotal.WithLabelValues(refused.reason).Inc()
				rec.Header().Set("Retry-After", "1")
				s.refuse(rec, name, refused.status, refused.msg)
				return
			}
			defer release()
			if sess, err = s.auth.admit(r.Context(), id, name == "events" || name == "finish"); err == nil {
				err = s.notFinished(name, id, sess)
			}
		}
		if err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				log.FromContext(r.Context()).Error(err, "Authenticating runner")
				s.refuse(rec, name, http.StatusServiceUnavailable, "authentication unavailable: "+err.Error())
				return
			}
			refusedTotal.WithLabelValues(ae.reason).Inc()
			s.refuse(rec, name, ae.status, ae.msg)
			return
		}
		r.Body = http.MaxBytesReader(rec, r.Body, limit)
		ctx := context.WithValue(context.WithValue(r.Context(), identityKey{}, id), admittedKey{}, sess)
		h(rec, r.WithContext(ctx), id)
	})
}

// notFinished refuses every request of a session whose runner already
// finished (its transcript is archived): a second /finish is a conflict (409),
// anything else is forbidden. Both the session's status and this replica's
// memory count, so a status write the cache has not seen yet still counts.
func (s *Server) notFinished(handler string, id identity, sess *v1.AgentSession) error {
	finished := sess.Status.Transcript != nil
	s.mu.Lock()
	if ss, ok := s.sessions[id.UID]; ok {
		ss.mu.Lock()
		finished = finished || ss.finished
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	if !finished {
		return nil
	}
	if handler == "finish" {
		return refusal(http.StatusConflict, refusedFinished, "session %s already finished: its transcript is archived and cannot be replaced", id.Session)
	}
	return refusal(http.StatusForbidden, refusedFinished, "session %s already finished: it can no longer call the model, send events or ask for approvals", id.Session)
}

// inFlight is what one session's requests hold on this replica.
type inFlight struct {
	requests int
	bytes    int64
}

// acquire takes one of the session's in-flight slots and n bytes of request body, of
// the session's share and of the replica's; release gives them back. It refuses (429)
// a session at its bound, and (503) any session when the replica's bodies together are
// at theirs: both pass once requests in flight end.
func (s *Server) acquire(id identity, n int64) (release func(), refused *authError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.inflight[id.UID]
	switch {
	case held.requests >= s.cfg.MaxInFlightPerSession:
		return nil, &authError{http.StatusTooManyRequests, refusedInFlight,
			fmt.Sprintf("session %s already has %d requests in flight; retry later", id.Session, s.cfg.MaxInFlightPerSession)}
	case held.bytes+n > MaxRequestBody:
		return nil, &authError{http.StatusTooManyRequests, refusedInFlight,
			fmt.Sprintf("session %s already has %s of request bodies in flight, and this one (%s) would take it past %s; retry later", id.Session, display.Bytes(held.bytes), display.Bytes(n), display.Bytes(MaxRequestBody))}
	case s.bytesInFlight+n > s.cfg.MaxRequestBytesInFlight:
		return nil, &authError{http.StatusServiceUnavailable, refusedGatewayBusy,
			fmt.Sprintf("the gateway holds %s of request bodies, and this one (%s) would take it past its bound of %s; retry shortly", display.Bytes(s.bytesInFlight), display.Bytes(n), display.Bytes(s.cfg.MaxRequestBytesInFlight))}
	}
	s.inflight[id.UID] = inFlight{requests: held.requests + 1, bytes: held.bytes + n}
	s.bytesInFlight += n
	requestBytesInFlight.Add(float64(n))
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.bytesInFlight -= n
		requestBytesInFlight.Sub(float64(n))
		h := s.inflight[id.UID]
		if h.requests--; h.requests <= 0 {
			delete(s.inflight, id.UID)
			return
		}
		h.bytes -= n
		s.inflight[id.UID] = h
	}, nil
}

// refuse answers in the dialect the caller speaks: OpenAI-style for the proxy.
func (s *Server) refuse(w http.ResponseWriter, handler string, status int, msg string) {
	if handler == "chat" {
		typ := "invalid_request_error"
		switch status {
		case http.StatusUnauthorized:
			typ = "authentication_error"
		case http.StatusForbidden:
			typ = "permission_error"
		case http.StatusTooManyRequests:
			typ = "rate_limit_error"
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
