package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/controlplane"
)

// TestSelfTest runs `manager selftest` against a real apiserver, with a stand-in for the
// controller that ends the session it creates the way the reconciler would.
func TestSelfTest(t *testing.T) {
	env, err := controlplane.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	cases := map[string]struct {
		phase      v1.SessionPhase
		cond       metav1.Condition
		summary    string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		"succeeded": {
			phase:      v1.PhaseSucceeded,
			cond:       metav1.Condition{Type: v1.ConditionSucceeded, Status: metav1.ConditionTrue, Reason: v1.ReasonCompleted, Message: "The agent finished its task."},
			summary:    "The repository holds a single README.",
			wantCode:   selfTestPassed,
			wantStdout: []string{"Phase: Succeeded\n", "ended Succeeded", "Summary: The repository holds a single README.", "selftest: passed"},
		},
		"failed": {
			phase:      v1.PhaseFailed,
			cond:       metav1.Condition{Type: v1.ConditionSucceeded, Status: metav1.ConditionFalse, Reason: v1.ReasonCheckoutFailed, Message: "git clone: repository not found"},
			wantCode:   selfTestFailed,
			wantStderr: []string{"ended Failed", "reason CheckoutFailed: git clone: repository not found"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ns, err := env.CreateNamespace(ctx, "selftest", nil)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- finishFirstSession(ctx, env.Client, ns, tc.phase, tc.cond, tc.summary) }()

			var stdout, stderr bytes.Buffer
			code := runSelfTest(ctx, []string{"--namespace=" + ns, "--repository=https://git.example.com/a/b.git", "--timeout=2m"},
				func() (*rest.Config, error) { return env.Config, nil }, &stdout, &stderr)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout.String(), stderr.String())
			}
			for _, w := range tc.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			var left v1.AgentSessionList
			if err := env.Client.List(ctx, &left, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			if len(left.Items) != 0 {
				t.Errorf("selftest left %d sessions behind", len(left.Items))
			}
		})
	}
}

// TestSelfTestRefusesBadFlags: a missing namespace or repository, or a timeout shorter than
// any session's, is an error before anything is created.
func TestSelfTestRefusesBadFlags(t *testing.T) {
	noConfig := func() (*rest.Config, error) {
		t.Fatal("selftest read the cluster configuration despite bad flags")
		return nil, nil
	}
	for _, args := range [][]string{
		{"--repository=https://git.example.com/a/b.git"},
		{"--namespace=ns"},
		{"--namespace=ns", "--repository=https://git.example.com/a/b.git", "--timeout=30s"},
		{"--namespace=ns", "--repository=https://git.example.com/a/b.git", "--unknown"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runSelfTest(context.Background(), args, noConfig, &stdout, &stderr); code != selfTestError {
			t.Errorf("%v: exit code %d, want %d", args, code, selfTestError)
		}
		if stderr.Len() == 0 {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
}

// finishFirstSession waits for the selftest's session to appear, checks what it asks for,
// then writes a terminal status as the reconciler would.
func finishFirstSession(ctx context.Context, c client.Client, ns string, phase v1.SessionPhase, cond metav1.Condition, summary string) error {
	var s *v1.AgentSession
	for s == nil {
		var list v1.AgentSessionList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			s = &list.Items[0]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !strings.HasPrefix(s.Name, "agentry-selftest-") {
		return fmt.Errorf("session name %q lacks the agentry-selftest- prefix", s.Name)
	}
	if got := s.Spec.Tools; len(got) != 2 || got[0] != v1.ToolListDir || got[1] != v1.ToolReadFile {
		return fmt.Errorf("session tools %v, want [list_dir read_file]", got)
	}
	// Running first, then the end: the selftest must wait past a non-terminal phase.
	s.Status.Phase = v1.PhaseRunning
	if err := c.Status().Update(ctx, s); err != nil {
		return err
	}
	s.Status.Phase = phase
	cond.LastTransitionTime = metav1.Now()
	s.Status.Conditions = []metav1.Condition{cond}
	if summary != "" {
		s.Status.Result = &v1.SessionResult{Summary: summary}
	}
	if err := c.Status().Update(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
