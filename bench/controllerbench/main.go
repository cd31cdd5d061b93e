// Command controllerbench measures how fast the AgentSession controller turns N new
// sessions into N pods against a real kube-apiserver, and how many write requests it sends
// the apiserver per session — beside the Kubernetes Job controller doing the same for N
// Jobs in the same run, when a kube-controller-manager binary is given.
//
// Writes are counted from the apiserver's own audit log, by user agent, so both controllers
// are measured the same way.
//
//	go run ./bench/controllerbench -n 1000 [-kcm bin/k8s/1.37.2-linux-amd64/kube-controller-manager]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentryv1alpha1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/testutil"
)

const (
	agentryUA = "agentry-bench-controller"
	creatorUA = "bench-creator"
)

type nullResolver struct{}

func (nullResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return []net.IP{net.ParseIP("192.0.2.1")}, nil
}

func main() {
	n := flag.Int("n", 1000, "objects to create")
	workers := flag.Int("workers", 8, "AgentSession reconciles in parallel")
	kcm := flag.String("kcm", "", "kube-controller-manager binary; runs its Job controller as the peer")
	flag.Parse()
	ctrl.SetLogger(logr.Discard())
	if err := run(*n, *workers, *kcm); err != nil {
		fmt.Fprintln(os.Stderr, "controllerbench:", err)
		os.Exit(1)
	}
}

func run(n, workers int, kcm string) error {
	dir, err := os.MkdirTemp("", "controllerbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	policy := filepath.Join(dir, "audit-policy.yaml")
	auditLog := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policy, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete]
- level: None
`), 0o600); err != nil {
		return err
	}
	env, err := controlplane.StartWith(controlplane.Options{APIServerArgs: map[string]string{
		"audit-policy-file": policy, "audit-log-path": auditLog,
	}})
	if err != nil {
		return err
	}
	defer env.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	creatorCfg := rest.CopyConfig(env.Config)
	creatorCfg.UserAgent = creatorUA
	creator, err := client.New(creatorCfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}

	fmt.Printf("# %d objects, %s\n\n", n, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| controller | all pods exist after | pods/s | writes per object |")
	fmt.Println("| --- | --- | --- | --- |")

	// Agentry. Sessions name the "default" ModelProvider, which must exist for them to start.
	if err := creator.Create(ctx, &agentryv1alpha1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: agentryv1alpha1.ModelProviderSpec{BaseURL: "https://llm.example.com/v1", DefaultModel: "gpt-4.1"}}); err != nil {
		return err
	}
	stop, err := startAgentry(env, workers)
	if err != nil {
		return err
	}
	ns, err := env.CreateNamespace(ctx, "bench-agentry", nil)
	if err != nil {
		return err
	}
	elapsed, err := createAndWait(ctx, creator, ns, n, func(i int) client.Object {
		return testutil.Session(fmt.Sprintf("s-%05d", i), ns).Obj()
	})
	stop()
	if err != nil {
		return err
	}
	writes, err := countWrites(auditLog, agentryUA)
	if err != nil {
		return err
	}
	report("Agentry AgentSession", n, elapsed, writes)

	if kcm == "" {
		return nil
	}
	// The Job controller, from the same kube-apiserver release.
	stopKCM, err := startJobController(ctx, env, kcm, dir)
	if err != nil {
		return err
	}
	defer stopKCM()
	ns, err = env.CreateNamespace(ctx, "bench-jobs", nil)
	if err != nil {
		return err
	}
	elapsed, err = createAndWait(ctx, creator, ns, n, func(i int) client.Object {
		return &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("j-%05d", i), Namespace: ns},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
			}}},
		}
	})
	if err != nil {
		return err
	}
	writes, err = countWrites(auditLog, "kube-controller-manager")
	if err != nil {
		return err
	}
	report("Kubernetes Job (kube-controller-manager)", n, elapsed, writes)
	return nil
}

func report(name string, n int, elapsed time.Duration, writes map[string]int) {
	total := 0
	var parts []string
	for k, v := range writes {
		total += v
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(v)/float64(n)))
	}
	fmt.Printf("| %s | %.2fs | %.0f | %.2f (%s) |\n", name, elapsed.Seconds(), float64(n)/elapsed.Seconds(),
		float64(total)/float64(n), strings.Join(parts, ", "))
}

func startAgentry(env *controlplane.Env, workers int) (func(), error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.UserAgent = agentryUA
	// Both controllers get the same client rate limits (kube-controller-manager's flags below).
	cfg.QPS, cfg.Burst = 50, 100
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: controllers.CacheOptions(),
	})
	if err != nil {
		return nil, err
	}
	r := &controllers.AgentSessionReconciler{
		Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Recorder: record.NewFakeRecorder(100000),
		Runner: controllers.RunnerConfig{Image: "agentry/runner:bench", ImagePullPolicy: corev1.PullIfNotPresent,
			GatewayURL: "https://agentry-gateway.agentry-system.svc:8443", TokenExpirationSeconds: 3600},
		Network: controllers.NetworkConfig{GatewayNamespace: "agentry-system", GatewayPodLabels: map[string]string{"app": "gw"},
			GatewayPort: 8443, DNSNamespace: "kube-system", DNSPodLabels: map[string]string{"k8s-app": "kube-dns"}},
		Resolver: nullResolver{}, Clock: clock.RealClock{}, MaxConcurrentReconciles: workers,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() { cancel(); <-done }, nil
}

func startJobController(ctx context.Context, env *controlplane.Env, bin, dir string) (func(), error) {
	kubeconfig := filepath.Join(dir, "kcm.kubeconfig")
	c := clientcmdapi.NewConfig()
	c.Clusters["env"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	c.AuthInfos["env"] = &clientcmdapi.AuthInfo{ClientCertificateData: env.Config.CertData, ClientKeyData: env.Config.KeyData}
	c.Contexts["env"] = &clientcmdapi.Context{Cluster: "env", AuthInfo: "env"}
	c.CurrentContext = "env"
	if err := clientcmd.WriteToFile(*c, kubeconfig); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", kubeconfig, "--controllers=job", "--leader-elect=false",
		"--secure-port=0", "--concurrent-job-syncs=8",
		"--kube-api-qps=50", "--kube-api-burst=100")
	logf, err := os.Create(filepath.Join(dir, "kcm.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() }, nil
}

// createAndWait creates n objects from 32 goroutines and returns the time until n pods
// exist in the namespace.
func createAndWait(ctx context.Context, c client.Client, ns string, n int, obj func(int) client.Object) (time.Duration, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := c.Create(ctx, obj(i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	for {
		var pods metav1.PartialObjectMetadataList
		pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return 0, err
		}
		if len(pods.Items) >= n {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("only %d of %d pods after %s", len(pods.Items), n, time.Since(start))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countWrites counts successful write requests in the audit log by resource, for clients
// whose user agent starts with ua.
func countWrites(path, ua string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Verb      string `json:"verb"`
			UserAgent string `json:"userAgent"`
			ObjectRef struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(ev.UserAgent, ua) {
			continue
		}
		key := ev.Verb + " " + ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			key += "/" + ev.ObjectRef.Subresource
		}
		counts[key]++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(counts) == 0 {
		return nil, errors.New("no writes by " + ua + " in the audit log")
	}
	return counts, nil
}
