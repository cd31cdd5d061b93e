package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

// The runner pod trusts the gateway through the bundle the controller copies into the
// session's namespace; a namespace user who edits that copy sees it put back, and a CA
// rotation reaches the copy.
func TestGatewayCABundleIsCopiedAndKeptCurrent(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := create(t, testutil.Session("trusting", ns).Obj())
	pod := waitForPod(t, ctx, s)

	copyKey := client.ObjectKey{Namespace: ns, Name: testCAConfigMap}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, copyKey, cm); err != nil {
		t.Fatalf("no CA bundle in the session's namespace: %v", err)
	}
	if cm.Data[contract.GatewayCAKey] != testBundle || cm.Labels[contract.LabelGatewayCA] != contract.GatewayCACopy {
		t.Errorf("copy = %v labels %v", cm.Data, cm.Labels)
	}
	runner := containerByName(pod, contract.ContainerRunner)
	if !slices.Contains(runner.Args, "--gateway-ca-file") || slices.Contains(runner.Args, "--allow-plain-http-gateway") {
		t.Errorf("runner args %v: want --gateway-ca-file and no plain HTTP", runner.Args)
	}
	var projected bool
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ConfigMap != nil && src.ConfigMap.Name == testCAConfigMap {
				projected = true
			}
		}
	}
	if !projected {
		t.Error("the runner pod does not mount the CA bundle")
	}
	if agent := containerByName(pod, contract.ContainerAgent); agent != nil {
		for _, m := range agent.VolumeMounts {
			if m.Name == "gateway-token" {
				t.Error("the agent container mounts the gateway volume")
			}
		}
	}

	// A namespace user swaps in their own CA: it is put back.
	cm.Data[contract.GatewayCAKey] = "-----BEGIN CERTIFICATE-----\nattacker\n-----END CERTIFICATE-----\n"
	if err := env.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the tampered copy to be restored", func() error {
		got := &corev1.ConfigMap{}
		if err := env.Client.Get(ctx, copyKey, got); err != nil {
			return err
		}
		if got.Data[contract.GatewayCAKey] != testBundle {
			return fmt.Errorf("copy holds %q", got.Data[contract.GatewayCAKey])
		}
		return nil
	})

	// The manager rotates its CA: the new bundle reaches the copy (and so running pods).
	src := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: testCAConfigMap}, src); err != nil {
		t.Fatal(err)
	}
	rotated := testBundle + "-----BEGIN CERTIFICATE-----\nMIIB(successor)\n-----END CERTIFICATE-----\n"
	src.Data[contract.GatewayCAKey] = rotated
	if err := env.Client.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		src.Data[contract.GatewayCAKey] = testBundle
		_ = env.Client.Update(ctx, src)
	})
	eventually(t, ctx, "the rotated bundle to reach the session namespace", func() error {
		got := &corev1.ConfigMap{}
		if err := env.Client.Get(ctx, copyKey, got); err != nil {
			return err
		}
		if got.Data[contract.GatewayCAKey] != rotated {
			return fmt.Errorf("copy holds %q", got.Data[contract.GatewayCAKey])
		}
		return nil
	})
}

// A ConfigMap of the bundle's name that Agentry did not create is neither overwritten nor
// trusted: the session fails saying why, and the ConfigMap is left as it was.
func TestForeignCAConfigMapIsNotTrusted(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	theirs := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: testCAConfigMap, Namespace: ns},
		Data:       map[string]string{contract.GatewayCAKey: "someone else's CA", "other": "kept"},
	}
	if err := env.Client.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	startManager(t, ns)
	s := create(t, testutil.Session("foreign", ns).Obj())
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonGatewayUntrusted)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, ns+"/"+testCAConfigMap) || !strings.Contains(msg, contract.LabelGatewayCA) {
		t.Errorf("message does not name the ConfigMap and the label: %q", msg)
	}
	after := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(theirs), after); err != nil {
		t.Fatal(err)
	}
	if after.Data["other"] != "kept" || after.Data[contract.GatewayCAKey] != "someone else's CA" {
		t.Errorf("the user's ConfigMap was changed: %v", after.Data)
	}
	pods := &corev1.PodList{}
	if err := env.Client.List(ctx, pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d runner pods created with an untrusted bundle", len(pods.Items))
	}
}

// A plain-HTTP gateway (--gateway-tls=none) gets runner pods only in namespaces labelled to
// allow it; elsewhere the session fails naming the label.
func TestPlainHTTPGatewayNeedsTheNamespacesConsent(t *testing.T) {
	ctx := testContext(t, time.Minute)
	plain := func(r *AgentSessionReconciler) {
		r.Runner.GatewayURL = "http://agentry-gateway.agentry-system.svc:8443"
		r.Runner.GatewayCAConfigMap = ""
	}

	ns := restrictedNamespace(t, ctx)
	startManagerWith(t, ns, plain)
	s := create(t, testutil.Session("refused", ns).Obj())
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonGatewayUntrusted)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, contract.LabelGatewayPlainHTTP+"=allowed") {
		t.Errorf("message does not name the label: %q", msg)
	}

	allowed := restrictedNamespace(t, ctx)
	nsObj := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: allowed}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels[contract.LabelGatewayPlainHTTP] = "allowed"
	if err := env.Client.Update(ctx, nsObj); err != nil {
		t.Fatal(err)
	}
	startManagerWith(t, allowed, plain)
	pod := waitForPod(t, ctx, create(t, testutil.Session("consented", allowed).Obj()))
	if args := containerByName(pod, contract.ContainerRunner).Args; !slices.Contains(args, "--allow-plain-http-gateway") || slices.Contains(args, "--gateway-ca-file") {
		t.Errorf("runner args %v: want --allow-plain-http-gateway and no CA file", args)
	}
}
