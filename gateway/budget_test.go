package gateway_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/gateway"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

type staticResolver struct{}

func (staticResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return []net.IP{net.ParseIP("192.0.2.10")}, nil
}

// startOperator runs the manager as cmd/main.go wires it, confined to one namespace: the
// reconciler (leader) and the gateway (every replica) sharing the manager's cache.
func startOperator(t *testing.T, ns string) *gw {
	t.Helper()
	opts := controllers.CacheOptions()
	// The session's namespace, and the operator's for the gateway CA bundle the reconciler
	// copies into it.
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}, operatorNS: {}}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: opts, Controller: config.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	r := &controllers.AgentSessionReconciler{
		Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Recorder: record.NewFakeRecorder(1000),
		Runner: controllers.RunnerConfig{Image: "agentry/runner:test", GatewayURL: url, TokenExpirationSeconds: 3600, GatewayCAConfigMap: "agentry-gateway-ca"},
		Network: controllers.NetworkConfig{GatewayNamespace: operatorNS, GatewayPodLabels: map[string]string{"app.kubernetes.io/name": "agentry-manager"},
			GatewayPort: 8443, DNSNamespace: "kube-system", DNSPodLabels: map[string]string{"k8s-app": "kube-dns"}},
		Resolver: staticResolver{}, Clock: clock.RealClock{}, MaxConcurrentReconciles: 2,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := gateway.New(ctx, gateway.Config{
		OperatorNamespace: operatorNS, StatusInterval: 200 * time.Millisecond, GetCertificate: certs.GetCertificate,
		S3: gateway.S3Config{Endpoint: "http://" + s3.Endpoint, Bucket: bucket, Prefix: "sessions", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey},
	}, mgr.GetClient(), mgr.GetAPIReader())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := (&gateway.Archiver{Gateway: srv, Grace: time.Second}).SetupWithManager(mgr); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := mgr.Add(&listenerRunnable{srv: srv, ln: ln}); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &gw{t: t, addr: ln.Addr().String(), URL: url, srv: srv}
}

// listenerRunnable serves the gateway on a listener the test chose; like the Server, it
// runs on every replica.
type listenerRunnable struct {
	srv *gateway.Server
	ln  net.Listener
}

func (l *listenerRunnable) Start(ctx context.Context) error { return l.srv.Serve(ctx, l.ln) }
func (l *listenerRunnable) NeedLeaderElection() bool        { return l.srv.NeedLeaderElection() }

func ptrTo[T any](v T) *T { return &v }

// kubeletRun and kubeletExit write pod status as the kubelet would.
func kubeletUpdate(t *testing.T, pod *corev1.Pod, mutate func(*corev1.PodStatus)) {
	t.Helper()
	eventually(t, 10*time.Second, "pod status update", func() bool {
		fresh := &corev1.Pod{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), fresh); err != nil {
			return false
		}
		mutate(&fresh.Status)
		return env.Client.Status().Update(context.Background(), fresh) == nil
	})
}

func kubeletRun(t *testing.T, pod *corev1.Pod) {
	kubeletUpdate(t, pod, func(st *corev1.PodStatus) {
		now := metav1.Now()
		st.Phase, st.StartTime = corev1.PodRunning, &now
		// The runner starts only after the init containers: the controller then narrows the
		// session's egress to the agent phase, which the gateway waits for.
		st.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.ContainerCheckout,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: now}}}}
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: contract.ContainerRunner, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
	})
}

func kubeletExit(t *testing.T, pod *corev1.Pod, code int32, message string) {
	kubeletUpdate(t, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodSucceeded
		if code != 0 {
			st.Phase = corev1.PodFailed
		}
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: contract.ContainerRunner, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Error", Message: message, FinishedAt: metav1.Now()}}}}
	})
}

func TestNamespaceBudgetStopsSessionMidRun(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	// A runner's prompt (system prompt, tool schemas) is some thousand tokens;
	// the gateway reserves its estimate before forwarding, so the numbers are realistic.
	usage := &scriptedllm.Usage{PromptTokens: 4000, CompletionTokens: 20}
	write := func(name string) scriptedllm.Step {
		st := scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": name, "content": name + "\n"}})
		st.Usage = usage
		return st
	}
	f := newFixture(t, write("a.txt"), write("b.txt"), write("never.txt"))
	policy := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "budget", Namespace: f.ns},
		Spec: v1.AgentPolicySpec{TokenBudget: &v1.TokenBudget{Tokens: 8040, Window: &metav1.Duration{Duration: 24 * time.Hour}}}}
	if err := env.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	g := startOperator(t, f.ns)
	s := f.session("spender")

	// The reconciler makes the pod; the "kubelet" starts it and mints its token.
	pod := &corev1.Pod{}
	eventually(t, 20*time.Second, "the reconciler to create the runner pod", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "spender-runner"}, pod) == nil
	})
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "--gateway "+g.URL) {
		t.Errorf("runner pod does not point the runner at the gateway: %s", args)
	}
	kubeletRun(t, pod)
	termination := filepath.Join(t.TempDir(), "termination-log")
	r := runnerFor(t, s, g, f.tokenFile(pod), "--stream=false", "--termination-message-path", termination)
	code := r.run(ctx)
	if code != int(contract.ExitBudgetExceeded) {
		t.Fatalf("runner exited %d, want %d (budget exceeded):\n%s", code, contract.ExitBudgetExceeded, r.stderr.String())
	}
	if n := len(f.llm.Requests()); n != 2 {
		t.Errorf("provider got %d calls, want 2: the third must be refused by the gateway", n)
	}
	msg, err := os.ReadFile(termination)
	if err != nil {
		t.Fatal(err)
	}
	kubeletExit(t, pod, int32(code), string(msg))

	var got *v1.AgentSession
	eventually(t, 20*time.Second, "the session to end Failed/BudgetExceeded and archived", func() bool {
		got = f.get(s)
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionSucceeded)
		a := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionArchived)
		return got.Status.Phase == v1.PhaseFailed && c != nil && c.Reason == v1.ReasonBudgetExceeded && a != nil && a.Status == metav1.ConditionTrue
	})
	st := got.Status
	if st.Transcript == nil || st.Patch == nil {
		t.Fatalf("transcript or patch not archived: %+v", st)
	}
	transcript, patch := objectBytes(t, st.Transcript.URI), objectBytes(t, st.Patch.URI)
	if sha(transcript) != st.Transcript.SHA256 || sha(patch) != st.Patch.SHA256 {
		t.Error("status sha256 does not match the stored objects")
	}
	if !strings.Contains(string(transcript), contract.ErrorCodeBudgetExceeded) || !strings.Contains(string(transcript), `"outcome":"BudgetExceeded"`) {
		t.Errorf("transcript does not record the refusal:\n%s", transcript)
	}
	if !strings.Contains(string(patch), "+a.txt") || !strings.Contains(string(patch), "+b.txt") || strings.Contains(string(patch), "never") {
		t.Errorf("patch = %s", patch)
	}
	if st.Usage == nil || st.Usage.TotalTokens != 8040 || st.Usage.PromptTokens != 8000 {
		t.Errorf("usage = %+v, want the 8040 tokens the provider reported", st.Usage)
	}
	if st.Result == nil || st.Result.ExitCode == nil || *st.Result.ExitCode != 4 || st.Result.FilesChanged != 2 {
		t.Errorf("result = %+v", st.Result)
	}

	// The budget is the namespace's: another session there is refused at its first call.
	f.session("second")
	otherPod := &corev1.Pod{}
	eventually(t, 20*time.Second, "the reconciler to create the second runner pod", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "second-runner"}, otherPod) == nil
	})
	codeHTTP, body := post(t, g.URL+contract.PathChatCompletions, f.token(contract.GatewayAudience, boundTo(otherPod)),
		`{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`)
	if codeHTTP != http.StatusTooManyRequests || !strings.Contains(body, `"code":"budget_exceeded"`) || !strings.Contains(body, "namespace") {
		t.Errorf("second session's call: %d %s, want 429 budget_exceeded naming the namespace budget", codeHTTP, body)
	}
	assertNoKey(t, r)
}

func TestSessionMaxTokensIsEnforcedByTheProxy(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t, scriptedllm.Step{Content: "first", Usage: &scriptedllm.Usage{PromptTokens: 90, CompletionTokens: 20}})
	g := startGateway(t)
	s := f.session("capped", func(s *v1.AgentSession) { s.Spec.Limits.MaxTokens = 100 })
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	chat := `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`
	// The session names its model; the pod cannot switch to a pricier one.
	wrong := strings.Replace(chat, "gpt-test", "gpt-expensive", 1)
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, wrong); code != http.StatusBadRequest || !strings.Contains(body, "model_not_found") {
		t.Errorf("call for another model: %d %s", code, body)
	}
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chat); code != http.StatusOK || !strings.Contains(body, "first") {
		t.Fatalf("first call: %d %s", code, body)
	}
	code, body := post(t, g.URL+contract.PathChatCompletions, tok, chat)
	if code != http.StatusTooManyRequests || !strings.Contains(body, `"code":"budget_exceeded"`) || !strings.Contains(body, "maxTokens") {
		t.Errorf("call past limits.maxTokens: %d %s", code, body)
	}
	if n := len(f.llm.Requests()); n != 1 {
		t.Errorf("provider got %d calls, want 1", n)
	}
	eventually(t, 10*time.Second, "status.usage to show the counted tokens", func() bool {
		u := f.get(s).Status.Usage
		return u != nil && u.TotalTokens == 110 && u.CompletionTokens == 20
	})
}
