package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentryv1alpha1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/bench/internal/audit"
	"github.com/agentry-dev/agentry/bench/internal/proc"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/testutil"
)

// User agents, by which the audit log tells the clients apart.
const (
	agentryUA  = "agentry-bench-controller"
	creatorUA  = "bench-creator"
	rawUA      = "bench-raw-pods"
	observerUA = "bench-observer"
	kcmUA      = "kube-controller-manager"

	// gatewayNS holds what a default install has there: the gateway CA bundle the controller
	// copies into session namespaces, and the gateway Service.
	gatewayNS = "agentry-system"
	caName    = "agentry-gateway-ca"
)

// phase is one controller's run: n objects in, n pods out.
type phase struct {
	name    string
	n       int
	elapsed time.Duration
	// inputs is when the last of the n objects (sessions, Jobs; pods for W) was created.
	inputs time.Duration
	// created holds, for each pod, when the observer's watch saw it, from the phase's start.
	created   []time.Duration
	writes    map[string]int
	conflicts int
	// controlPlane is the CPU kube-apiserver and etcd used during the phase.
	controlPlane time.Duration
	// noPods marks a phase that creates its objects and nothing else (no controller).
	noPods bool
}

// cpuPerObject is the control plane's CPU per object of the phase.
func (p *phase) cpuPerObject() time.Duration { return p.controlPlane / time.Duration(p.n) }

func (p *phase) podsPerSec() float64 { return float64(p.n) / p.elapsed.Seconds() }

func (p *phase) writesPerObject() float64 {
	total := 0
	for _, v := range p.writes {
		total += v
	}
	return float64(total) / float64(p.n)
}

type nullResolver struct{}

func (nullResolver) LookupIP(context.Context, string, string) ([]net.IP, error) {
	return []net.IP{net.ParseIP("192.0.2.1")}, nil
}

// bench is one run's shared state.
type bench struct {
	o        options
	env      *controlplane.Env
	dir      string
	auditLog string
	creator  client.Client
	observer metadata.Interface
}

func runThroughput(o options) error {
	b, err := startBench(o)
	if err != nil {
		return err
	}
	defer b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := b.install(ctx); err != nil {
		return err
	}

	stopAgentry, err := b.startAgentry()
	if err != nil {
		return err
	}
	defer func() { stopAgentry() }()
	// One session, whose runner pod the raw client copies: W is measured with the very pods
	// the controller creates.
	template, err := b.templatePod(ctx)
	if err != nil {
		return err
	}

	var phases []*phase
	raw, err := b.runPhase(ctx, "W: raw pod creates", rawUA, "bench-raw", nil, func(c client.Client, ns string, i int) client.Object {
		p := template.DeepCopy()
		p.Name, p.Namespace = fmt.Sprintf("p-%05d", i), ns
		return p
	})
	if err != nil {
		return err
	}
	phases = append(phases, raw)

	stopProfile, err := startProfile(o.cpuprofile)
	if err != nil {
		return err
	}
	agentry, err := b.runPhase(ctx, "Agentry AgentSession", agentryUA, "bench-agentry", nil, func(_ client.Client, ns string, i int) client.Object {
		return testutil.Session(fmt.Sprintf("s-%05d", i), ns).Obj()
	})
	stopProfile()
	if err != nil {
		return err
	}
	phases = append(phases, agentry)
	fmt.Fprintln(os.Stderr, "Agentry controller:", reconcileStats())
	stopAgentry()
	stopAgentry = func() {}
	// What the sessions alone cost, with no controller: the floor under the Agentry phase.
	alone, err := b.createPhase(ctx, "AgentSession creates alone (no controller)", "bench-sessions", func(_ client.Client, ns string, i int) client.Object {
		return testutil.Session(fmt.Sprintf("s-%05d", i), ns).Obj()
	})
	if err != nil {
		return err
	}
	phases = append(phases, alone)

	if o.kcm != "" {
		stopKCM, err := b.startJobController(ctx)
		if err != nil {
			return err
		}
		defer stopKCM()
		jobs, err := b.runPhase(ctx, "Kubernetes Job (kube-controller-manager)", kcmUA, "bench-jobs", nil, func(_ client.Client, ns string, i int) client.Object {
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
		phases = append(phases, jobs)
	}
	report(o, phases)
	if o.png != "" {
		return chart(o.png, phases)
	}
	return nil
}

func startBench(o options) (*bench, error) {
	dir, err := os.MkdirTemp("", "controllerbench-")
	if err != nil {
		return nil, err
	}
	env, auditLog, err := audit.Start(dir)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	b := &bench{o: o, env: env, dir: dir, auditLog: auditLog}
	creatorCfg := rest.CopyConfig(env.Config)
	creatorCfg.UserAgent, creatorCfg.QPS = creatorUA, -1
	if b.creator, err = client.New(creatorCfg, client.Options{Scheme: env.Scheme}); err != nil {
		return nil, errors.Join(err, b.stop())
	}
	observerCfg := rest.CopyConfig(env.Config)
	observerCfg.UserAgent, observerCfg.QPS = observerUA, -1
	if b.observer, err = metadata.NewForConfig(observerCfg); err != nil {
		return nil, errors.Join(err, b.stop())
	}
	return b, nil
}

func (b *bench) stop() error {
	err := b.env.Stop()
	if b.o.keep {
		fmt.Fprintln(os.Stderr, "audit log and kube-controller-manager log kept in", b.dir)
		return err
	}
	return errors.Join(err, os.RemoveAll(b.dir))
}

// clientConfig is a client configuration with the manager's rate limits.
func (b *bench) clientConfig(ua string) *rest.Config {
	cfg := rest.CopyConfig(b.env.Config)
	cfg.UserAgent = ua
	cfg.QPS, cfg.Burst = float32(b.o.qps), b.o.burst
	return cfg
}

// install creates what a default install has: the "default" ModelProvider the sessions name,
// the gateway CA bundle and the gateway Service (the controller reads its ClusterIP for the
// runner pods' hostAliases).
func (b *bench) install(ctx context.Context) error {
	objs := []client.Object{
		&agentryv1alpha1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: "default"},
			Spec: agentryv1alpha1.ModelProviderSpec{BaseURL: "https://llm.example.com/v1", DefaultModel: "gpt-4.1"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: gatewayNS}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNS, Name: caName,
			Labels: map[string]string{contract.LabelGatewayCA: contract.GatewayCASource}},
			Data: map[string]string{contract.GatewayCAKey: "-----BEGIN CERTIFICATE-----\nbench\n-----END CERTIFICATE-----\n"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: gatewayNS, Name: "agentry-gateway"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8443}}, Selector: map[string]string{"app.kubernetes.io/name": "agentry-manager"}}},
	}
	for _, o := range objs {
		if err := b.creator.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// startAgentry runs the AgentSession controller as the manager does (cmd/main.go): its
// client rate limits, its cache options, its worker count, the managed-TLS gateway.
func (b *bench) startAgentry() (func(), error) {
	mgr, err := ctrl.NewManager(b.clientConfig(agentryUA), ctrl.Options{
		Scheme: b.env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: controllers.CacheOptions(),
	})
	if err != nil {
		return nil, err
	}
	r := &controllers.AgentSessionReconciler{
		Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Recorder: record.NewFakeRecorder(100000),
		Runner: controllers.RunnerConfig{Image: "agentry/runner:bench", ImagePullPolicy: corev1.PullIfNotPresent,
			GatewayURL: "https://agentry-gateway.agentry-system.svc:8443", TokenExpirationSeconds: 3600,
			GatewayCAConfigMap: caName},
		Network: controllers.NetworkConfig{GatewayNamespace: gatewayNS, GatewayPodLabels: map[string]string{"app.kubernetes.io/name": "agentry-manager"},
			GatewayPort: 8443, DNSNamespace: "kube-system", DNSPodLabels: map[string]string{"k8s-app": "kube-dns"}},
		Resolver: nullResolver{}, Clock: clock.RealClock{}, MaxConcurrentReconciles: b.o.workers,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() { cancel(); <-done }, nil
}

// templatePod has the controller start one session and returns its runner pod, stripped of
// what ties it to the session.
func (b *bench) templatePod(ctx context.Context) (*corev1.Pod, error) {
	ns, err := b.env.CreateNamespace(ctx, "bench-template", nil)
	if err != nil {
		return nil, err
	}
	s := testutil.Session("template", ns).Obj()
	if err := b.creator.Create(ctx, s); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = testutil.Poll(wctx, func() error {
		return b.creator.Get(ctx, client.ObjectKey{Namespace: ns, Name: "template-runner"}, pod)
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the template session's runner pod: %w", err)
	}
	return &corev1.Pod{Spec: pod.Spec}, nil
}

// runPhase creates n objects in a new namespace from 32 goroutines (the raw phase with the
// manager's client, the others with the creator) and returns when the observer has seen n
// pods there, with the writes the controller (user agent ua) sent meanwhile.
func (b *bench) runPhase(ctx context.Context, name, ua, prefix string, labels map[string]string, obj func(client.Client, string, int) client.Object) (*phase, error) {
	ns, err := b.env.CreateNamespace(ctx, prefix, labels)
	if err != nil {
		return nil, err
	}
	c := b.creator
	if ua == rawUA {
		if c, err = client.New(b.clientConfig(rawUA), client.Options{Scheme: b.env.Scheme}); err != nil {
			return nil, err
		}
	}
	n := b.o.n
	before, before409, err := countWrites(b.auditLog, ua)
	if err != nil {
		return nil, err
	}
	seen, err := b.watchPods(ctx, ns, n)
	if err != nil {
		return nil, err
	}
	profiled := b.profileAPIServer(ctx, prefix)
	cpu0, err := controlPlaneCPU()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := createAll(ctx, c, ns, n, obj); err != nil {
		return nil, err
	}
	createdAll := time.Since(start)
	var stamps []time.Time
	select {
	case stamps = <-seen:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: not all %d pods appeared: %w", name, n, ctx.Err())
	}
	if err := <-profiled; err != nil {
		return nil, err
	}
	p := &phase{name: name, n: n, inputs: createdAll}
	for _, t := range stamps {
		p.created = append(p.created, t.Sub(start))
	}
	sort.Slice(p.created, func(i, j int) bool { return p.created[i] < p.created[j] })
	p.elapsed = p.created[len(p.created)-1]
	cpu1, err := controlPlaneCPU()
	if err != nil {
		return nil, err
	}
	p.controlPlane = cpu1 - cpu0
	after, after409, err := countWrites(b.auditLog, ua)
	if err != nil {
		return nil, err
	}
	p.writes, p.conflicts = writesSince(before, after), after409-before409
	if len(p.writes) == 0 {
		return nil, fmt.Errorf("%s: no writes by %s in the audit log", name, ua)
	}
	return p, nil
}

func createAll(ctx context.Context, c client.Client, ns string, n int, obj func(client.Client, string, int) client.Object) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := c.Create(ctx, obj(c, ns, i)); err != nil {
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
		return fmt.Errorf("creating: %w", err)
	}
	return nil
}

// watchPods watches the pods of ns (metadata only) and sends, once n distinct pods have
// appeared, when each was first seen. The watch is established when it returns.
func (b *bench) watchPods(ctx context.Context, ns string, n int) (<-chan []time.Time, error) {
	pods := b.observer.Resource(corev1.SchemeGroupVersion.WithResource("pods")).Namespace(ns)
	w, err := pods.Watch(ctx, metav1.ListOptions{AllowWatchBookmarks: true})
	if err != nil {
		return nil, fmt.Errorf("watching pods in %s: %w", ns, err)
	}
	out := make(chan []time.Time, 1)
	go func() {
		first := map[string]time.Time{}
		rv := ""
		for {
			for ev := range w.ResultChan() {
				m, ok := ev.Object.(*metav1.PartialObjectMetadata)
				if !ok {
					continue
				}
				rv = m.ResourceVersion
				if _, dup := first[m.Name]; ev.Type == watch.Added && !dup {
					first[m.Name] = time.Now()
				}
				if len(first) >= n {
					w.Stop()
				}
			}
			if len(first) >= n || ctx.Err() != nil {
				break
			}
			// The apiserver ends watches now and then: carry on from the last version seen.
			if w, err = pods.Watch(ctx, metav1.ListOptions{AllowWatchBookmarks: true, ResourceVersion: rv}); err != nil {
				return
			}
		}
		stamps := make([]time.Time, 0, len(first))
		for _, t := range first {
			stamps = append(stamps, t)
		}
		out <- stamps
	}()
	return out, nil
}

func (b *bench) startJobController(ctx context.Context) (func(), error) {
	kubeconfig := filepath.Join(b.dir, "kcm.kubeconfig")
	env := b.env
	c := clientcmdapi.NewConfig()
	c.Clusters["env"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	c.AuthInfos["env"] = &clientcmdapi.AuthInfo{ClientCertificateData: env.Config.CertData, ClientKeyData: env.Config.KeyData}
	c.Contexts["env"] = &clientcmdapi.Context{Cluster: "env", AuthInfo: "env"}
	c.CurrentContext = "env"
	if err := clientcmd.WriteToFile(*c, kubeconfig); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, b.o.kcm, "--kubeconfig", kubeconfig, "--controllers=job", "--leader-elect=false",
		"--secure-port=0", fmt.Sprintf("--concurrent-job-syncs=%d", b.o.workers),
		fmt.Sprintf("--kube-api-qps=%g", b.o.qps), fmt.Sprintf("--kube-api-burst=%d", b.o.burst))
	logf, err := os.Create(filepath.Join(b.dir, "kcm.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = logf.Close() }, nil
}

// countWrites counts write requests in the audit log by verb and resource, for clients
// whose user agent starts with ua, and how many of them were answered 409 (a conflict, or
// AlreadyExists).
func countWrites(path, ua string) (map[string]int, int, error) {
	counts, conflicts := map[string]int{}, 0
	err := audit.Each(path, func(ev *audit.Event) {
		if !strings.HasPrefix(ev.UserAgent, ua) {
			return
		}
		counts[ev.Verb+" "+ev.Resource()]++
		if ev.ResponseStatus.Code == 409 {
			conflicts++
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return counts, conflicts, nil
}

// startProfile profiles this process's CPU (the Agentry controller, the creator and the
// observer) into path; "" does nothing.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// profileAPIServer takes a CPU profile of the kube-apiserver over the first seconds of a
// phase, through its /debug/pprof endpoint, into <apiserverProfile>/<name>.pprof. The channel
// receives the outcome (nil at once without -apiserver-profile).
func (b *bench) profileAPIServer(ctx context.Context, name string) <-chan error {
	done := make(chan error, 1)
	if b.o.apiserverProfile == "" {
		done <- nil
		return done
	}
	go func() {
		done <- func() error {
			hc, err := rest.HTTPClientFor(b.env.Config)
			if err != nil {
				return err
			}
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(b.env.Config.Host, "/"), b.o.apiserverProfileSeconds)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("apiserver profile: %w", err)
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("apiserver profile: %s", resp.Status)
			}
			if err := os.MkdirAll(b.o.apiserverProfile, 0o755); err != nil {
				return err
			}
			f, err := os.Create(filepath.Join(b.o.apiserverProfile, name+".pprof"))
			if err != nil {
				return err
			}
			_, err = io.Copy(f, resp.Body)
			return errors.Join(err, f.Close())
		}()
	}()
	return done
}

// createPhase creates n objects with nothing reconciling them, timed to the last create.
func (b *bench) createPhase(ctx context.Context, name, prefix string, obj func(client.Client, string, int) client.Object) (*phase, error) {
	ns, err := b.env.CreateNamespace(ctx, prefix, nil)
	if err != nil {
		return nil, err
	}
	before, _, err := countWrites(b.auditLog, creatorUA)
	if err != nil {
		return nil, err
	}
	cpu0, err := controlPlaneCPU()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := createAll(ctx, b.creator, ns, b.o.n, obj); err != nil {
		return nil, err
	}
	p := &phase{name: name, n: b.o.n, noPods: true, elapsed: time.Since(start)}
	p.inputs = p.elapsed
	cpu1, err := controlPlaneCPU()
	if err != nil {
		return nil, err
	}
	p.controlPlane = cpu1 - cpu0
	after, _, err := countWrites(b.auditLog, creatorUA)
	if err != nil {
		return nil, err
	}
	p.writes = writesSince(before, after)
	return p, nil
}

// writesSince is the writes counted after and not before, by kind.
func writesSince(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// controlPlaneCPU is the CPU time (user and system) used so far by this process's
// kube-apiserver and etcd children.
func controlPlaneCPU() (time.Duration, error) {
	children, err := proc.Children(os.Getpid())
	if err != nil {
		return 0, err
	}
	var total time.Duration
	found := 0
	for _, c := range children {
		if c.Comm == "kube-apiserver" || c.Comm == "etcd" {
			total += c.CPU
			found++
		}
	}
	if found < 2 {
		return 0, fmt.Errorf("found %d of kube-apiserver and etcd among this process's children", found)
	}
	return total, nil
}
