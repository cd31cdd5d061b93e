// Command manager runs Agentry's controllers (on the leader) and the session gateway (on
// every replica).
package main

import (
	"flag"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	var (
		metricsAddr, probeAddr                     string
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
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles at a time.")
	flag.StringVar(&runnerImage, "runner-image", "agentry/runner:dev", "Image holding the runner binary; runs init containers and sessions without a toolchain image.")
	flag.StringVar(&pullPolicy, "runner-image-pull-policy", string(corev1.PullIfNotPresent), "Pull policy for the runner image.")
	flag.StringVar(&gatewayURL, "gateway-url", "https://agentry-gateway.agentry-system.svc:8443", "URL runner pods use to reach the session gateway (https:// unless --gateway-tls=none).")
	flag.StringVar(&gatewayNamespace, "gateway-namespace", envOr("POD_NAMESPACE", "agentry-system"), "Namespace of the gateway pods, for runner NetworkPolicies.")
	flag.IntVar(&gatewayPort, "gateway-port", 8443, "Gateway container port, for runner NetworkPolicies.")
	flag.StringVar(&dnsNamespace, "dns-namespace", "kube-system", "Namespace of the cluster DNS pods (label k8s-app=kube-dns).")
	flag.DurationVar(&tokenTTL, "gateway-token-ttl", time.Hour, "Lifetime of the projected token runner pods present to the gateway (at least 10m).")
	flag.IntVar(&workers, "max-concurrent-reconciles", 8, "AgentSessions reconciled in parallel.")
	flag.StringVar(&gw.Addr, "gateway-bind-address", ":8443", "Address the session gateway serves runner pods on; \"0\" disables the gateway.")
	flag.StringVar(&gwTLS.mode, "gateway-tls", tlsManaged, "How the gateway serves runner pods: managed (HTTPS; the manager keeps a CA in --gateway-ca-secret and issues and rotates its own certificate), files (HTTPS with --gateway-tls-cert-file, --gateway-tls-key-file and --gateway-tls-ca-file, e.g. from cert-manager; reloaded when they change) or none (plain HTTP: runner pods refuse it unless their namespace is labelled agentry.dev/gateway-plain-http=allowed).")
	flag.StringVar(&gwTLS.certFile, "gateway-tls-cert-file", "", "With --gateway-tls=files: the serving certificate (PEM).")
	flag.StringVar(&gwTLS.keyFile, "gateway-tls-key-file", "", "With --gateway-tls=files: its private key (PEM).")
	flag.StringVar(&gwTLS.caFile, "gateway-tls-ca-file", "", "With --gateway-tls=files: the CA bundle runner pods verify the certificate with (PEM).")
	flag.StringVar(&gwTLS.caSecret, "gateway-ca-secret", "agentry-gateway-ca", "With --gateway-tls=managed: the Secret in the operator namespace that holds the gateway's CA.")
	flag.StringVar(&gwTLS.caConfigMap, "gateway-ca-configmap", "agentry-gateway-ca", "ConfigMap the CA bundle is published in (operator namespace) and copied to (every session namespace); runner pods mount it.")
	flag.StringVar(&gwTLS.extraNames, "gateway-tls-dns-names", "", "Extra DNS names, comma-separated, for the managed serving certificate (the --gateway-url host and its Service short names are always in it).")
	flag.StringVar(&gw.OperatorNamespace, "operator-namespace", envOr("POD_NAMESPACE", "agentry-system"), "Namespace holding the ModelProviders' API key Secrets.")
	flag.DurationVar(&gw.StatusInterval, "gateway-status-interval", time.Second, "Least time between two status writes for one session.")
	flag.BoolVar(&gw.WebFetchAllowPrivateAddresses, "web-fetch-allow-private-addresses", false, "Let web_fetch reach allowed domains that resolve to loopback, private or CGNAT addresses (an internal documentation server); link-local addresses such as the cloud metadata endpoint stay refused.")
	flag.StringVar(&gw.S3.Endpoint, "s3-endpoint", os.Getenv("AGENTRY_S3_ENDPOINT"), "Object storage for transcripts: host:port or http(s):// URL (env AGENTRY_S3_ENDPOINT).")
	flag.StringVar(&gw.S3.Bucket, "s3-bucket", envOr("AGENTRY_S3_BUCKET", "agentry"), "Bucket for transcripts (env AGENTRY_S3_BUCKET).")
	flag.StringVar(&gw.S3.Prefix, "s3-prefix", "sessions", "Key prefix: objects go to <prefix>/<namespace>/<session>/<uid>/.")
	flag.StringVar(&gw.S3.Region, "s3-region", os.Getenv("AWS_REGION"), "S3 region (env AWS_REGION).")
	flag.BoolVar(&s3Secure, "s3-tls", true, "Use HTTPS for a host:port S3 endpoint.")
	flag.StringVar(&gw.S3.CAFile, "s3-ca-file", "", "Extra CA bundle to trust for the S3 endpoint.")
	flag.StringVar(&consoleAddr, "console-bind-address", ":8090", "Address the share-link server (the session page behind AgentSessionShare links) listens on; \"0\" disables it and AgentSessionShares.")
	flag.StringVar(&consoleURL, "console-url", "", "External URL of the share-link server, the prefix of every share link (default http://agentry-console.<operator namespace>.svc:8090; put an HTTPS Ingress in front of it for people outside the cluster).")
	flag.StringVar(&consoleKey, "console-key-secret", "agentry-console-key", "Secret in the operator namespace holding the key that signs share links (created when missing; delete it and restart to revoke every link).")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	scheme := runtime.NewScheme()
	must(clientgoscheme.AddToScheme(scheme))
	must(agentryv1alpha1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "agentry-manager.agentry.dev",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		setupLog.Error(err, "Unable to create manager")
		os.Exit(1)
	}
	var certs servingcert.Source
	if gw.Addr != "0" {
		if certs, err = gwTLS.source(mgr.GetConfig(), scheme, gatewayURL, gw.OperatorNamespace); err != nil {
			setupLog.Error(err, "Unable to set up the gateway's TLS")
			os.Exit(1)
		}
	} else if err := gwTLS.validate(gatewayURL); err != nil {
		setupLog.Error(err, "Unable to set up the gateway's TLS")
		os.Exit(1)
	}
	caConfigMap := ""
	if gwTLS.mode != tlsNone {
		caConfigMap = gwTLS.caConfigMap
	}
	r := &controllers.AgentSessionReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Recorder: mgr.GetEventRecorderFor("agentry-controller"),
		Runner: controllers.RunnerConfig{
			Image:                  runnerImage,
			ImagePullPolicy:        corev1.PullPolicy(pullPolicy),
			GatewayURL:             gatewayURL,
			TokenExpirationSeconds: int64(max(tokenTTL, 10*time.Minute).Seconds()),
			GatewayCAConfigMap:     caConfigMap,
		},
		Network: controllers.NetworkConfig{
			GatewayNamespace: gatewayNamespace,
			GatewayPodLabels: map[string]string{"app.kubernetes.io/name": "agentry-manager"},
			GatewayPort:      int32(gatewayPort),
			DNSNamespace:     dnsNamespace,
			DNSPodLabels:     map[string]string{"k8s-app": "kube-dns"},
		},
		MaxConcurrentReconciles: workers,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Unable to set up controller", "controller", "AgentSession")
		os.Exit(1)
	}
	if err := (&controllers.ModelProviderReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: gw.OperatorNamespace,
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Unable to set up controller", "controller", "ModelProvider")
		os.Exit(1)
	}
	if caConfigMap != "" {
		if err := (&controllers.GatewayCAReconciler{
			Client: mgr.GetClient(), OperatorNamespace: gw.OperatorNamespace, Name: caConfigMap,
		}).SetupWithManager(mgr); err != nil {
			setupLog.Error(err, "Unable to set up controller", "controller", "GatewayCA")
			os.Exit(1)
		}
	}
	if err := (&controllers.GitProviderReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: gw.OperatorNamespace,
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Unable to set up controller", "controller", "GitProvider")
		os.Exit(1)
	}
	if err := (&controllers.MCPServerReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: gw.OperatorNamespace,
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Unable to set up controller", "controller", "MCPServer")
		os.Exit(1)
	}
	if err := (&controllers.NotificationReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: gw.OperatorNamespace,
		Recorder: mgr.GetEventRecorderFor("agentry-notify"),
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Unable to set up controller", "controller", "Notification")
		os.Exit(1)
	}
	if err := (&controllers.AgentPolicyStatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "Unable to set up controller", "controller", "AgentPolicyStatus")
		os.Exit(1)
	}
	if gw.Addr != "0" {
		// S3 credentials come from the environment (a Secret), never from flags.
		gw.S3.AccessKey, gw.S3.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		gw.S3.Insecure = !s3Secure
		if certs != nil {
			// The first certificate before the gateway listens: a manager that cannot get one
			// (RBAC, a broken Secret) stops here with the reason rather than failing handshakes.
			if err := syncCertificate(ctx, certs); err != nil {
				setupLog.Error(err, "Unable to get the gateway's serving certificate")
				os.Exit(1)
			}
			gw.GetCertificate = certs.GetCertificate
			must(mgr.Add(certs))
		}
		srv, err := gateway.New(ctx, gw, mgr.GetClient(), mgr.GetAPIReader())
		if err != nil {
			setupLog.Error(err, "Unable to create the session gateway")
			os.Exit(1)
		}
		must(mgr.Add(srv)) // every replica: NeedLeaderElection is false
		must((&gateway.Archiver{Gateway: srv}).SetupWithManager(mgr))
		if consoleAddr != "0" {
			must(setupConsole(ctx, mgr, srv, consoleAddr, consoleURL, consoleKey, gw.OperatorNamespace))
		}
		// Delivery reads the patch the gateway archived, so it needs the gateway's store.
		must((&controllers.DeliveryReconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Artifacts: srv,
			Recorder: mgr.GetEventRecorderFor("agentry-delivery"), OperatorNamespace: gw.OperatorNamespace,
		}).SetupWithManager(mgr))
	}
	must(controllers.RegisterPhaseMetrics(metrics.Registry, mgr.GetCache()))
	must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	setupLog.Info("Starting manager")
	if err := mgr.Start(ctx); err != nil {
		setupLog.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func must(err error) {
	if err != nil {
		ctrl.Log.Error(err, "Unable to start")
		os.Exit(1)
	}
}
