package chart_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/agentry-dev/agentry/test/controlplane"
)

func field(t *testing.T, o *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s %s has no %s (%v)", o.GetKind(), o.GetName(), strings.Join(path, "."), err)
	}
	return v
}

func has(objs []*unstructured.Unstructured, kind, name string) bool {
	return slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind && o.GetName() == name })
}

// TestGatewayTLSModes pins the gateway flags the chart passes the manager in each TLS mode.
func TestGatewayTLSModes(t *testing.T) {
	cases := map[string]struct {
		args         []string
		want         []string
		volumeMounts any
	}{
		"managed": {
			want: []string{
				"--gateway-url=https://agentry-gateway.agentry-system.svc:8443",
				"--gateway-tls=managed",
				"--gateway-ca-secret=agentry-gateway-ca",
				"--gateway-ca-configmap=agentry-gateway-ca",
			},
		},
		"managed with names": {
			args: []string{"--set", "gateway.caSecret=gw-ca", "--set", "gateway.caConfigMap=gw-bundle", "--set", "gateway.port=9443", "--set", "gateway.tls.extraDNSNames={gw.example.com,gw2.example.com}"},
			want: []string{
				"--gateway-url=https://agentry-gateway.agentry-system.svc:9443",
				"--gateway-tls=managed",
				"--gateway-ca-secret=gw-ca",
				"--gateway-ca-configmap=gw-bundle",
				"--gateway-tls-dns-names=gw.example.com,gw2.example.com",
			},
		},
		"certManager": {
			args: []string{"--set", "gateway.tls.mode=certManager", "--api-versions", "cert-manager.io/v1"},
			want: []string{
				"--gateway-url=https://agentry-gateway.agentry-system.svc:8443",
				"--gateway-tls=files",
				"--gateway-tls-cert-file=/etc/agentry/gateway-tls/tls.crt",
				"--gateway-tls-key-file=/etc/agentry/gateway-tls/tls.key",
				"--gateway-tls-ca-file=/etc/agentry/gateway-tls/ca.crt",
				"--gateway-ca-configmap=agentry-gateway-ca",
			},
			volumeMounts: []any{map[string]any{"name": "gateway-tls", "mountPath": "/etc/agentry/gateway-tls", "readOnly": true}},
		},
		"none": {
			args: []string{"--set", "gateway.tls.mode=none"},
			want: []string{
				"--gateway-url=http://agentry-gateway.agentry-system.svc:8443",
				"--gateway-tls=none",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			objs := decode(t, mustTemplate(t, tc.args...))
			var got []string
			for _, a := range managerArgs(t, objs) {
				if strings.HasPrefix(a, "--gateway-") && !slices.Contains([]string{"--gateway-bind-address", "--gateway-port", "--gateway-token-ttl", "--gateway-max-request-bytes"}, strings.SplitN(a, "=", 2)[0]) {
					got = append(got, a)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("gateway flags (-want +got):\n%s", diff)
			}
			cs, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "agentry-manager").Object, "spec", "template", "spec", "containers")
			if diff := cmp.Diff(tc.volumeMounts, cs[0].(map[string]any)["volumeMounts"]); diff != "" {
				t.Errorf("volume mounts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCertManagerObjects checks the cert-manager objects field by field (the test apiserver
// has no cert-manager CRDs), and that the mode is refused where cert-manager is absent.
func TestCertManagerObjects(t *testing.T) {
	_, errOut, err := helmTemplate(t, "--set", "gateway.tls.mode=certManager")
	if err == nil || !strings.Contains(errOut, "cert-manager.io/v1") {
		t.Errorf("certManager mode without cert-manager: err %v, want a message naming cert-manager.io/v1:\n%s", err, errOut)
	}

	objs := decode(t, mustTemplate(t, "--set", "gateway.tls.mode=certManager", "--api-versions", "cert-manager.io/v1"))
	cert := find(t, objs, "Certificate", "agentry-gateway-tls")
	if got := field(t, cert, "spec", "secretName"); got != "agentry-gateway-tls" {
		t.Errorf("serving Certificate secretName %v", got)
	}
	wantNames := []any{"agentry-gateway", "agentry-gateway.agentry-system", "agentry-gateway.agentry-system.svc", "agentry-gateway.agentry-system.svc.cluster.local"}
	if diff := cmp.Diff(wantNames, field(t, cert, "spec", "dnsNames")); diff != "" {
		t.Errorf("serving Certificate dnsNames (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"name": "agentry-gateway-ca", "kind": "Issuer", "group": "cert-manager.io"}, field(t, cert, "spec", "issuerRef")); diff != "" {
		t.Errorf("serving Certificate issuerRef (-want +got):\n%s", diff)
	}
	if field(t, find(t, objs, "Issuer", "agentry-selfsigned"), "spec", "selfSigned") == nil {
		t.Error("no selfSigned Issuer")
	}
	ca := find(t, objs, "Certificate", "agentry-gateway-root-ca")
	if field(t, ca, "spec", "isCA") != true || field(t, ca, "spec", "issuerRef", "name") != "agentry-selfsigned" {
		t.Errorf("CA Certificate: %v", ca.Object["spec"])
	}
	if got := field(t, find(t, objs, "Issuer", "agentry-gateway-ca"), "spec", "ca", "secretName"); got != "agentry-gateway-root-ca" {
		t.Errorf("CA Issuer reads %v", got)
	}
	vols, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "agentry-manager").Object, "spec", "template", "spec", "volumes")
	if diff := cmp.Diff([]any{map[string]any{"name": "gateway-tls", "secret": map[string]any{"secretName": "agentry-gateway-tls"}}}, vols); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}

	// An issuer of the platform's own: no self-signed chain.
	objs = decode(t, mustTemplate(t, "--set", "gateway.tls.mode=certManager", "--api-versions", "cert-manager.io/v1",
		"--set", "gateway.tls.certManager.issuerRef.name=corp-ca", "--set", "gateway.tls.certManager.issuerRef.kind=ClusterIssuer"))
	if has(objs, "Issuer", "agentry-selfsigned") || has(objs, "Certificate", "agentry-gateway-root-ca") {
		t.Error("with an issuerRef the chart still creates its own CA")
	}
	if diff := cmp.Diff(map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, field(t, find(t, objs, "Certificate", "agentry-gateway-tls"), "spec", "issuerRef")); diff != "" {
		t.Errorf("issuerRef (-want +got):\n%s", diff)
	}

	for _, mode := range []string{"managed", "none"} {
		for _, o := range decode(t, mustTemplate(t, "--set", "gateway.tls.mode="+mode, "--api-versions", "cert-manager.io/v1")) {
			if strings.HasPrefix(o.GetAPIVersion(), "cert-manager.io/") {
				t.Errorf("mode %s renders %s %s", mode, o.GetKind(), o.GetName())
			}
		}
	}
}

// TestServiceMonitor: a ServiceMonitor only when asked for and the cluster serves the API,
// selecting the metrics Service by its port name.
func TestServiceMonitor(t *testing.T) {
	for _, args := range [][]string{
		{"--set", "metrics.serviceMonitor.enabled=true"},
		{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"},
	} {
		if objs := decode(t, mustTemplate(t, args...)); has(objs, "ServiceMonitor", "agentry-manager") {
			t.Errorf("%v renders a ServiceMonitor", args)
		}
	}
	objs := decode(t, mustTemplate(t, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom",
		"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"))
	sm := find(t, objs, "ServiceMonitor", "agentry-manager")
	if sm.GetLabels()["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack release=prom", sm.GetLabels())
	}
	svc := find(t, objs, "Service", "agentry-metrics")
	for k, v := range field(t, sm, "spec", "selector", "matchLabels").(map[string]any) {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v; the metrics Service has %v", k, v, svc.GetLabels())
		}
	}
	if gw := find(t, objs, "Service", "agentry-gateway"); gw.GetLabels()["app.kubernetes.io/component"] == "metrics" {
		t.Error("the ServiceMonitor's selector also matches the gateway Service")
	}
	eps := field(t, sm, "spec", "endpoints").([]any)
	if ep := eps[0].(map[string]any); ep["port"] != "metrics" || ep["path"] != "/metrics" || ep["interval"] != "30s" || ep["honorLabels"] != true {
		t.Errorf("ServiceMonitor endpoint %v", ep)
	}
	ports := field(t, svc, "spec", "ports").([]any)
	if p := ports[0].(map[string]any); p["port"] != float64(8080) || p["targetPort"] != "metrics" {
		t.Errorf("metrics Service port %v", p)
	}
}

// TestSchemaRefusesBadValues: helm refuses a wrong value before rendering, naming the field.
func TestSchemaRefusesBadValues(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"replicas not a number":  {[]string{"--set", "replicas=two"}, "/replicas"},
		"unknown tls mode":       {[]string{"--set", "gateway.tls.mode=tls"}, "/gateway/tls/mode"},
		"misspelt key":           {[]string{"--set", "gateway.tlss.mode=none"}, "'tlss' not allowed"},
		"misspelt top-level key": {[]string{"--set", "replica=3"}, "'replica' not allowed"},
		"token TTL in days":      {[]string{"--set", "gateway.tokenTTL=1d"}, "/gateway/tokenTTL"},
		"body bound in words":    {[]string{"--set", "gateway.maxRequestBytes=lots"}, "/gateway/maxRequestBytes"},
		"unknown pull policy":    {[]string{"--set", "image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		"port out of range":      {[]string{"--set", "gateway.port=70000"}, "/gateway/port"},
		"test timeout in days":   {[]string{"--set", "test.timeout=1d"}, "/test/timeout"},
		"misspelt nested key":    {[]string{"--set", "s3.endpiont=x"}, "'endpiont' not allowed"},
		"unknown provider API":   {[]string{"--set", "modelProvider.api=Anthropic"}, "/modelProvider/api"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, errOut, err := helmTemplate(t, tc.args...)
			if err == nil {
				t.Fatalf("helm accepted %v", tc.args)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("helm's error for %v does not name %q:\n%s", tc.args, tc.want, errOut)
			}
		})
	}
	// lint validates against the schema too.
	cmd := exec.Command(helmBinary(t), "lint", "--strict", "charts/agentry", "--set", "replicas=two")
	cmd.Dir = controlplane.RepoRoot()
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "/replicas") {
		t.Errorf("helm lint accepted replicas=two (err %v):\n%s", err, out)
	}
}

// TestObjectStorageValues: exactly one way of giving the S3 credentials.
func TestObjectStorageValues(t *testing.T) {
	inline := []string{"--set", "s3.endpoint=s3.example.com:443", "--set", "s3.accessKey=AK", "--set", "s3.secretKey=SK"}
	refused := map[string]struct {
		args []string
		want string
	}{
		"both":    {inline, "not both"},
		"neither": {[]string{"--set", "s3.existingSecret="}, "object storage is required"},
		"partial": {[]string{"--set", "s3.existingSecret=", "--set", "s3.endpoint=s3.example.com:443"}, "must all be set"},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			_, errOut, err := helmTemplate(t, tc.args...)
			if err == nil || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "s3") {
				t.Errorf("%v: err %v, want a message with %q:\n%s", tc.args, err, tc.want, errOut)
			}
		})
	}

	secretRefs := func(objs []*unstructured.Unstructured) map[string]string {
		cs, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "agentry-manager").Object, "spec", "template", "spec", "containers")
		refs := map[string]string{}
		for _, e := range cs[0].(map[string]any)["env"].([]any) {
			if name, ok, _ := unstructured.NestedString(e.(map[string]any), "valueFrom", "secretKeyRef", "name"); ok {
				refs[e.(map[string]any)["name"].(string)] = name
			}
		}
		return refs
	}
	want := func(secret string) map[string]string {
		return map[string]string{"AGENTRY_S3_ENDPOINT": secret, "AWS_ACCESS_KEY_ID": secret, "AWS_SECRET_ACCESS_KEY": secret}
	}

	objs := decode(t, mustTemplate(t, "--set", "s3.existingSecret=my-s3"))
	if diff := cmp.Diff(want("my-s3"), secretRefs(objs)); diff != "" {
		t.Errorf("existingSecret: env (-want +got):\n%s", diff)
	}
	if has(objs, "Secret", "agentry-s3") {
		t.Error("existingSecret: the chart made a Secret too")
	}

	objs = decode(t, mustTemplate(t, append([]string{"--set", "s3.existingSecret="}, inline...)...))
	if diff := cmp.Diff(want("agentry-s3"), secretRefs(objs)); diff != "" {
		t.Errorf("inline: env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"endpoint": "s3.example.com:443", "accessKey": "AK", "secretKey": "SK"}, field(t, find(t, objs, "Secret", "agentry-s3"), "stringData")); diff != "" {
		t.Errorf("inline: Secret (-want +got):\n%s", diff)
	}
}

// TestModelProviderValues: the optional default ModelProvider and its key.
func TestModelProviderValues(t *testing.T) {
	if objs := decode(t, mustTemplate(t)); slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "ModelProvider" }) {
		t.Error("a ModelProvider by default")
	}
	for _, args := range [][]string{
		{"--set", "modelProvider.create=true"},
		{"--set", "modelProvider.create=true", "--set", "modelProvider.apiKey=k", "--set", "modelProvider.existingSecret=s"},
	} {
		if _, errOut, err := helmTemplate(t, args...); err == nil || !strings.Contains(errOut, "modelProvider") {
			t.Errorf("%v: err %v, want a message naming modelProvider:\n%s", args, err, errOut)
		}
	}
	objs := decode(t, mustTemplate(t, "--set", "modelProvider.create=true", "--set", "modelProvider.name=corp", "--set", "modelProvider.apiKey=sk-1",
		"--set", "modelProvider.defaultModel=m1", "--set", "modelProvider.models={m1,m2}"))
	mp := find(t, objs, "ModelProvider", "corp")
	want := map[string]any{"api": "OpenAI", "baseURL": "https://api.openai.com/v1", "apiKeySecretRef": map[string]any{"name": "corp-api-key", "key": "apiKey"},
		"defaultModel": "m1", "models": []any{"m1", "m2"}}
	if diff := cmp.Diff(want, mp.Object["spec"]); diff != "" {
		t.Errorf("ModelProvider spec (-want +got):\n%s", diff)
	}
	sec := find(t, objs, "Secret", "corp-api-key")
	if sec.GetNamespace() != "agentry-system" || field(t, sec, "stringData", "apiKey") != "sk-1" {
		t.Errorf("key Secret %s/%s %v", sec.GetNamespace(), sec.GetName(), sec.Object["stringData"])
	}
	// The helm test session uses the provider the chart made.
	if args := testPodCommand(t, objs); !slices.Contains(args, "--provider=corp") {
		t.Errorf("selftest command %v lacks --provider=corp", args)
	}

	objs = decode(t, mustTemplate(t, "--set", "modelProvider.create=true", "--set", "modelProvider.existingSecret=keys", "--set", "modelProvider.existingSecretKey=openai"))
	if diff := cmp.Diff(map[string]any{"name": "keys", "key": "openai"}, field(t, find(t, objs, "ModelProvider", "default"), "spec", "apiKeySecretRef")); diff != "" {
		t.Errorf("apiKeySecretRef (-want +got):\n%s", diff)
	}
	if has(objs, "Secret", "default-api-key") {
		t.Error("existingSecret: the chart made a key Secret too")
	}
}

func testPodCommand(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	cs := field(t, find(t, objs, "Pod", "agentry-selftest"), "spec", "containers").([]any)
	var cmd []string
	for _, a := range cs[0].(map[string]any)["command"].([]any) {
		cmd = append(cmd, a.(string))
	}
	return cmd
}

// TestHelmTestHooks: `helm test` runs `/manager selftest` in the manager image with its own
// narrowly-scoped identity, all of it hooks deleted when the test passes.
func TestHelmTestHooks(t *testing.T) {
	objs := decode(t, mustTemplate(t, "--set", "test.namespace=sessions", "--set", "test.model=m", "--set", "test.repository.url=https://git.example.com/a/b.git",
		"--set", "test.repository.ref=v1", "--set", "test.timeout=5m", "--set", "test.task=Say hello: then stop"))
	want := []string{"/manager", "selftest", "--namespace=sessions", "--provider=", "--model=m", "--repository=https://git.example.com/a/b.git",
		"--ref=v1", "--task=Say hello: then stop", "--timeout=5m"}
	if diff := cmp.Diff(want, testPodCommand(t, objs)); diff != "" {
		t.Errorf("selftest command (-want +got):\n%s", diff)
	}
	pod := find(t, objs, "Pod", "agentry-selftest")
	if img := field(t, pod, "spec", "containers").([]any)[0].(map[string]any)["image"]; img != "agentry/manager:dev" {
		t.Errorf("selftest image %v", img)
	}
	if field(t, pod, "spec", "serviceAccountName") != "agentry-selftest" || field(t, pod, "spec", "restartPolicy") != "Never" {
		t.Errorf("selftest pod spec %v", pod.Object["spec"])
	}
	for _, kind := range []string{"ServiceAccount", "Role", "RoleBinding", "Pod"} {
		o := find(t, objs, kind, "agentry-selftest")
		a := o.GetAnnotations()
		// The pod stays after success so `helm test --logs` can read it; the rest goes.
		wantDelete := "before-hook-creation,hook-succeeded"
		if kind == "Pod" {
			wantDelete = "before-hook-creation"
		}
		if a["helm.sh/hook"] != "test" || a["helm.sh/hook-delete-policy"] != wantDelete {
			t.Errorf("%s agentry-selftest annotations %v: want a test hook, delete policy %q", kind, a, wantDelete)
		}
		wantNS := "agentry-system"
		if kind == "Role" || kind == "RoleBinding" {
			wantNS = "sessions"
		}
		if o.GetNamespace() != wantNS {
			t.Errorf("%s agentry-selftest in %q, want %q", kind, o.GetNamespace(), wantNS)
		}
	}
	rules := field(t, find(t, objs, "Role", "agentry-selftest"), "rules").([]any)
	if diff := cmp.Diff([]any{map[string]any{"apiGroups": []any{"agentry.dev"}, "resources": []any{"agentsessions"}, "verbs": []any{"create", "get", "list", "watch", "delete"}}}, rules); diff != "" {
		t.Errorf("selftest Role rules (-want +got):\n%s", diff)
	}
}

// TestAvailability: two replicas spread over nodes and kept through drains by default.
func TestAvailability(t *testing.T) {
	objs := decode(t, mustTemplate(t))
	dep := find(t, objs, "Deployment", "agentry-manager")
	if field(t, dep, "spec", "replicas") != float64(2) {
		t.Errorf("replicas %v", field(t, dep, "spec", "replicas"))
	}
	pdb := find(t, objs, "PodDisruptionBudget", "agentry-manager")
	if field(t, pdb, "spec", "minAvailable") != float64(1) {
		t.Errorf("PDB minAvailable %v", field(t, pdb, "spec", "minAvailable"))
	}
	want := []any{map[string]any{"maxSkew": float64(1), "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
		"labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "agentry-manager"}}}}
	if diff := cmp.Diff(want, field(t, dep, "spec", "template", "spec", "topologySpreadConstraints")); diff != "" {
		t.Errorf("topologySpreadConstraints (-want +got):\n%s", diff)
	}
	if objs := decode(t, mustTemplate(t, "--set", "replicas=1")); has(objs, "PodDisruptionBudget", "agentry-manager") {
		t.Error("a PodDisruptionBudget for one replica would block every drain")
	}
	if objs := decode(t, mustTemplate(t, "--set", "podDisruptionBudget.enabled=false")); has(objs, "PodDisruptionBudget", "agentry-manager") {
		t.Error("podDisruptionBudget.enabled=false still renders one")
	}
	objs = decode(t, mustTemplate(t, "--set", "priorityClassName=high", "--set", "nodeSelector.pool=system", "--set", "imagePullSecrets[0].name=reg"))
	spec := find(t, objs, "Deployment", "agentry-manager").Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	if spec["priorityClassName"] != "high" || spec["nodeSelector"].(map[string]any)["pool"] != "system" || spec["imagePullSecrets"] == nil {
		t.Errorf("pod spec lacks priorityClassName, nodeSelector or imagePullSecrets: %v", spec)
	}
}

// TestManagerNetworkPolicy: ingress to the gateway from runner pods only, share links and
// probes from anywhere, metrics from the chosen namespaces; egress open unless rules are given.
func TestManagerNetworkPolicy(t *testing.T) {
	np := find(t, decode(t, mustTemplate(t, "--set", "networkPolicy.metricsNamespaceSelector.matchLabels.team=monitoring")), "NetworkPolicy", "agentry-manager")
	if diff := cmp.Diff([]any{"Ingress"}, field(t, np, "spec", "policyTypes")); diff != "" {
		t.Errorf("policyTypes (-want +got):\n%s", diff)
	}
	want := []any{
		map[string]any{
			"from":  []any{map[string]any{"namespaceSelector": map[string]any{}, "podSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "agentry.dev/session-uid", "operator": "Exists"}}}}},
			"ports": []any{map[string]any{"port": "gateway", "protocol": "TCP"}},
		},
		// Share links are for people, from anywhere; each link is checked against its share.
		map[string]any{"ports": []any{map[string]any{"port": "console", "protocol": "TCP"}}},
		map[string]any{
			"from":  []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"team": "monitoring"}}}},
			"ports": []any{map[string]any{"port": "metrics", "protocol": "TCP"}},
		},
		map[string]any{"ports": []any{map[string]any{"port": "probes", "protocol": "TCP"}}},
	}
	if diff := cmp.Diff(want, field(t, np, "spec", "ingress")); diff != "" {
		t.Errorf("ingress (-want +got):\n%s", diff)
	}
	np = find(t, decode(t, mustTemplate(t, "--set", "networkPolicy.egress[0].ports[0].port=443")), "NetworkPolicy", "agentry-manager")
	if diff := cmp.Diff([]any{"Ingress", "Egress"}, field(t, np, "spec", "policyTypes")); diff != "" {
		t.Errorf("with egress rules, policyTypes (-want +got):\n%s", diff)
	}
	if objs := decode(t, mustTemplate(t, "--set", "networkPolicy.enabled=false")); has(objs, "NetworkPolicy", "agentry-manager") {
		t.Error("networkPolicy.enabled=false still renders one")
	}
}

// TestDashboardConfigMap: the Grafana sidecar's label and the dashboard JSON.
func TestDashboardConfigMap(t *testing.T) {
	if objs := decode(t, mustTemplate(t)); has(objs, "ConfigMap", "agentry-dashboards") {
		t.Error("a dashboard ConfigMap by default")
	}
	objs := decode(t, mustTemplate(t, "--set", "dashboards.enabled=true", "--set", "dashboards.namespace=monitoring",
		"--set", "dashboards.label=grafana_dashboard", "--set", "dashboards.labelValue=agentry"))
	cm := find(t, objs, "ConfigMap", "agentry-dashboards")
	if cm.GetNamespace() != "monitoring" || cm.GetLabels()["grafana_dashboard"] != "agentry" {
		t.Errorf("dashboard ConfigMap %s labels %v", cm.GetNamespace(), cm.GetLabels())
	}
	if !strings.Contains(field(t, cm, "data", "agentry.json").(string), "agentry_sessions") {
		t.Error("the ConfigMap does not hold the dashboard")
	}
	objs = decode(t, mustTemplate(t, "--set", "dashboards.enabled=true"))
	if find(t, objs, "ConfigMap", "agentry-dashboards").GetLabels()["grafana_dashboard"] != "1" {
		t.Error(`default dashboard label is not grafana_dashboard: "1"`)
	}
}

// TestChartReadmeIsFresh: README.md's values table is what `make chart-readme` writes from
// values.yaml, and every value has a `# --` comment.
func TestChartReadmeIsFresh(t *testing.T) {
	cmd := exec.Command("go", "run", "./hack/chart-readme", "-chart", "charts/agentry", "-check")
	cmd.Dir = controlplane.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
}
