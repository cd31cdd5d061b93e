package controllers

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/testutil"
)

var env *controlplane.Env

func TestMain(m *testing.M) {
	controlplane.Main(m, func(e *controlplane.Env) error {
		env = e
		// The provider sessions name by default; tests of a missing provider use other names.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.Client.Create(ctx, &v1.ModelProvider{
			ObjectMeta: metav1.ObjectMeta{Name: "default"},
			Spec:       v1.ModelProviderSpec{BaseURL: "https://llm.example.com/v1", DefaultModel: "gpt-4.1", Models: []string{"gpt-4.1", "gpt-4.1-mini"}},
		}); err != nil {
			return err
		}
		// The operator namespace with the gateway CA bundle the manager publishes as it starts.
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
			return err
		}
		return env.Client.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: testCAConfigMap, Namespace: operatorNS, Labels: map[string]string{contract.LabelGatewayCA: contract.GatewayCASource}},
			Data:       map[string]string{contract.GatewayCAKey: testBundle},
		})
	})
}

const (
	operatorNS      = "agentry-system"
	testCAConfigMap = "agentry-gateway-ca"
	// testBundle stands for the PEM bundle: the controller copies it, never parses it.
	testBundle = "-----BEGIN CERTIFICATE-----\nMIIB(test bundle)\n-----END CERTIFICATE-----\n"
)

// staticResolver resolves host names from a table: tests must not depend on real DNS.
type staticResolver map[string][]net.IP

func (r staticResolver) LookupIP(_ context.Context, _, host string) ([]net.IP, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

var testResolver = staticResolver{"git.example.com": {net.ParseIP("192.0.2.10")}, "pkg.go.dev": {net.ParseIP("192.0.2.20")}}

// manager is one running instance of the operator, confined to one test namespace so
// tests run side by side without seeing each other's sessions.
type manager struct {
	cancel   context.CancelFunc
	done     chan error
	recorder *record.FakeRecorder
}

func startManager(t *testing.T, ns string) *manager {
	t.Helper()
	return startManagerWith(t, ns, nil)
}

// startManagerWith starts the manager with the reconciler changed by configure first.
func startManagerWith(t *testing.T, ns string, configure func(*AgentSessionReconciler)) *manager {
	t.Helper()
	opts := CacheOptions()
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}, operatorNS: {}}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  opts,
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(1000)
	r := &AgentSessionReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Recorder: rec,
		Runner:   testRunnerConfig,
		Network: NetworkConfig{
			GatewayNamespace: "agentry-system", GatewayPodLabels: map[string]string{"app.kubernetes.io/name": "agentry-manager"},
			GatewayPort: 8443, DNSNamespace: "kube-system", DNSPodLabels: map[string]string{"k8s-app": "kube-dns"},
		},
		Resolver:                testResolver,
		Clock:                   clock.RealClock{},
		MaxConcurrentReconciles: 4,
	}
	if configure != nil {
		configure(r)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if r.Runner.GatewayCAConfigMap != "" {
		if err := (&GatewayCAReconciler{Client: mgr.GetClient(), OperatorNamespace: operatorNS, Name: r.Runner.GatewayCAConfigMap}).SetupWithManager(mgr); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &manager{cancel: cancel, done: make(chan error, 1), recorder: rec}
	go func() { m.done <- mgr.Start(ctx) }()
	t.Cleanup(m.stop)
	return m
}

func (m *manager) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cancel = nil
}

// restrictedNamespace creates a namespace in which the apiserver's Pod Security admission
// rejects any pod that is not "restricted".
func restrictedNamespace(t *testing.T, ctx context.Context) string {
	t.Helper()
	ns, err := env.CreateNamespace(ctx, "sessions", map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it returns nil or the context ends; the last error is the
// failure message.
func eventually(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	testutil.Eventually(ctx, t, what, cond)
}

func getSession(ctx context.Context, s *v1.AgentSession) (*v1.AgentSession, error) {
	got := &v1.AgentSession{}
	err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), got)
	return got, err
}

func waitForPhase(t *testing.T, ctx context.Context, s *v1.AgentSession, phase v1.SessionPhase, reason string) *v1.AgentSession {
	t.Helper()
	var got *v1.AgentSession
	eventually(t, ctx, fmt.Sprintf("session %s to be %s/%s", s.Name, phase, reason), func() error {
		var err error
		if got, err = getSession(ctx, s); err != nil {
			return err
		}
		c := cond(got, v1.ConditionSucceeded)
		if got.Status.Phase != phase || (reason != "" && (c == nil || c.Reason != reason)) {
			return fmt.Errorf("phase %q, Succeeded condition %+v", got.Status.Phase, c)
		}
		return nil
	})
	return got
}

func waitForPod(t *testing.T, ctx context.Context, s *v1.AgentSession) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	eventually(t, ctx, "runner pod of "+s.Name, func() error {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: podName(s)}, pod)
	})
	return pod
}

// kubelet plays the kubelet's part: it writes pod status.
type kubelet struct{ t *testing.T }

func (k kubelet) update(ctx context.Context, pod *corev1.Pod, mutate func(*corev1.PodStatus)) {
	k.t.Helper()
	eventually(k.t, ctx, "pod status update", func() error {
		fresh := &corev1.Pod{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), fresh); err != nil {
			return err
		}
		mutate(&fresh.Status)
		return env.Client.Status().Update(ctx, fresh)
	})
}

func (k kubelet) run(ctx context.Context, pod *corev1.Pod, started time.Time) {
	k.update(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodRunning
		st.StartTime = &metav1.Time{Time: started}
		running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Time{Time: started}}}
		st.InitContainerStatuses = []corev1.ContainerStatus{
			terminated(contract.ContainerInstall, 0, "Completed", ""), terminated(contract.ContainerCheckout, 0, "Completed", ""),
			{Name: contract.ContainerAgent, Ready: true, Started: ptr.To(true), State: running},
		}
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: contract.ContainerRunner, Ready: true, State: running}}
	})
}

func (k kubelet) exit(ctx context.Context, pod *corev1.Pod, code int32, reason, message string) {
	k.update(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodSucceeded
		if code != 0 {
			st.Phase = corev1.PodFailed
		}
		if st.StartTime == nil {
			st.StartTime = &metav1.Time{Time: time.Now()}
		}
		st.ContainerStatuses = []corev1.ContainerStatus{terminated(contract.ContainerRunner, code, reason, message)}
		st.ContainerStatuses[0].State.Terminated.FinishedAt = metav1.Now()
	})
}

func podGone(ctx context.Context, s *v1.AgentSession) error {
	pod := &corev1.Pod{}
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: podName(s)}, pod)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	return fmt.Errorf("pod %s still exists", pod.Name)
}

// runManager runs a manager confined to ns (and cluster-scoped objects) with the controllers
// setup adds, until the test ends.
func runManager(t *testing.T, ns string, setup func(ctrl.Manager) error) {
	t.Helper()
	opts := CacheOptions()
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0", Cache: opts,
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// slotPolicy creates an AgentPolicy in ns that lets n sessions run at once.
func slotPolicy(t *testing.T, ctx context.Context, ns, name string, n int32) {
	t.Helper()
	if err := env.Client.Create(ctx, &v1.AgentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1.AgentPolicySpec{MaxConcurrentSessions: ptr.To(n)},
	}); err != nil {
		t.Fatal(err)
	}
}

// forgedRunnerPod creates, as a namespace user who may create pods would, a pod under s's
// runner pod name with its labels and controller reference, running image.
func forgedRunnerPod(t *testing.T, ctx context.Context, s *v1.AgentSession, image string, finalizers ...string) *corev1.Pod {
	t.Helper()
	forged := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName(s), Namespace: s.Namespace, Finalizers: finalizers, Labels: map[string]string{
			contract.LabelSession: s.Name, contract.LabelSessionUID: string(s.UID)}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: contract.ContainerRunner, Image: image, SecurityContext: restrictedContainerSecurity()}},
		},
	}
	if err := controllerutil.SetControllerReference(s, forged, env.Client.Scheme()); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, forged); err != nil {
		t.Fatal(err)
	}
	return forged
}
