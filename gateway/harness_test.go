package gateway_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/gateway"
	"github.com/agentry-dev/agentry/gateway/servingcert"
	"github.com/agentry-dev/agentry/runner/cli"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/s3server"
	"github.com/agentry-dev/agentry/test/scriptedllm"
	"github.com/agentry-dev/agentry/test/testutil"
)

const (
	operatorNS  = "agentry-system"
	providerKey = "sk-provider-7f3c9a-DO-NOT-LEAK"
	bucket      = "agentry"
)

var (
	// certs is the gateway's serving certificate source, as the manager runs it (managed
	// mode); caFile is the bundle it published, as a runner pod mounts it, and gwClient
	// trusts only that bundle. Every gateway in these tests serves HTTPS.
	certs    *servingcert.Authority
	caFile   string
	gwClient *http.Client

	env    *controlplane.Env
	s3     *s3server.Server
	kube   *kubernetes.Clientset
	s3c    *minio.Client
	s3Lock sync.RWMutex // fault tests stop the shared S3 server; others wait
)

func TestMain(m *testing.M) {
	cli.ServeExecutorIfChild() // the runner in these tests starts this binary as its tool executor
	os.Exit(run(m))
}

func run(m *testing.M) int {
	controlplane.SetLogger()
	var err error
	// Missing binaries fail the package: a skipped integration test must not look like a pass.
	if env, err = controlplane.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	dir, err := os.MkdirTemp("", "gateway-s3-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if s3, err = s3server.Start(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s3.Stop()
	ctx := context.Background()
	if s3c, err = minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, "")}); err == nil {
		err = s3c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	}
	if err == nil {
		kube, err = kubernetes.NewForConfig(env.Config)
	}
	if err == nil {
		err = env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}})
	}
	if err == nil {
		err = env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm-key", Namespace: operatorNS},
			Data: map[string][]byte{"apiKey": []byte(providerKey)}})
	}
	if err == nil {
		err = setUpTLS(ctx, dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// setUpTLS gives the tests' gateways a certificate for 127.0.0.1 from a CA kept in the
// test apiserver, and a client and a bundle file that trust only that CA.
func setUpTLS(ctx context.Context, dir string) error {
	certs = &servingcert.Authority{
		Client: env.Client, Namespace: operatorNS, SecretName: "agentry-gateway-ca",
		Bundle:   servingcert.Publisher{Client: env.Client, Namespace: operatorNS, Name: "agentry-gateway-ca"},
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if err := certs.Sync(ctx); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: "agentry-gateway-ca"}, cm); err != nil {
		return err
	}
	caFile = filepath.Join(dir, "gateway-ca.crt")
	if err := os.WriteFile(caFile, []byte(cm.Data[contract.GatewayCAKey]), 0o600); err != nil {
		return err
	}
	tr, err := gatewaytls.Transport(caFile)
	if err != nil {
		return err
	}
	gwClient = &http.Client{Transport: tr}
	return nil
}

// gw is a gateway served on a fixed address, restartable.
type gw struct {
	t      *testing.T
	addr   string
	URL    string
	srv    *gateway.Server
	cancel context.CancelFunc
	done   chan error
	// client is the replica's apiserver client (env.Client when nil).
	client client.Client
	// statusInterval overrides the status coalescing interval (200ms when zero).
	statusInterval time.Duration
	// maxRequestBytes overrides Config.MaxRequestBytesInFlight (the default when zero).
	maxRequestBytes int64
}

func startGateway(t *testing.T) *gw {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, addr: ln.Addr().String(), URL: "https://" + ln.Addr().String()}
	g.serve(ln)
	t.Cleanup(g.stop)
	return g
}

func (g *gw) serve(ln net.Listener) {
	g.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := gateway.New(ctx, gateway.Config{
		OperatorNamespace:  operatorNS,
		S3:                 gateway.S3Config{Endpoint: "http://" + s3.Endpoint, Bucket: bucket, Prefix: "sessions", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, OpTimeout: 3 * time.Second},
		StatusInterval:     cmp.Or(g.statusInterval, 200*time.Millisecond),
		ApprovalPollWindow: 2 * time.Second,
		ShutdownTimeout:    300 * time.Millisecond,
		GetCertificate:     certs.GetCertificate,

		MaxRequestBytesInFlight: g.maxRequestBytes,
	}, g.apiClient(), g.apiClient())
	if err != nil {
		cancel()
		g.t.Fatal(err)
	}
	g.srv, g.cancel, g.done = srv, cancel, make(chan error, 1)
	go func() { g.done <- srv.Serve(ctx, ln) }()
	srv.Addr()
}

func (g *gw) apiClient() client.Client {
	if g.client != nil {
		return g.client
	}
	return env.Client
}

func (g *gw) stop() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	<-g.done
	g.cancel = nil
}

// restart stops the gateway (all in-memory state is lost) and starts a new one on the same address.
func (g *gw) restart() {
	g.t.Helper()
	g.stop()
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.serve(ln)
}

// fixture is a namespace with a provider pointing at a scripted model.
type fixture struct {
	t        *testing.T
	ns       string
	provider string
	llm      *scriptedllm.Server
}

func newFixture(t *testing.T, steps ...scriptedllm.Step) *fixture {
	t.Helper()
	ctx := context.Background()
	ns, err := env.CreateNamespace(ctx, "gw", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	llm := scriptedllm.New(steps...)
	t.Cleanup(llm.Close)
	llm.RequireKey(providerKey)
	prov := &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1.ModelProviderSpec{
		BaseURL: llm.URL, APIKeySecretRef: &v1.SecretKeyRef{Name: "llm-key", Key: "apiKey"},
	}}
	if err := env.Client.Create(ctx, prov); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), prov) })
	return &fixture{t: t, ns: ns, provider: ns, llm: llm}
}

// session creates an AgentSession as a user would.
func (f *fixture) session(name string, mutate ...func(*v1.AgentSession)) *v1.AgentSession {
	f.t.Helper()
	s := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}, Spec: v1.AgentSessionSpec{
		Task:       "Add a greeting file.",
		Repository: v1.RepositorySpec{URL: "https://git.example/org/repo.git"},
		Model:      v1.ModelSpec{Provider: f.provider, Name: "gpt-test"},
	}}
	for _, m := range mutate {
		m(s)
	}
	if err := env.Client.Create(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// pod creates a runner pod for a session as the reconciler would: session-uid label and
// controller owner reference. labelUID and owner override them, to forge a pod.
func (f *fixture) pod(name string, labelUID types.UID, owner *v1.AgentSession) *corev1.Pod {
	f.t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: map[string]string{}},
		Spec: corev1.PodSpec{ServiceAccountName: "default", AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: contract.ContainerAgent, Image: "runner"}}}}
	if labelUID != "" {
		p.Labels[contract.LabelSessionUID] = string(labelUID)
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "AgentSession", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}
	}
	if err := env.Client.Create(context.Background(), p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// runnerPod is the usual case: a pod that belongs to s, recorded in its status.podUID as
// the reconciler records the pod it created.
func (f *fixture) runnerPod(s *v1.AgentSession) *corev1.Pod {
	f.t.Helper()
	p := f.pod(s.Name+"-runner", s.UID, s)
	f.recordPod(s, p)
	return p
}

// recordPod writes status.podUID as the reconciler does after creating the pod.
func (f *fixture) recordPod(s *v1.AgentSession, p *corev1.Pod) {
	f.t.Helper()
	f.setStatus(s, fmt.Sprintf(`{"status":{"podName":%q,"podUID":%q}}`, p.Name, p.UID))
}

// setStatus merge-patches the session's status as the reconciler would.
func (f *fixture) setStatus(s *v1.AgentSession, patch string) {
	f.t.Helper()
	obj := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}}
	if err := env.Client.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		f.t.Fatalf("writing status of %s as the reconciler: %v", s.Name, err)
	}
}

// token mints a token with the TokenRequest API, as the kubelet does for the projected volume.
func (f *fixture) token(audience string, bound *authnv1.BoundObjectReference) string {
	f.t.Helper()
	tr, err := kube.CoreV1().ServiceAccounts(f.ns).CreateToken(context.Background(), "default", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600), BoundObjectRef: bound,
	}}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("TokenRequest: %v", err)
	}
	return tr.Status.Token
}

func boundTo(p *corev1.Pod) *authnv1.BoundObjectReference {
	return &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}
}

// tokenFile writes the pod's gateway token where the runner reads it.
func (f *fixture) tokenFile(p *corev1.Pod) string {
	f.t.Helper()
	path := filepath.Join(f.t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(f.token(contract.GatewayAudience, boundTo(p))), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return path
}

func (f *fixture) get(s *v1.AgentSession) *v1.AgentSession {
	f.t.Helper()
	out := &v1.AgentSession{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(s), out); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// newRepo makes a git checkout with one commit, the pod's /workspace.
func newRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# demo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("README.md"); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "T", Email: "t@example.com", When: time.Unix(1700000000, 0)}
	if _, err := wt.Commit("init", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runner is one runner process's inputs and outputs.
type runner struct {
	args       []string
	env        map[string]string
	workspace  string
	transcript string
	stderr     strings.Builder
	code       int
}

// runnerFor prepares the arguments the pod builder gives the agent container, with the
// gateway at g and the token at tokenPath.
func runnerFor(t *testing.T, s *v1.AgentSession, g *gw, tokenPath string, extra ...string) *runner {
	r := &runner{workspace: newRepo(t), transcript: t.TempDir(), env: map[string]string{"HOME": t.TempDir()}}
	r.args = append([]string{"run", "--workspace", r.workspace, "--task", s.Spec.Task, "--session", s.Namespace + "/" + s.Name,
		"--model", s.Spec.Model.Name, "--base-url", g.URL + "/v1", "--api-key-file", tokenPath, "--gateway", g.URL, "--gateway-ca-file", caFile,
		"--transcript-dir", r.transcript, "--approval-bash", "Allow", "--quiet"}, extra...)
	return r
}

func (r *runner) run(ctx context.Context) int {
	r.code = cli.Run(ctx, r.args, cli.IO{In: strings.NewReader(""), Out: io.Discard, Err: &lockedWriter{b: &r.stderr}, Getenv: func(k string) string { return r.env[k] }})
	return r.code
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func objectBytes(t *testing.T, uri string) []byte {
	t.Helper()
	key, ok := strings.CutPrefix(uri, "s3://"+bucket+"/")
	if !ok {
		t.Fatalf("URI %q is not in bucket %s", uri, bucket)
	}
	obj, err := s3c.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %s: %v", uri, err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// post sends a raw gateway request with a bearer token.
func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Close = true // never reuse a connection to an earlier test's gateway on a recycled port
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := gwClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Within(t, timeout, what, testutil.Holds(cond))
}

func minioPrefix(p string) minio.ListObjectsOptions {
	return minio.ListObjectsOptions{Prefix: p, Recursive: true}
}
