// Package controllers holds the AgentSession reconciler: it turns a session into an
// isolated runner pod with its NetworkPolicy, follows the pod to completion, enforces
// cancel and timeout, and deletes finished sessions after their TTL.
package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// FieldOwner is the field manager of the reconciler's writes.
const FieldOwner = client.FieldOwner("agentry-controller")

// Resolver resolves host names for NetworkPolicies.
type Resolver interface {
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
}

// AgentSessionReconciler reconciles AgentSessions.
type AgentSessionReconciler struct {
	client.Client
	// APIReader reads around the cache, to confirm a pod is really gone.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  record.EventRecorder
	Runner    RunnerConfig
	Network   NetworkConfig
	Resolver  Resolver
	Clock     clock.PassiveClock
	// MaxConcurrentReconciles bounds parallel reconciles.
	MaxConcurrentReconciles int
	// StuckPodGrace is how long past its deletion time a pod holding the runner pod's name,
	// which the session did not create, may stay terminating before the session gives up
	// on the name (default 30s): a finalizer someone put on it would hold it for ever.
	StuckPodGrace time.Duration

	// admissions serialises admission per operator, and remembers sessions admitted whose
	// pod is not yet visible in the cache, so parallel reconciles never overshoot a
	// namespace's concurrency limit (the Job controller's "expectations", in small).
	// Entries are dropped when the pod shows up in the cache, the session ends, or the
	// session is deleted (by name, which is all a reconcile of a deleted object has).
	admissionMu sync.Mutex
	admitted    map[types.UID]types.NamespacedName

	// gatewayIP is the gateway Service's ClusterIP, read once a minute rather than per pod.
	gatewayIP gatewayIPCache

	// lastWritten holds the reconciler's last status write to a session until the cache
	// shows it (see cacheBehind), or the session is deleted.
	writtenMu   sync.Mutex
	lastWritten map[types.UID]written

	// createdPods maps a session's UID to the runner pod this process created for it, until
	// the session is deleted: while status.podUID is not visible yet, a pod that is not in
	// here was not created by a recorded create, and is never adopted (see bindPod).
	podsMu      sync.Mutex
	createdPods map[types.UID]createdPod
}

type createdPod struct {
	session types.NamespacedName
	uid     types.UID
}

// forgetDeleted drops the admission record of a deleted session, so the map does not grow
// with sessions deleted between admission and their pod.
func (r *AgentSessionReconciler) forgetDeleted(name types.NamespacedName) {
	r.admissionMu.Lock()
	for uid, n := range r.admitted {
		if n == name {
			delete(r.admitted, uid)
		}
	}
	r.admissionMu.Unlock()
	r.writtenMu.Lock()
	for uid, w := range r.lastWritten {
		if w.name == name {
			delete(r.lastWritten, uid)
		}
	}
	r.writtenMu.Unlock()
	r.podsMu.Lock()
	defer r.podsMu.Unlock()
	for uid, c := range r.createdPods {
		if c.session == name {
			delete(r.createdPods, uid)
		}
	}
}

// scope is one reconcile's working state.
type scope struct {
	obj  *v1.AgentSession
	base *v1.AgentSession
	pod  *corev1.Pod
	now  time.Time
	// requeueAfter is the earliest deadline a phase asked to be woken for.
	requeueAfter time.Duration
	// hold stops the remaining phases: the session waits (queued, or for its provider).
	hold bool
	// settings are what admission decided about the pod; set when the session has no pod yet.
	settings *podSettings
	// resolved are the addresses the session's egress host names were pinned to, from the
	// NetworkPolicy: the pod's hostAliases carry the same ones.
	resolved map[string][]net.IP
	// netpol is the session's NetworkPolicy as this reconcile read or created it.
	netpol *networkingv1.NetworkPolicy
	// setupEgress is the AgentPolicies' setup egress as recorded on the NetworkPolicy at
	// session start (nil without spec.setup).
	setupEgress []v1.EgressRule
}

func (s *scope) wakeAt(d time.Duration) {
	if d > 0 && (s.requeueAfter == 0 || d < s.requeueAfter) {
		s.requeueAfter = d
	}
}

type phaseFunc func(ctx context.Context, s *scope) error

// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessions,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessions/finalizers,verbs=update
// +kubebuilder:rbac:groups=agentry.dev,resources=modelproviders;agentpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile moves one session towards its end.
func (r *AgentSessionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	obj := &v1.AgentSession{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetDeleted(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references delete the pod and policy
	}
	if r.cacheBehind(obj) {
		// The watch event of the reconciler's own last write is on its way and wakes it
		// again (a relist delivers it too): no requeue.
		return ctrl.Result{}, nil
	}
	s := &scope{obj: obj, base: obj.DeepCopy(), now: r.Clock.Now()}
	if obj.Status.Phase.IsTerminal() {
		// A terminal session never changes back and never gets a new pod.
		return r.reconcileFinished(ctx, s)
	}

	defer func() {
		if reterr == nil || errors.Is(reterr, reconcile.TerminalError(nil)) {
			s.obj.Status.ObservedGeneration = s.obj.Generation
		}
		reterr = errors.Join(reterr, r.applyStatus(ctx, s))
	}()

	phases := []phaseFunc{r.reconcileCancel, r.reconcileTimeout, r.reconcileAdmission, r.reconcileContinuation, r.ensureNetworkPolicy, r.ensurePod, r.narrowNetworkPolicy, r.observePod}
	for _, phase := range phases {
		if err := phase(ctx, s); err != nil {
			if s.obj.Status.Phase.IsTerminal() {
				r.recordFinish(s.obj)
			}
			return ctrl.Result{}, err
		}
		if s.obj.Status.Phase.IsTerminal() {
			r.recordFinish(s.obj)
			return r.requeueForTTL(s), nil
		}
		if s.hold {
			break
		}
	}
	return ctrl.Result{RequeueAfter: s.requeueAfter}, nil
}

// reconcileCancel stops the session when the user sets spec.cancel.
func (r *AgentSessionReconciler) reconcileCancel(ctx context.Context, s *scope) error {
	if !s.obj.Spec.Cancel {
		return nil
	}
	if err := r.deletePod(ctx, s.obj); err != nil {
		return err
	}
	finish(s.obj, v1.PhaseCancelled, v1.ReasonCancelled, "Cancelled by spec.cancel.", s.now)
	return nil
}

// reconcileTimeout ends the session when spec.limits.timeout has passed since the pod
// started (or since the pod's creation, for a pod that never starts).
func (r *AgentSessionReconciler) reconcileTimeout(ctx context.Context, s *scope) error {
	if s.obj.Spec.Limits.Timeout == nil {
		return nil
	}
	// The clock starts with the pod: time spent queued or waiting for a provider does not
	// count. A pod that never starts is timed from its own creation.
	if s.obj.Status.StartTime == nil && s.obj.Status.PodName == "" {
		return nil
	}
	// The pod is read only when its creation is the start, or once the deadline has
	// passed, not on every reconcile of a running session.
	var pod *corev1.Pod
	start := s.obj.Status.StartTime
	if start == nil {
		if pod = r.recordedPod(ctx, s.obj); pod == nil {
			return nil // the pod just created is not in the cache yet: timed once it is
		}
		start = &pod.CreationTimestamp // a pod that has not started: timed from its creation
	}
	deadline := start.Add(s.obj.Spec.Limits.Timeout.Duration)
	if s.now.Before(deadline) {
		s.wakeAt(deadline.Sub(s.now))
		return nil
	}
	if pod == nil {
		pod = r.recordedPod(ctx, s.obj)
	}
	if pod != nil && runnerEndedBy(pod, deadline) {
		return nil // it finished in time, seen late (a restart, a backed-up queue): observePod records how
	}
	if err := r.deletePod(ctx, s.obj); err != nil {
		return err
	}
	finish(s.obj, v1.PhaseFailed, v1.ReasonTimeout,
		fmt.Sprintf("The session ran past spec.limits.timeout (%s).", s.obj.Spec.Limits.Timeout.Duration), s.now)
	return nil
}

// recordedPod is the session's runner pod from the cache, when it is the one status
// records; nil otherwise.
func (r *AgentSessionReconciler) recordedPod(ctx context.Context, sess *v1.AgentSession) *corev1.Pod {
	if sess.Status.PodName == "" {
		return nil
	}
	pod := &corev1.Pod{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: sess.Namespace, Name: sess.Status.PodName}, pod); err != nil {
		return nil
	}
	if sess.Status.PodUID != "" && string(pod.UID) != sess.Status.PodUID {
		return nil
	}
	return pod
}

// runnerEndedBy reports whether the pod has ended and its runner container terminated
// before deadline.
func runnerEndedBy(pod *corev1.Pod, deadline time.Time) bool {
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; cs.Name == contract.ContainerRunner && t != nil && !t.FinishedAt.IsZero() {
			return t.FinishedAt.Time.Before(deadline)
		}
	}
	return false
}

// reconcileAdmission decides whether a session without a pod may start: its ModelProvider
// must exist and offer the model, the namespace's AgentPolicies must allow what it asks
// for, and the namespace must be under its concurrency limit.
func (r *AgentSessionReconciler) reconcileAdmission(ctx context.Context, s *scope) error {
	if s.obj.Status.PodName != "" {
		return nil // admitted before
	}
	var provider *v1.ModelProvider
	mp := &v1.ModelProvider{}
	if err := r.Get(ctx, client.ObjectKey{Name: s.obj.Spec.Model.Provider}, mp); err == nil {
		provider = mp
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ModelProvider %q: %w", s.obj.Spec.Model.Provider, err)
	}
	var policies v1.AgentPolicyList
	if err := r.List(ctx, &policies, client.InNamespace(s.obj.Namespace)); err != nil {
		return fmt.Errorf("listing AgentPolicies: %w", err)
	}
	siblings, err := admissionSiblings(ctx, r.Client, s.obj)
	if err != nil {
		return fmt.Errorf("listing sessions for admission: %w", err)
	}
	var secret *metav1.PartialObjectMetadata
	if ref := s.obj.Spec.Repository.CredentialsSecretRef; ref != nil {
		// Metadata only, around the cache: the controller never reads the Secret's data,
		// only whether its owner labelled it for sessions.
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: s.obj.Namespace, Name: ref.Name}, meta); err == nil {
			secret = meta
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading Secret %s: %w", ref.Name, err)
		}
	}

	r.admissionMu.Lock()
	defer r.admissionMu.Unlock()
	if r.admitted == nil {
		r.admitted = map[types.UID]types.NamespacedName{}
	}
	if siblings, err = r.withAdmitted(ctx, s.obj, siblings); err != nil {
		return err
	}
	a := admitSession(s.obj, provider, secret, policies.Items, siblings, r.Runner.Image)
	if _, ok := r.admitted[s.obj.UID]; ok && a.verdict == queue {
		a.verdict = admit // it holds its slot already
	}
	switch a.verdict {
	case reject:
		delete(r.admitted, s.obj.UID)
		finish(s.obj, v1.PhaseFailed, a.reason, a.message, s.now)
		// The spec is immutable: no retry can fix it.
		return reconcile.TerminalError(errors.New(a.message))
	case wait, queue:
		phase := v1.PhasePending
		if a.verdict == queue {
			phase = v1.PhaseQueued
		}
		if c := cond(s.obj, v1.ConditionSucceeded); c == nil || c.Message != a.message {
			eventType := corev1.EventTypeNormal
			if a.verdict == wait {
				eventType = corev1.EventTypeWarning
			}
			r.Recorder.Event(s.obj, eventType, string(phase), a.message)
		}
		s.obj.Status.Phase = phase
		setSucceeded(s.obj, phase, a.reason, a.message)
		s.hold = true
		s.wakeAt(30 * time.Second)
		return nil
	}
	instructions, err := resolveInstructions(ctx, r.APIReader, s.obj, policies.Items)
	if err != nil {
		var missing errInstructionsNotFound
		if !errors.As(err, &missing) {
			return err
		}
		delete(r.admitted, s.obj.UID)
		finish(s.obj, v1.PhaseFailed, v1.ReasonInstructionsNotFound, missing.msg+".", s.now)
		return reconcile.TerminalError(err)
	}
	a.pod.instructions = instructions
	a.pod.contextWindow = modelContextWindow(provider, a.model)
	r.admitted[s.obj.UID] = client.ObjectKeyFromObject(s.obj)
	s.settings = &a.pod
	if s.obj.Status.Resolved == nil {
		s.obj.Status.Resolved = &v1.Resolved{}
	}
	s.obj.Status.Resolved.Model = a.model
	return nil
}

// ensureNetworkPolicy creates the session's NetworkPolicy before its pod, so the pod never
// runs unconfined.
func (r *AgentSessionReconciler) ensureNetworkPolicy(ctx context.Context, s *scope) error {
	np := &networkingv1.NetworkPolicy{}
	key := client.ObjectKey{Namespace: s.obj.Namespace, Name: podName(s.obj)}
	err := r.Get(ctx, key, np)
	if err == nil {
		return r.useNetworkPolicy(s, np)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading NetworkPolicy: %w", err)
	}
	if s.obj.Spec.Setup != nil {
		var policies v1.AgentPolicyList
		if err := r.List(ctx, &policies, client.InNamespace(s.obj.Namespace)); err != nil {
			return fmt.Errorf("listing AgentPolicies: %w", err)
		}
		s.setupEgress = setupEgress(s.obj, policies.Items)
	}
	resolved := map[string][]net.IP{}
	for _, h := range append(egressHosts(s.obj), ruleHosts(s.setupEgress)...) {
		ips, err := r.Resolver.LookupIP(ctx, "ip", h.host)
		if err != nil {
			// Safer to start without that destination than to open egress wider.
			r.Recorder.Eventf(s.obj, corev1.EventTypeWarning, "EgressHostUnresolved",
				"Host %s could not be resolved; the runner pod cannot reach it: %v", h.host, err)
			continue
		}
		resolved[h.host] = ips
	}
	s.resolved = resolved
	np = buildSessionNetworkPolicy(s.obj, r.Network, resolved, s.setupEgress, phaseCheckout)
	if err := controllerutil.SetControllerReference(s.obj, np, r.Scheme); err != nil {
		return fmt.Errorf("owning NetworkPolicy: %w", err)
	}
	log.FromContext(ctx).Info("Creating NetworkPolicy", "NetworkPolicy", klog.KObj(np))
	if err := r.Create(ctx, np, FieldOwner); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating NetworkPolicy: %w", err)
		}
		// A stale cache, or a policy of that name the cache does not hold (it holds only
		// session-labelled ones): the apiserver says which.
		existing := &networkingv1.NetworkPolicy{}
		if err := r.APIReader.Get(ctx, key, existing); err != nil {
			return fmt.Errorf("reading NetworkPolicy %s: %w", key.Name, err)
		}
		return r.useNetworkPolicy(s, existing)
	}
	s.netpol = np
	return nil
}

// useNetworkPolicy takes the session's NetworkPolicy, or ends the session when a policy of
// that name belongs to something else: the pod is never created without its own policy,
// and nothing in a foreign policy (its recorded addresses, its setup egress) is trusted.
func (r *AgentSessionReconciler) useNetworkPolicy(s *scope, np *networkingv1.NetworkPolicy) error {
	if !metav1.IsControlledBy(np, s.obj) {
		r.nameInUse(s, v1.ReasonNetworkPolicyNameInUse, "NetworkPolicy", np.Name)
		return nil
	}
	s.netpol, s.resolved, s.setupEgress = np, resolvedFromPolicy(np), setupEgressFromPolicy(np)
	return nil
}

// narrowNetworkPolicy closes the session's egress phase by phase as the pod's init containers
// finish: after checkout to the setup phase (when the session has spec.setup: no repository
// host), then to the agent phase (the gateway and the AgentPolicy-allowed spec.network.egress
// destinations: no cluster DNS, no repository host, no setup egress). It records the phase on
// the policy, where the gateway looks before answering model calls, and only ever narrows.
func (r *AgentSessionReconciler) narrowNetworkPolicy(ctx context.Context, s *scope) error {
	if s.pod == nil {
		return nil
	}
	phase := networkPolicyPhase(s.pod)
	np := s.netpol
	if np == nil || phase == phaseCheckout || widerPhase(phase, networkPhase(np.Annotations[AnnotationEgressPhase])) {
		return nil // not there this reconcile, nothing to narrow yet, or a stale pod: never widen
	}
	want := buildSessionNetworkPolicy(s.obj, r.Network, s.resolved, s.setupEgress, phase)
	if equality.Semantic.DeepEqual(np.Spec, want.Spec) && np.Annotations[AnnotationEgressPhase] == string(phase) {
		return nil
	}
	np.Spec = want.Spec
	if np.Annotations == nil {
		np.Annotations = map[string]string{}
	}
	np.Annotations[AnnotationEgressPhase] = string(phase)
	if phase == phaseAgent {
		// The gateway holds model calls until a moment after this, for the network plugin.
		np.Annotations[AnnotationEgressPhaseSince] = s.now.UTC().Format(time.RFC3339Nano)
	}
	log.FromContext(ctx).Info("Narrowing NetworkPolicy", "NetworkPolicy", klog.KObj(np), "phase", phase)
	if err := r.Update(ctx, np, FieldOwner); err != nil {
		return fmt.Errorf("narrowing NetworkPolicy: %w", err)
	}
	r.Recorder.Event(s.obj, corev1.EventTypeNormal, "EgressNarrowed", narrowedMessage(phase))
	return nil
}

// gatewayClusterIP is the ClusterIP of the gateway Service when the gateway URL names one
// (NAME.NAMESPACE.svc...), for the pod's hostAliases; "" otherwise (an IP needs no alias).
func (r *AgentSessionReconciler) gatewayClusterIP(ctx context.Context) string {
	if r.Runner.GatewayClusterIP != "" {
		return r.Runner.GatewayClusterIP
	}
	u, err := url.Parse(r.Runner.GatewayURL)
	if err != nil {
		return ""
	}
	parts := strings.Split(u.Hostname(), ".")
	if len(parts) < 3 || parts[2] != "svc" || r.APIReader == nil {
		return ""
	}
	now := r.Clock.Now()
	if ip, ok := r.gatewayIP.get(now); ok {
		return ip
	}
	svc := &corev1.Service{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: parts[1], Name: parts[0]}, svc); err != nil {
		log.FromContext(ctx).Error(err, "Looking up the gateway Service for the runner's hostAliases")
		return ""
	}
	if ip := svc.Spec.ClusterIP; ip != corev1.ClusterIPNone {
		r.gatewayIP.put(ip, now)
		return ip
	}
	return ""
}

// gatewayTrust gives the runner pod a safe way to reach the gateway before it is created:
// the CA bundle copied into the session's namespace, or, for a plain-HTTP gateway, the
// namespace's explicit consent. It fails the session (false) when neither is possible.
func (r *AgentSessionReconciler) gatewayTrust(ctx context.Context, s *scope) (bool, error) {
	untrusted := func(msg string) (bool, error) {
		r.failSession(s, v1.ReasonGatewayUntrusted, msg)
		return false, nil
	}
	if name := r.Runner.GatewayCAConfigMap; name != "" {
		src := &corev1.ConfigMap{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: r.Network.GatewayNamespace, Name: name}, src); err != nil {
			return false, fmt.Errorf("reading the gateway CA bundle %s/%s (the manager publishes it as it starts): %w", r.Network.GatewayNamespace, name, err)
		}
		if _, err := ensureGatewayCACopy(ctx, r.Client, r.APIReader, src, s.obj.Namespace); err != nil {
			var foreign errForeignConfigMap
			if errors.As(err, &foreign) {
				return untrusted(err.Error())
			}
			return false, err
		}
		return true, nil
	}
	ns := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: s.obj.Namespace}, ns); err != nil {
		return false, fmt.Errorf("reading namespace %s: %w", s.obj.Namespace, err)
	}
	if ns.Labels[contract.LabelGatewayPlainHTTP] != "allowed" {
		return untrusted(fmt.Sprintf("The session gateway serves plain HTTP (the manager runs with --gateway-tls=none), and runner pods send their token to it only in namespaces labelled %s=allowed; namespace %s is not. Ask the platform team to label it, or to turn the gateway's TLS on.",
			contract.LabelGatewayPlainHTTP, s.obj.Namespace))
	}
	s.settings.plainHTTPGateway = true
	return true, nil
}

// failSession ends the session Failed for reason, and says why in a Warning event too.
func (r *AgentSessionReconciler) failSession(s *scope, reason, msg string) {
	r.Recorder.Event(s.obj, corev1.EventTypeWarning, reason, msg)
	finish(s.obj, v1.PhaseFailed, reason, msg, s.now)
}

// nameInUse ends a session whose runner pod or NetworkPolicy name is taken by an object it
// does not control (the cache only holds session-labelled ones, so it is usually found on
// create). The name is deterministic, so retrying cannot help, and adopting the object
// would run the session in a pod, or under a policy, someone else built.
func (r *AgentSessionReconciler) nameInUse(s *scope, reason, kind, name string) {
	r.failSession(s, reason, fmt.Sprintf("%s %s already exists and is not controlled by this session; delete it or recreate the session under another name.", kind, name))
}

// ensurePod creates the runner pod, or notices that it vanished.
func (r *AgentSessionReconciler) ensurePod(ctx context.Context, s *scope) error {
	key := client.ObjectKey{Namespace: s.obj.Namespace, Name: podName(s.obj)}
	pod := &corev1.Pod{}
	err := r.Get(ctx, key, pod)
	if err == nil {
		if !metav1.IsControlledBy(pod, s.obj) {
			r.nameInUse(s, v1.ReasonPodNameInUse, "Pod", key.Name)
			return nil
		}
		return r.bindPod(ctx, s, pod)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading runner pod: %w", err)
	}
	if s.obj.Status.PodName != "" {
		// The cache may simply lag behind our own create; ask the apiserver.
		if err := r.APIReader.Get(ctx, key, pod); err == nil {
			return r.bindPod(ctx, s, pod)
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading runner pod from the apiserver: %w", err)
		}
		finish(s.obj, v1.PhaseFailed, v1.ReasonPodDeleted, fmt.Sprintf("The runner pod %s was deleted before the session finished.", key.Name), s.now)
		return nil
	}
	if s.settings == nil {
		return errors.New("creating pod: the session was not admitted in this reconcile")
	}
	if ok, err := r.gatewayTrust(ctx, s); err != nil || !ok {
		return err
	}
	pod = buildRunnerPod(s.obj, r.Runner, *s.settings)
	// Once the agent phase closes DNS, the runner and the agent's tools resolve the gateway
	// and the allowed egress hosts from /etc/hosts.
	pod.Spec.HostAliases = runnerHostAliases(s.obj, r.Runner.GatewayURL, r.gatewayClusterIP(ctx), s.resolved)
	if err := controllerutil.SetControllerReference(s.obj, pod, r.Scheme); err != nil {
		return fmt.Errorf("owning runner pod: %w", err)
	}
	log.FromContext(ctx).Info("Creating Pod", "Pod", klog.KObj(pod))
	if err := r.Create(ctx, pod, FieldOwner); err != nil {
		if apierrors.IsAlreadyExists(err) {
			existing := &corev1.Pod{}
			if err := r.APIReader.Get(ctx, key, existing); err != nil {
				return fmt.Errorf("reading runner pod %s after AlreadyExists: %w", key.Name, err)
			}
			if !metav1.IsControlledBy(existing, s.obj) {
				r.nameInUse(s, v1.ReasonPodNameInUse, "Pod", key.Name)
				return nil
			}
			return r.bindPod(ctx, s, existing)
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			// Admission (Pod Security, quota, policy) refused the pod: retrying the same
			// pod cannot help, and the user must see why.
			finish(s.obj, v1.PhaseFailed, v1.ReasonPodFailed, "The runner pod was refused: "+err.Error(), s.now)
			r.Recorder.Eventf(s.obj, corev1.EventTypeWarning, "PodRefused", "The runner pod was refused: %v", err)
			return nil
		}
		return fmt.Errorf("creating pod: %w", err)
	}
	r.Recorder.Eventf(s.obj, corev1.EventTypeNormal, "PodCreated", "Created runner pod %s", pod.Name)
	r.podsMu.Lock()
	if r.createdPods == nil {
		r.createdPods = map[types.UID]createdPod{}
	}
	r.createdPods[s.obj.UID] = createdPod{session: client.ObjectKeyFromObject(s.obj), uid: pod.UID}
	r.podsMu.Unlock()
	s.obj.Status.PodName = pod.Name
	s.obj.Status.PodUID = string(pod.UID)
	if s.obj.Status.Phase == "" {
		s.obj.Status.Phase = v1.PhasePending
		setSucceeded(s.obj, v1.PhasePending, v1.ReasonPending, "Waiting for the runner pod to start.")
	}
	if s.obj.Status.Resolved == nil {
		s.obj.Status.Resolved = &v1.Resolved{}
	}
	s.obj.Status.Resolved.Image = agentImage(s.obj, r.Runner)
	s.pod = pod
	return nil
}

// bindPod takes the session's existing pod as its runner pod and records its UID in
// status.podUID, the one pod whose token the gateway accepts. Once recorded, the UID never
// changes: a pod of the same name with another UID is a replacement someone else made, and
// the session fails rather than trust it.
//
// Only a pod this manager created is bound. Name, labels and a controller reference are
// metadata anyone who may create pods in the namespace can write, for a session they can
// read, while it waits in the queue; such a pod, taken as the runner, would carry a token
// the gateway accepts as the session's. So a pod found with no UID recorded, neither in
// status (read from the apiserver, not the cache) nor in this process's own record of its
// creates, is deleted and the runner pod created anew. A create whose status write was lost
// in a crash costs the same: its pod is replaced (it cannot have acted: the gateway accepts
// no pod before its UID is recorded).
func (r *AgentSessionReconciler) bindPod(ctx context.Context, s *scope, pod *corev1.Pod) error {
	if s.obj.Status.PodUID == "" && !r.createdByUs(s.obj.UID, pod.UID) {
		fresh := &v1.AgentSession{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s.obj), fresh); err != nil {
			return fmt.Errorf("reading the session's recorded pod UID: %w", err)
		}
		if fresh.UID != s.obj.UID {
			return nil // deleted and recreated meanwhile: the next reconcile sees the new one
		}
		if fresh.Status.PodUID == "" {
			return r.replaceUnrecordedPod(ctx, s, pod)
		}
		s.obj.Status.PodUID = fresh.Status.PodUID
	}
	switch s.obj.Status.PodUID {
	case "":
		s.obj.Status.PodUID = string(pod.UID)
	case string(pod.UID):
	default:
		finish(s.obj, v1.PhaseFailed, v1.ReasonPodDeleted,
			fmt.Sprintf("The runner pod %s was replaced by another pod (UID %s, expected %s); the session does not trust it.", pod.Name, pod.UID, s.obj.Status.PodUID), s.now)
		return nil
	}
	s.pod = pod
	return nil
}

// createdByUs reports whether this process created pod uid as session's runner pod.
func (r *AgentSessionReconciler) createdByUs(session, uid types.UID) bool {
	r.podsMu.Lock()
	defer r.podsMu.Unlock()
	c, ok := r.createdPods[session]
	return ok && c.uid == uid
}

// replaceUnrecordedPod deletes a pod that carries the runner pod's name and the session's
// controller reference but was never recorded as its runner pod, and looks again shortly to
// create the real one.
func (r *AgentSessionReconciler) replaceUnrecordedPod(ctx context.Context, s *scope, pod *corev1.Pod) error {
	if dt := pod.DeletionTimestamp; dt != nil && s.now.After(dt.Add(cmp.Or(r.StuckPodGrace, 30*time.Second))) {
		// It will not go: the session cannot have its pod under that name.
		r.failSession(s, v1.ReasonPodNameInUse, fmt.Sprintf("Pod %s, which this session did not create, was deleted but is still terminating (finalizers: %s); the runner pod cannot be created under its name. Recreate the session under another name.",
			pod.Name, orNone(pod.Finalizers)))
		return nil
	}
	if pod.DeletionTimestamp.IsZero() {
		log.FromContext(ctx).Info("Deleting a pod never recorded as the runner pod", "Pod", klog.KObj(pod), "podUID", pod.UID)
		r.Recorder.Eventf(s.obj, corev1.EventTypeWarning, v1.ReasonUnrecordedPod,
			"Pod %s (UID %s) has the runner pod's name and owner but was not recorded as this session's runner pod; deleting it and creating the runner pod anew.", pod.Name, pod.UID)
		if err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting unrecorded pod %s: %w", pod.Name, err)
		}
	}
	s.wakeAt(time.Second)
	return nil
}

// observePod derives the session's status from its pod.
func (r *AgentSessionReconciler) observePod(ctx context.Context, s *scope) error {
	if s.pod == nil || s.pod.CreationTimestamp.IsZero() {
		return nil
	}
	s.obj.Status.PodName = s.pod.Name
	before := s.obj.Status.Phase
	applyOutcome(s.obj, outcomeFromPod(s.pod, s.now), s.now)
	if before != s.obj.Status.Phase && s.obj.Status.Phase == v1.PhaseRunning {
		r.Recorder.Eventf(s.obj, corev1.EventTypeNormal, "Running", "Runner pod %s is running", s.pod.Name)
	}
	if s.obj.Status.Phase == v1.PhasePending {
		// Image pull back-off turns into a failure after a grace period: look again then.
		s.wakeAt(imagePullGrace)
	}
	return nil
}

// reconcileFinished handles a terminal session: stop a pod that should not run, then
// delete the session when its TTL runs out.
func (r *AgentSessionReconciler) reconcileFinished(ctx context.Context, s *scope) (ctrl.Result, error) {
	// A pod that may still start is stopped: cancelled, timed out, or failed pulling its
	// image (a pull that succeeds later would run it outside the namespace's slots, under
	// the checkout phase's wider egress).
	if s.obj.Status.Phase == v1.PhaseCancelled || (s.obj.Status.Phase == v1.PhaseFailed && slices.Contains([]string{v1.ReasonTimeout, v1.ReasonImagePullFailed}, reason(s.obj))) {
		if err := r.deletePod(ctx, s.obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	res := r.requeueForTTL(s)
	if res.RequeueAfter > 0 || s.obj.Spec.TTLSecondsAfterFinished == nil || s.obj.Status.CompletionTime == nil {
		return res, nil
	}
	log.FromContext(ctx).Info("Deleting AgentSession after its TTL", "AgentSession", klog.KObj(s.obj))
	err := r.Delete(ctx, s.obj, client.PropagationPolicy("Background"), client.Preconditions{UID: &s.obj.UID})
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// requeueForTTL returns when a finished session's TTL runs out.
func (r *AgentSessionReconciler) requeueForTTL(s *scope) ctrl.Result {
	ttl := s.obj.Spec.TTLSecondsAfterFinished
	if ttl == nil || s.obj.Status.CompletionTime == nil {
		return ctrl.Result{}
	}
	expiry := s.obj.Status.CompletionTime.Add(time.Duration(*ttl) * time.Second)
	if d := expiry.Sub(s.now); d > 0 {
		return ctrl.Result{RequeueAfter: d}
	}
	if s.base != nil && !s.base.Status.Phase.IsTerminal() {
		// Finished in this reconcile: the deferred status patch lands first, and the TTL is
		// acted on at the next look, a second from now (not at once: that would race the patch).
		return ctrl.Result{RequeueAfter: time.Second}
	}
	return ctrl.Result{}
}

// deletePod stops the runner pod if it is still there; the runner gets its grace period to
// flush the transcript.
func (r *AgentSessionReconciler) deletePod(ctx context.Context, sess *v1.AgentSession) error {
	pod := &corev1.Pod{}
	key := client.ObjectKey{Namespace: sess.Namespace, Name: podName(sess)}
	if err := r.Get(ctx, key, pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(pod, sess) {
		return nil // a pod of that name that is not the session's is never the manager's to delete
	}
	if !pod.DeletionTimestamp.IsZero() || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	log.FromContext(ctx).Info("Deleting Pod", "Pod", klog.KObj(pod))
	if err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting pod: %w", err)
	}
	return nil
}

func (r *AgentSessionReconciler) recordFinish(s *v1.AgentSession) {
	eventType := corev1.EventTypeNormal
	if s.Status.Phase != v1.PhaseSucceeded {
		eventType = corev1.EventTypeWarning
	}
	msg := ""
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded); c != nil {
		msg = c.Message
	}
	r.Recorder.Event(s, eventType, reason(s), msg)
	sessionsFinished.WithLabelValues(string(s.Status.Phase), reason(s)).Inc()
}

// reason returns the Succeeded condition's reason.
func reason(s *v1.AgentSession) string {
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded); c != nil {
		return c.Reason
	}
	return ""
}

func (r *AgentSessionReconciler) queuedSiblings(ctx context.Context, o client.Object) []reconcile.Request {
	s, ok := o.(*v1.AgentSession)
	if !ok || !s.Status.Phase.IsTerminal() {
		return nil
	}
	var list v1.AgentSessionList
	if err := r.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingFields{indexAdmission: admissionWaiting}, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "Listing sessions to requeue", "Namespace", s.Namespace)
		return nil
	}
	var reqs []reconcile.Request
	for _, q := range list.Items {
		if q.Status.Phase == v1.PhaseQueued {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&q)})
		}
	}
	return reqs
}

func (r *AgentSessionReconciler) sessionsWithoutPod(ctx context.Context, _ client.Object) []reconcile.Request {
	var list v1.AgentSessionList
	if err := r.List(ctx, &list, client.MatchingFields{indexAdmission: admissionWaiting}, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "Listing sessions to requeue")
		return nil
	}
	var reqs []reconcile.Request
	for _, s := range list.Items {
		if s.Status.PodName == "" && !s.Status.Phase.IsTerminal() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
		}
	}
	return reqs
}

// SetupWithManager registers the reconciler: it watches sessions and the pods and
// NetworkPolicies they own.
func (r *AgentSessionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Resolver == nil {
		r.Resolver = net.DefaultResolver
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if err := AddIndexes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("adding field indexes: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.AgentSession{}, builder.WithPredicates(sessionChangePredicate())).
		Owns(&corev1.Pod{}, builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		Owns(&networkingv1.NetworkPolicy{}).
		// A finished session frees a slot: wake the sessions queued behind it.
		Watches(&v1.AgentSession{}, handler.EnqueueRequestsFromMapFunc(r.queuedSiblings), builder.WithPredicates(phaseChanged())).
		// A new or changed provider may unblock sessions waiting for it.
		Watches(&v1.ModelProvider{}, handler.EnqueueRequestsFromMapFunc(r.sessionsWithoutPod)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("agentsession").
		Complete(r)
}
