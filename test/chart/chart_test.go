// Package chart_test renders the Helm chart with the real helm and checks it against a real
// kube-apiserver and against the kustomize configuration it must agree with.
package chart_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/agentry-dev/agentry/test/controlplane"
)

func helmBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("AGENTRY_HELM")
	if bin == "" {
		matches, _ := filepath.Glob(filepath.Join(controlplane.RepoRoot(), "bin", "tools", "helm-*"))
		if len(matches) == 0 {
			t.Fatal("helm not found in bin/tools: run 'make setup'")
		}
		bin = matches[len(matches)-1]
	}
	return bin
}

func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = controlplane.RepoRoot()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}

func decode(t *testing.T, manifests []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if err.Error() == "EOF" {
				return objs
			}
			t.Fatalf("decoding manifests: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// helmTemplate renders the chart as release "agentry" in agentry-system with extra helm
// arguments, returning helm's error output when it refuses.
func helmTemplate(t *testing.T, args ...string) ([]byte, string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), append([]string{"template", "agentry", "charts/agentry", "--namespace", "agentry-system"}, args...)...)
	cmd.Dir = controlplane.RepoRoot()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.String(), err
}

func mustTemplate(t *testing.T, args ...string) []byte {
	t.Helper()
	out, errOut, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// managerArgs returns the manager container's args.
func managerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "agentry-manager").Object, "spec", "template", "spec", "containers")
	var args []string
	for _, a := range cs[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args
}

// installModes are the renderings the apiserver must accept: the defaults and each mode of
// the values that change which objects the chart makes.
var installModes = map[string][]string{
	"defaults":        nil,
	"tls none":        {"--set", "gateway.tls.mode=none"},
	"tls certManager": {"--set", "gateway.tls.mode=certManager", "--api-versions", "cert-manager.io/v1"},
	"tls certManager with an issuer": {"--set", "gateway.tls.mode=certManager", "--api-versions", "cert-manager.io/v1",
		"--set", "gateway.tls.certManager.issuerRef.name=corp-ca", "--set", "gateway.tls.certManager.issuerRef.kind=ClusterIssuer"},
	"serviceMonitor": {"--set", "metrics.serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"},
	"everything optional": {"--set", "s3.existingSecret=", "--set", "s3.endpoint=s3.example.com:443", "--set", "s3.accessKey=AK", "--set", "s3.secretKey=SK",
		"--set", "s3.caBundle=-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "--set", "s3.region=eu-west-1",
		"--set", "modelProvider.create=true", "--set", "modelProvider.apiKey=sk-test", "--set", "modelProvider.defaultModel=gpt-4.1",
		"--set", "modelProvider.models={gpt-4.1,gpt-4.1-mini}", "--set", "modelProvider.rateLimits.requestsPerMinute=500",
		"--set", "dashboards.enabled=true", "--set", "priorityClassName=system-cluster-critical",
		"--set", "networkPolicy.egress[0].ports[0].port=443", "--set", "imagePullSecrets[0].name=registry",
		"--set", "test.namespace=agentry-test", "--set", "test.repository.ref=main"},
	"one replica": {"--set", "replicas=1", "--set", "networkPolicy.enabled=false"},
}

// crdLessGroups are API groups whose CRDs the test apiserver lacks: their objects are checked
// field by field (TestCertManagerObjects, TestServiceMonitor) instead of by a dry run.
var crdLessGroups = []string{"cert-manager.io/", "monitoring.coreos.com/"}

// TestChartInstallsOnARealAPIServer renders the chart in each mode and has the apiserver
// validate every object (server-side dry run), as `helm install` would, under the restricted
// Pod Security level; and checks that the chart's RBAC and manager flags match the kustomize
// configuration generated from the code.
func TestChartInstallsOnARealAPIServer(t *testing.T) {
	run(t, nil, helmBinary(t), "lint", "--strict", "charts/agentry")
	rendered := mustTemplate(t, "--include-crds")
	objs := decode(t, rendered)

	env, err := controlplane.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, ns := range []string{"agentry-system", "agentry-test"} {
		if out, errOut, err := env.Kubectl(ctx, nil, "create", "namespace", ns); err != nil {
			t.Fatalf("%v: %s%s", err, out, errOut)
		}
		if out, errOut, err := env.Kubectl(ctx, nil, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted"); err != nil {
			t.Fatalf("%v: %s%s", err, out, errOut)
		}
	}
	out, errOut, err := env.Kubectl(ctx, rendered, "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("the apiserver refused the rendered chart: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"deployment.apps/agentry-manager", "clusterrole.rbac.authorization.k8s.io/agentry-manager", "service/agentry-gateway",
		"service/agentry-metrics", "poddisruptionbudget.policy/agentry-manager", "networkpolicy.networking.k8s.io/agentry-manager", "pod/agentry-selftest"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %s:\n%s", want, out)
		}
	}
	for name, args := range installModes {
		t.Run(name, func(t *testing.T) {
			var keep []*unstructured.Unstructured
			var skipped []string
		objects:
			for _, o := range decode(t, mustTemplate(t, args...)) {
				for _, g := range crdLessGroups {
					if strings.HasPrefix(o.GetAPIVersion(), g) {
						skipped = append(skipped, o.GetKind()+"/"+o.GetName())
						continue objects
					}
				}
				keep = append(keep, o)
			}
			var docs bytes.Buffer
			for _, o := range keep {
				b, err := o.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				docs.Write(b)
				docs.WriteString("\n")
			}
			out, errOut, err := env.Kubectl(ctx, docs.Bytes(), "apply", "--server-side", "--dry-run=server", "-f", "-")
			if err != nil {
				t.Fatalf("the apiserver refused the chart rendered with %v: %v\n%s%s", args, err, out, errOut)
			}
			if strings.Contains(errOut, "PodSecurity") || strings.Contains(errOut, "violate") {
				t.Errorf("rendered with %v, the restricted Pod Security level warns:\n%s", args, errOut)
			}
			t.Logf("accepted %d objects; checked by fields instead: %v", len(keep), skipped)
		})
	}

	kustomized := decode(t, run(t, nil, "kubectl", "kustomize", "config/default"))
	rules := func(u *unstructured.Unstructured) []rbacv1.PolicyRule {
		var r rbacv1.Role // a ClusterRole's rules decode the same way
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
			t.Fatal(err)
		}
		return r.Rules
	}
	if diff := cmp.Diff(rules(find(t, kustomized, "ClusterRole", "agentry-manager")), rules(find(t, objs, "ClusterRole", "agentry-manager"))); diff != "" {
		t.Errorf("chart ClusterRole differs from config/rbac (-kustomize +chart); run 'make manifests':\n%s", diff)
	}
	for _, o := range kustomized {
		if o.GetKind() == "Role" && o.GetName() == "agentry-manager" {
			if diff := cmp.Diff(rules(o), rules(find(t, objs, "Role", "agentry-manager"))); diff != "" {
				t.Errorf("chart Role differs from config/rbac (-kustomize +chart):\n%s", diff)
			}
		}
	}
	crdCount := 0
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crdCount++
		}
	}
	// AgentSession, AgentPolicy, ModelProvider, GitProvider, AgentSessionShare.
	if crdCount != 6 {
		t.Errorf("chart ships %d CRDs, want 6", crdCount)
	}
	args := fmt.Sprint(managerArgs(t, objs))
	for _, flag := range []string{"--runner-image=agentry/runner:dev", "--gateway-url=https://agentry-gateway.agentry-system.svc:8443", "--s3-bucket=agentry", "--gateway-max-request-bytes=256Mi"} {
		if !strings.Contains(args, flag) {
			t.Errorf("chart Deployment lacks %s: %s", flag, args)
		}
	}
}
