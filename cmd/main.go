// Command manager runs Agentry's controllers (on the leader) and, in a later release, the
// session gateway (on every replica).
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
)

func main() {
	var (
		metricsAddr, probeAddr                     string
		leaderElect                                bool
		runnerImage, pullPolicy                    string
		gatewayURL, gatewayNamespace, dnsNamespace string
		gatewayPort                                int
		tokenTTL                                   time.Duration
		workers                                    int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles at a time.")
	flag.StringVar(&runnerImage, "runner-image", "agentry/runner:dev", "Image holding the runner binary; runs init containers and sessions without a toolchain image.")
	flag.StringVar(&pullPolicy, "runner-image-pull-policy", string(corev1.PullIfNotPresent), "Pull policy for the runner image.")
	flag.StringVar(&gatewayURL, "gateway-url", "https://agentry-gateway.agentry-system.svc:8443", "URL runner pods use to reach the session gateway.")
	flag.StringVar(&gatewayNamespace, "gateway-namespace", envOr("POD_NAMESPACE", "agentry-system"), "Namespace of the gateway pods, for runner NetworkPolicies.")
	flag.IntVar(&gatewayPort, "gateway-port", 8443, "Gateway container port, for runner NetworkPolicies.")
	flag.StringVar(&dnsNamespace, "dns-namespace", "kube-system", "Namespace of the cluster DNS pods (label k8s-app=kube-dns).")
	flag.DurationVar(&tokenTTL, "gateway-token-ttl", time.Hour, "Lifetime of the projected token runner pods present to the gateway (at least 10m).")
	flag.IntVar(&workers, "max-concurrent-reconciles", 8, "AgentSessions reconciled in parallel.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

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
	r := &controllers.AgentSessionReconciler{
		Client:   mgr.GetClient(),
		Scheme:   mgr.GetScheme(),
		Recorder: mgr.GetEventRecorderFor("agentry-controller"),
		Runner: controllers.RunnerConfig{
			Image:                  runnerImage,
			ImagePullPolicy:        corev1.PullPolicy(pullPolicy),
			GatewayURL:             gatewayURL,
			TokenExpirationSeconds: int64(max(tokenTTL, 10*time.Minute).Seconds()),
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
	must(controllers.RegisterPhaseMetrics(metrics.Registry, mgr.GetCache()))
	must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	must(mgr.AddReadyzCheck("readyz", healthz.Ping))

	setupLog.Info("Starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
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
