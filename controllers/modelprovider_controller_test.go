package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

func TestProviderReady(t *testing.T) {
	ref := &v1.SecretKeyRef{Name: "llm", Key: "token"}
	cases := map[string]struct {
		ref          *v1.SecretKeyRef
		sec          *corev1.Secret
		status       metav1.ConditionStatus
		reason, want string
	}{
		"no key needed":  {nil, nil, metav1.ConditionTrue, ReasonNoKeyRequired, "apiKeySecretRef is not set"},
		"no secret":      {ref, nil, metav1.ConditionFalse, ReasonSecretNotFound, "Secret ops/llm (spec.apiKeySecretRef) does not exist"},
		"no such key":    {ref, &corev1.Secret{Data: map[string][]byte{"apiKey": []byte("sk")}}, metav1.ConditionFalse, ReasonKeyMissing, `Secret ops/llm has no non-empty key "token"`},
		"empty key":      {ref, &corev1.Secret{Data: map[string][]byte{"token": []byte(" \n")}}, metav1.ConditionFalse, ReasonKeyMissing, `no non-empty key "token"`},
		"found":          {ref, &corev1.Secret{Data: map[string][]byte{"token": []byte("sk-secret")}}, metav1.ConditionTrue, ReasonKeyFound, `key "token" found in Secret ops/llm`},
		"default apiKey": {&v1.SecretKeyRef{Name: "llm"}, &corev1.Secret{Data: map[string][]byte{"apiKey": []byte("sk-secret")}}, metav1.ConditionTrue, ReasonKeyFound, `key "apiKey"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := &v1.ModelProvider{Spec: v1.ModelProviderSpec{APIKeySecretRef: c.ref}}
			got := providerReady(p, "ops", c.sec)
			if got.Status != c.status || got.Reason != c.reason || !strings.Contains(got.Message, c.want) {
				t.Errorf("got %s/%s %q, want %s/%s containing %q", got.Status, got.Reason, got.Message, c.status, c.reason, c.want)
			}
			if strings.Contains(got.Message, "sk-secret") {
				t.Errorf("message quotes the key: %q", got.Message)
			}
		})
	}
}

func TestModelProviderReadyFollowsItsSecret(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	ns, err := env.CreateNamespace(ctx, "operator", nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&ModelProviderReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: ns}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	p := &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: ns + "-llm"}, Spec: v1.ModelProviderSpec{
		BaseURL: "https://llm.example.com/v1", APIKeySecretRef: &v1.SecretKeyRef{Name: "llm-key", Key: "apiKey"}}}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	ready := func(reason string) func() error {
		return func() error {
			got := &v1.ModelProvider{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
				return err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, ConditionReady)
			if c == nil || c.Reason != reason || !strings.Contains(c.Message, ns+"/llm-key") {
				return fmt.Errorf("Ready = %+v, want reason %s naming Secret %s/llm-key", c, reason, ns)
			}
			return nil
		}
	}
	eventually(t, ctx, "Ready=False SecretNotFound", ready(ReasonSecretNotFound))
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm-key", Namespace: ns}, Data: map[string][]byte{"other": []byte("x")}}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "Ready=False KeyMissing after the Secret appears", ready(ReasonKeyMissing))
	sec.Data = map[string][]byte{"apiKey": []byte("sk-live")}
	if err := env.Client.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "Ready=True once the key is there", ready(ReasonKeyFound))
	if err := env.Client.Delete(ctx, sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "Ready=False when the Secret is deleted", ready(ReasonSecretNotFound))
}
