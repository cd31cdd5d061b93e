package controllers

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

// The runner compacts its history against the window its ModelProvider declares for the
// session's model, the provider's default model included.
func TestRunnerPodCarriesTheModelsContextWindow(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	provider := "windows-" + ns
	if err := env.Client.Create(ctx, &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: provider},
		Spec: v1.ModelProviderSpec{
			BaseURL: "https://llm.example.com/v1", DefaultModel: "small", Models: []string{"small", "large"},
			ContextWindow: ptr.To[int64](32_000), ModelContextWindows: map[string]int64{"large": 1_000_000},
		}}); err != nil {
		t.Fatal(err)
	}
	startManager(t, ns)

	cases := map[string]string{"": "32000", "large": "1000000"}
	for model, want := range cases {
		s := testutil.Session("model-"+model+"x", ns).Obj()
		s.Spec.Model.Provider, s.Spec.Model.Name = provider, model
		pod := waitForPod(t, ctx, create(t, s))
		args := containerByName(pod, contract.ContainerRunner).Args
		if i := slices.Index(args, "--context-window"); i < 0 || args[i+1] != want {
			t.Errorf("model %q: runner args %v, want --context-window %s", model, args, want)
		}
	}

	// The default provider declares no window: no compaction flag.
	s := create(t, testutil.Session("no-window", ns).Obj())
	if args := containerByName(waitForPod(t, ctx, s), contract.ContainerRunner).Args; slices.Contains(args, "--context-window") {
		t.Errorf("runner args %v carry --context-window for a provider without one", args)
	}
}
