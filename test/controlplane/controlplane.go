// Package controlplane starts a real kube-apiserver and etcd (built by hack/ into bin/) with
// Agentry's CRDs installed, for tests that need the genuine API machinery: validation,
// defaulting, admission, watches.
package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	agentryv1alpha1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// K8sVersion is the control-plane release hack/build-control-plane.sh builds.
const K8sVersion = "1.37.2"

// Env is a running control plane.
type Env struct {
	env *envtest.Environment
	// Config reaches the apiserver as a cluster admin.
	Config *rest.Config
	// Client is a controller-runtime client with Agentry's and Kubernetes' types.
	Client client.Client
	// Scheme holds Agentry's and Kubernetes' built-in types.
	Scheme *k8sruntime.Scheme
	// Kubeconfig is the path of a kubeconfig file for the real kubectl.
	Kubeconfig string
	dir        string
}

// RepoRoot returns the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns where the kube-apiserver and etcd binaries are: $KUBEBUILDER_ASSETS, or
// the directory hack/build-control-plane.sh fills.
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin", "k8s", K8sVersion+"-linux-amd64")
}

// Options adjust the control plane.
type Options struct {
	// APIServerArgs are extra kube-apiserver flags (name without dashes → value).
	APIServerArgs map[string]string
}

// Start starts etcd and kube-apiserver and installs the CRDs from config/crd/bases.
func Start() (*Env, error) { return StartWith(Options{}) }

// StartWith is Start with options.
func StartWith(opts Options) (*Env, error) {
	assets := AssetsDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("control-plane binary %s not found in %s: run 'make setup' first: %w", b, assets, err)
		}
	}
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := agentryv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	te := &envtest.Environment{
		Scheme:                   scheme,
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	te.ControlPlane.GetAPIServer().Configure().
		// Pod Security admission is on by default; make sure it stays on so namespaces
		// labelled enforce=restricted reject non-compliant pods just as a real cluster does.
		Append("enable-admission-plugins", "PodSecurity")
	for k, v := range opts.APIServerArgs {
		te.ControlPlane.GetAPIServer().Configure().Set(k, v)
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting control plane from %s: %w", assets, err)
	}
	// The apiserver serves many parallel test clients; the default rate limit would
	// throttle them into timeouts.
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, errors.Join(err, te.Stop())
	}
	dir, err := os.MkdirTemp("", "agentry-controlplane-")
	if err != nil {
		return nil, errors.Join(err, te.Stop())
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, te.KubeConfig, 0o600); err != nil {
		return nil, errors.Join(err, te.Stop())
	}
	return &Env{env: te, Config: cfg, Client: c, Scheme: scheme, Kubeconfig: kubeconfig, dir: dir}, nil
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	return errors.Join(err, os.RemoveAll(e.dir))
}

// Kubectl runs the machine's real kubectl against this control plane.
func (e *Env) Kubectl(ctx context.Context, stdin []byte, args ...string) (stdout, stderr string, err error) {
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		return "", "", fmt.Errorf("kubectl is not installed: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// CreateNamespace creates a namespace with a generated name and the given labels.
func (e *Env) CreateNamespace(ctx context.Context, prefix string, labels map[string]string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := e.Client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating namespace: %w", err)
	}
	return ns.Name, nil
}

// SetLogger sets controller-runtime's logger for a test binary: the managers the tests
// start log nothing, unless AGENTRY_TEST_LOGS=1 asks for their logs on stderr (a failure
// that needs explaining).
func SetLogger() {
	logs := io.Discard
	if os.Getenv("AGENTRY_TEST_LOGS") != "" {
		logs = os.Stderr
	}
	ctrllog.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
}

// Main is a package's TestMain: it starts a control plane, hands it to setup (which keeps
// it, and may create shared objects), runs the tests, stops the control plane and exits.
func Main(m *testing.M, setup func(*Env) error) {
	SetLogger()
	env, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := setup(env); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the control plane:", err)
	} else {
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping control plane:", err)
	}
	os.Exit(code)
}
