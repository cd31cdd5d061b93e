// Command manager runs Agentry's controllers (on the leader) and the session gateway (on
// every replica).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentryv1alpha1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/gateway"
	"github.com/agentry-dev/agentry/gateway/servingcert"
)

func main() {
	// `manager selftest ...`: the chart's `helm test` program (selftest.go).
	if len(os.Args) > 1 && os.Args[1] == "selftest" {
		os.Exit(selfTest(os.Args[2:]))
	}
	var f managerFlags
	f.bind(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap)))
	setupLog := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	mgr, err := newManager(&f)
	if err != nil {
		setupLog.Error(err, "Unable to create manager")
		os.Exit(1)
	}
	if err := setup(ctx, mgr, &f); err != nil {
		setupLog.Error(err, "Unable to start")
		os.Exit(1)
	}
	setupLog.Info("Starting manager")
	if err := mgr.Start(ctx); err != nil {
		setupLog.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

// managerFlags is the manager's command line.
type managerFlags struct {
	metricsAddr, probeAddr, pprofAddr          string
	leaderElect                                bool
	runnerImage, pullPolicy                    string
	gatewayURL, gatewayNamespace, dnsNamespace string
	gatewayPort                                int
	tokenTTL                                   time.Duration
	workers                                    int
	gw                                         gateway.Config
	s3Secure                                   bool
	gwTLS                                      gatewayTLSFlags
	consoleAddr, consoleURL, consoleKey        string
	maxRequestBytes                            resource.QuantityValue
	zap                                        zap.Options
}

// bind defines the manager's flags on fs.
func (f *managerFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&f.pprofAddr, "pprof-bind-address", "0", "Address Go's /debug/pprof profiles are served on, for diagnosing the manager (e.g. 127.0.0.1:6060, reached by kubectl port-forward); \"0\", the default, disables it. Unauthenticated: never bind it to an address others can reach.")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles at a time.")
	fs.StringVar(&f.runnerImage, "runner-image", "agentry/runner:dev", "Image holding the runner binary; runs init containers and sessions without a toolchain image.")
	fs.StringVar(&f.pullPolicy, "runner-image-pull-policy", string(corev1.PullIfNotPresent), "Pull policy for the runner image.")
	fs.StringVar(&f.gatewayURL, "gateway-url", "https://agentry-gateway.agentry-system.svc:8443", "URL runner pods use to reach the session gateway (https:// unless --gateway-tls=none).")
	fs.StringVar(&f.gatewayNamespace, "gateway-namespace", envOr("POD_NAMESPACE", "agentry-system"), "Namespace of the gateway pods, for runner NetworkPolicies.")
	fs.IntVar(&f.gatewayPort, "gateway-port", 8443, "Gateway container port, for runner NetworkPolicies.")
	fs.StringVar(&f.dnsNamespace, "dns-namespace", "kube-system", "Namespace of the cluster DNS pods (label k8s-app=kube-dns).")
	fs.DurationVar(&f.tokenTTL, "gateway-token-ttl", time.Hour, "Lifetime of the projected token runner pods present to the gateway (at least 10m).")
	fs.IntVar(&f.workers, "max-concurrent-reconciles", 8, "AgentSessions reconciled in parallel.")
	fs.StringVar(&f.gw.Addr, "gateway-bind-address", ":8443", "Address the session gateway serves runner pods on; \"0\" disables the gateway.")
	fs.StringVar(&f.gwTLS.mode, "gateway-tls", tlsManaged, "How the gateway serves runner pods: managed (HTTPS; the manager keeps a CA in --gateway-ca-secret and issues and rotates its own certificate), files (HTTPS with --gateway-tls-cert-file, --gateway-tls-key-file and --gateway-tls-ca-file, e.g. from cert-manager; reloaded when they change) or none (plain HTTP: runner pods refuse it unless their namespace is labelled agentry.dev/gateway-plain-http=allowed).")
	fs.StringVar(&f.gwTLS.certFile, "gateway-tls-cert-file", "", "With --gateway-tls=files: the serving certificate (PEM).")
	fs.StringVar(&f.gwTLS.keyFile, "gateway-tls-key-file", "", "With --gateway-tls=files: its private key (PEM).")
	fs.StringVar(&f.gwTLS.caFile, "gateway-tls-ca-file", "", "With --gateway-tls=files: the CA bundle runner pods verify the certificate with (PEM).")
	fs.StringVar(&f.gwTLS.caSecret, "gateway-ca-secret", "agentry-gateway-ca", "With --gateway-tls=managed: the Secret in the operator namespace that holds the gateway's CA.")
	fs.StringVar(&f.gwTLS.caConfigMap, "gateway-ca-configmap", "agentry-gateway-ca", "ConfigMap the CA bundle is published in (operator namespace) and copied to (every session namespace); runner pods mount it.")
	fs.StringVar(&f.gwTLS.extraNames, "gateway-tls-dns-names", "", "Extra DNS names, comma-separated, for the managed serving certificate (the --gateway-url host and its Service short names are always in it).")
	fs.StringVar(&f.gw.OperatorNamespace, "operator-namespace", envOr("POD_NAMESPACE", "agentry-system"), "Namespace holding the ModelProviders' API key Secrets.")
	fs.DurationVar(&f.gw.StatusInterval, "gateway-status-interval", time.Second, "Least time between two status writes for one session.")
	f.maxRequestBytes.Quantity = *resource.NewQuantity(gateway.DefaultMaxRequestBytesInFlight, resource.BinarySI)
	fs.Var(&f.maxRequestBytes, "gateway-max-request-bytes", "Request bodies all sessions together may have in flight on one gateway replica (a quantity: 256Mi; at least 64Mi, the largest body the gateway takes); a request past it is refused with 503 and Retry-After, and the runner retries it.")
	fs.BoolVar(&f.gw.WebFetchAllowPrivateAddresses, "web-fetch-allow-private-addresses", false, "Let web_fetch reach allowed domains that resolve to loopback, private or CGNAT addresses (an internal documentation server); link-local addresses such as the cloud metadata endpoint stay refused.")
	fs.StringVar(&f.gw.S3.Endpoint, "s3-endpoint", os.Getenv("AGENTRY_S3_ENDPOINT"), "Object storage for transcripts: host:port or http(s):// URL (env AGENTRY_S3_ENDPOINT).")
	fs.StringVar(&f.gw.S3.Bucket, "s3-bucket", envOr("AGENTRY_S3_BUCKET", "agentry"), "Bucket for transcripts (env AGENTRY_S3_BUCKET).")
	fs.StringVar(&f.gw.S3.Prefix, "s3-prefix", "sessions", "Key prefix: objects go to <prefix>/<namespace>/<session>/<uid>/.")
	fs.StringVar(&f.gw.S3.Region, "s3-region", os.Getenv("AWS_REGION"), "S3 region (env AWS_REGION).")
	fs.BoolVar(&f.s3Secure, "s3-tls", true, "Use HTTPS for a host:port S3 endpoint.")
	fs.StringVar(&f.gw.S3.CAFile, "s3-ca-file", "", "Extra CA bundle to trust for the S3 endpoint.")
	fs.StringVar(&f.consoleAddr, "console-bind-address", ":8090", "Address the share-link server (the session page behind AgentSessionShare links) listens on; \"0\" disables it and AgentSessionShares.")
	fs.StringVar(&f.consoleURL, "console-url", "", "External URL of the share-link server, the prefix of every share link (default http://agentry-console.<operator namespace>.svc:8090; put an HTTPS Ingress in front of it for people outside the cluster).")
	fs.StringVar(&f.consoleKey, "console-key-secret", "agentry-console-key", "Secret in the operator namespace holding the key that signs share links (created when missing; delete it and restart to revoke every link).")
	f.zap.BindFlags(fs)
}

// maxRequestBytesInFlight is --gateway-max-request-bytes in bytes.
func (f *managerFlags) maxRequestBytesInFlight() (int64, error) {
	if n := f.maxRequestBytes.Value(); n >= gateway.MaxRequestBody {
		return n, nil
	}
	return 0, fmt.Errorf("--gateway-max-request-bytes %s: must be at least 64Mi, the largest request body the gateway takes", f.maxRequestBytes.String())
}

// gatewayEnabled reports whether this manager serves the session gateway.
func (f *managerFlags) gatewayEnabled() bool { return f.gw.Addr != "0" }

// caConfigMap is the gateway CA bundle's ConfigMap runner pods mount; empty for a plain
// HTTP gateway.
func (f *managerFlags) caConfigMap() string {
	if f.gwTLS.mode == tlsNone {
		return ""
	}
	return f.gwTLS.caConfigMap
}

// newManager creates the manager with Agentry's scheme and cache options.
func newManager(f *managerFlags) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering the Kubernetes types: %w", err)
	}
	if err := agentryv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering the Agentry types: %w", err)
	}
	return ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress: f.probeAddr,
		PprofBindAddress:       f.pprofAddr,
		LeaderElection:         f.leaderElect,
		LeaderElectionID:       "agentry-manager.agentry.dev",
		// The lease lives with the manager (the operator namespace is the pod's by
		// default); named here so a manager outside a cluster can elect too.
		LeaderElectionNamespace: f.gw.OperatorNamespace,
		Cache:                   controllers.CacheOptions(),
	})
}

// setup adds the controllers, the gateway (with the archiver, the console and delivery,
// which need its store), the metrics and the probes to mgr.
func setup(ctx context.Context, mgr ctrl.Manager, f *managerFlags) error {
	var certs servingcert.Source
	if f.gatewayEnabled() {
		var err error
		if certs, err = f.gwTLS.source(mgr.GetConfig(), mgr.GetScheme(), f.gatewayURL, f.gw.OperatorNamespace); err != nil {
			return fmt.Errorf("setting up the gateway's TLS: %w", err)
		}
	} else if err := f.gwTLS.validate(f.gatewayURL); err != nil {
		return fmt.Errorf("setting up the gateway's TLS: %w", err)
	}
	if err := setupControllers(mgr, f); err != nil {
		return err
	}
	if f.gatewayEnabled() {
		if err := setupGateway(ctx, mgr, f, certs); err != nil {
			return err
		}
	}
	if err := controllers.RegisterPhaseMetrics(metrics.Registry, mgr.GetCache()); err != nil {
		return fmt.Errorf("registering the phase metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the ready check: %w", err)
	}
	return nil
}

// controller is one of the manager's controllers, named in setup errors.
type controller struct {
	name string
	r    interface{ SetupWithManager(ctrl.Manager) error }
}

// setupControllers adds the controllers that run on the leader and do not need the gateway.
func setupControllers(mgr ctrl.Manager, f *managerFlags) error {
	ns := f.gw.OperatorNamespace
	rs := []controller{
		{"AgentSession", &controllers.AgentSessionReconciler{
			Client:   mgr.GetClient(),
			Scheme:   mgr.GetScheme(),
			Recorder: mgr.GetEventRecorderFor("agentry-controller"),
			Runner: controllers.RunnerConfig{
				Image:                  f.runnerImage,
				ImagePullPolicy:        corev1.PullPolicy(f.pullPolicy),
				GatewayURL:             f.gatewayURL,
				TokenExpirationSeconds: int64(max(f.tokenTTL, 10*time.Minute).Seconds()),
				GatewayCAConfigMap:     f.caConfigMap(),
			},
			Network: controllers.NetworkConfig{
				GatewayNamespace: f.gatewayNamespace,
				GatewayPodLabels: map[string]string{"app.kubernetes.io/name": "agentry-manager"},
				GatewayPort:      int32(f.gatewayPort),
				DNSNamespace:     f.dnsNamespace,
				DNSPodLabels:     map[string]string{"k8s-app": "kube-dns"},
			},
			MaxConcurrentReconciles: f.workers,
		}},
		{"ModelProvider", &controllers.ModelProviderReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: ns}},
		{"GitProvider", &controllers.GitProviderReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: ns}},
		{"MCPServer", &controllers.MCPServerReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: ns}},
		{"Notification", &controllers.NotificationReconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: ns,
			Recorder: mgr.GetEventRecorderFor("agentry-notify"),
		}},
		{"AgentPolicyStatus", &controllers.AgentPolicyStatusReconciler{Client: mgr.GetClient()}},
	}
	if ca := f.caConfigMap(); ca != "" {
		rs = append(rs, controller{"GatewayCA", &controllers.GatewayCAReconciler{Client: mgr.GetClient(), OperatorNamespace: ns, Name: ca}})
	}
	for _, c := range rs {
		if err := c.r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s controller: %w", c.name, err)
		}
	}
	return nil
}

// setupGateway adds the session gateway (on every replica: NeedLeaderElection is false), its
// archiver, the share-link console and delivery, which reads the patch the gateway archived.
func setupGateway(ctx context.Context, mgr ctrl.Manager, f *managerFlags, certs servingcert.Source) error {
	gw := f.gw
	// S3 credentials come from the environment (a Secret), never from flags.
	gw.S3.CredentialsFromEnv(os.Getenv)
	gw.S3.Insecure = !f.s3Secure
	var err error
	if gw.MaxRequestBytesInFlight, err = f.maxRequestBytesInFlight(); err != nil {
		return err
	}
	if certs != nil {
		// The first certificate before the gateway listens: a manager that cannot get one
		// (RBAC, a broken Secret) stops here with the reason rather than failing handshakes.
		if err := syncCertificate(ctx, certs); err != nil {
			return fmt.Errorf("getting the gateway's serving certificate: %w", err)
		}
		gw.GetCertificate = certs.GetCertificate
		if err := mgr.Add(certs); err != nil {
			return fmt.Errorf("adding the gateway's certificate source: %w", err)
		}
	}
	gw.Informers = mgr.GetCache() // token budgets follow sessions and policies from the cache
	srv, err := gateway.New(ctx, gw, mgr.GetClient(), mgr.GetAPIReader())
	if err != nil {
		return fmt.Errorf("creating the session gateway: %w", err)
	}
	if err := mgr.Add(srv); err != nil {
		return fmt.Errorf("adding the session gateway: %w", err)
	}
	if err := (&gateway.Archiver{Gateway: srv}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the archiver: %w", err)
	}
	if f.consoleAddr != "0" {
		if err := setupConsole(ctx, mgr, srv, f.consoleAddr, f.consoleURL, f.consoleKey, gw.OperatorNamespace); err != nil {
			return fmt.Errorf("setting up the console: %w", err)
		}
	}
	if err := (&controllers.DeliveryReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Artifacts: srv,
		Recorder: mgr.GetEventRecorderFor("agentry-delivery"), OperatorNamespace: gw.OperatorNamespace,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Delivery controller: %w", err)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
