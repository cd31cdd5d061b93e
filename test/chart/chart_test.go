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

// TestChartInstallsOnARealAPIServer renders the chart and has the apiserver validate every
// object (server-side dry run), as `helm install` would, and checks that the chart's RBAC
// and manager flags match the kustomize configuration generated from the code.
func TestChartInstallsOnARealAPIServer(t *testing.T) {
	helm := helmBinary(t)
	run(t, nil, helm, "lint", "--strict", "charts/agentry")
	rendered := run(t, nil, helm, "template", "agentry", "charts/agentry", "--namespace", "agentry-system", "--include-crds")
	objs := decode(t, rendered)

	env, err := controlplane.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, errOut, err := env.Kubectl(ctx, nil, "create", "namespace", "agentry-system"); err != nil {
		t.Fatalf("%v: %s%s", err, out, errOut)
	}
	out, errOut, err := env.Kubectl(ctx, rendered, "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("the apiserver refused the rendered chart: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"deployment.apps/agentry-manager", "clusterrole.rbac.authorization.k8s.io/agentry-manager", "service/agentry-gateway"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %s:\n%s", want, out)
		}
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
	if crdCount != 3 {
		t.Errorf("chart ships %d CRDs, want 3", crdCount)
	}
	args := func(u *unstructured.Unstructured) string {
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		return fmt.Sprint(cs[0].(map[string]any)["args"])
	}
	for _, flag := range []string{"--runner-image=agentry/runner:dev", "--gateway-url=http://agentry-gateway.agentry-system.svc:8443", "--s3-bucket=agentry"} {
		if !strings.Contains(args(find(t, objs, "Deployment", "agentry-manager")), flag) {
			t.Errorf("chart Deployment lacks %s: %s", flag, args(find(t, objs, "Deployment", "agentry-manager")))
		}
	}
}
