package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	sessiontest "github.com/agentry-dev/agentry/test/testutil"
)

// TestPhaseMetrics scrapes agentry_sessions as Prometheus would and checks the counts
// follow the sessions' phases.
func TestPhaseMetrics(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	reg := prometheus.NewRegistry()
	if err := RegisterPhaseMetrics(reg, client.NewNamespacedClient(env.Client, ns)); err != nil {
		t.Fatal(err)
	}
	for i, phase := range []v1.SessionPhase{v1.PhaseRunning, v1.PhaseRunning, v1.PhaseFailed} {
		s := create(t, sessiontest.Session("m-"+string(rune('a'+i)), ns).Obj())
		s.Status.Phase = phase
		if err := env.Client.Status().Update(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP agentry_sessions AgentSessions by phase.
# TYPE agentry_sessions gauge
agentry_sessions{phase="Cancelled"} 0
agentry_sessions{phase="Failed"} 1
agentry_sessions{phase="Pending"} 0
agentry_sessions{phase="Queued"} 0
agentry_sessions{phase="Running"} 2
agentry_sessions{phase="Succeeded"} 0
agentry_sessions{phase="WaitingForApproval"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "agentry_sessions"); err != nil {
		t.Fatal(err)
	}
}
