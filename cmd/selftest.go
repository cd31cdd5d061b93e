package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// Exit codes of `manager selftest`.
const (
	selfTestPassed = 0
	selfTestFailed = 1 // the session ended other than Succeeded, or did not end in time
	selfTestError  = 2 // bad flags, or the session could not be created or watched
)

// selfTestOptions are the flags of `manager selftest`.
type selfTestOptions struct {
	namespace, provider, model, repository, ref, task string
	timeout                                           time.Duration
}

// selfTest is the program `helm test` runs in the manager image: it creates a tiny read-only
// AgentSession, waits until it ends, prints its outcome, deletes it and passes only when it
// Succeeded.
func selfTest(args []string) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return runSelfTest(ctx, args, ctrl.GetConfig, os.Stdout, os.Stderr)
}

func runSelfTest(ctx context.Context, args []string, config func() (*rest.Config, error), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("selftest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o selfTestOptions
	fs.StringVar(&o.namespace, "namespace", "", "Namespace the test session runs in.")
	fs.StringVar(&o.provider, "provider", "", "ModelProvider of the session (empty: the default provider).")
	fs.StringVar(&o.model, "model", "", "Model of the session (empty: the provider's default).")
	fs.StringVar(&o.repository, "repository", "", "Clone URL of the repository the session reads.")
	fs.StringVar(&o.ref, "ref", "", "Branch, tag or commit (empty: the default branch).")
	fs.StringVar(&o.task, "task", "List the files at the top of the repository and say in one sentence what the repository is.", "What the agent is asked to do.")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "How long to wait for the session to end; also its own timeout (at least 1m).")
	if err := fs.Parse(args); err != nil {
		return selfTestError
	}
	switch {
	case o.namespace == "":
		fmt.Fprintln(stderr, "selftest: --namespace is required")
		return selfTestError
	case o.repository == "":
		fmt.Fprintln(stderr, "selftest: --repository is required")
		return selfTestError
	case o.timeout < time.Minute:
		fmt.Fprintf(stderr, "selftest: --timeout %s: at least 1m (the shortest session timeout)\n", o.timeout)
		return selfTestError
	}
	cfg, err := config()
	if err != nil {
		fmt.Fprintln(stderr, "selftest: no cluster configuration:", err)
		return selfTestError
	}
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(stderr, "selftest:", err)
		return selfTestError
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(stderr, "selftest: creating a client:", err)
		return selfTestError
	}
	return o.run(ctx, c, stdout, stderr)
}

func (o selfTestOptions) session() *v1.AgentSession {
	return &v1.AgentSession{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "agentry-selftest-",
			Namespace:    o.namespace,
			Labels:       map[string]string{"app.kubernetes.io/part-of": "agentry", "app.kubernetes.io/component": "selftest"},
		},
		Spec: v1.AgentSessionSpec{
			Task:       o.task,
			Repository: v1.RepositorySpec{URL: o.repository, Ref: o.ref},
			Model:      v1.ModelSpec{Provider: o.provider, Name: o.model},
			// Read-only tools: nothing needs an approval, so the session runs unattended.
			Tools:  []v1.ToolName{v1.ToolListDir, v1.ToolReadFile},
			Limits: v1.Limits{MaxTurns: 10, Timeout: &metav1.Duration{Duration: o.timeout}},
		},
	}
}

func (o selfTestOptions) run(ctx context.Context, c client.WithWatch, stdout, stderr io.Writer) int {
	s := o.session()
	if err := c.Create(ctx, s); err != nil {
		fmt.Fprintf(stderr, "selftest: creating an AgentSession in %s: %v\n", o.namespace, err)
		return selfTestError
	}
	fmt.Fprintf(stdout, "Created AgentSession %s/%s; waiting up to %s for it to end\n", s.Namespace, s.Name, o.timeout)
	defer func() {
		// A fresh context: the session goes even when the wait was interrupted.
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Delete(dctx, s, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(stderr, "selftest: deleting AgentSession %s/%s: %v\n", s.Namespace, s.Name, err)
		}
	}()
	// The session's own timeout counts from pod start; a minute more lets the controller
	// record it as the reason rather than this program giving up first.
	wctx, cancel := context.WithTimeout(ctx, o.timeout+time.Minute)
	defer cancel()
	phase := v1.SessionPhase("")
	progress := func(s *v1.AgentSession) { // phase changes, so `helm test --logs` shows how far it got
		if s.Status.Phase != phase {
			phase = s.Status.Phase
			fmt.Fprintf(stdout, "Phase: %s\n", phaseOf(s))
		}
	}
	ended, err := waitForEnd(wctx, c, s, progress)
	if err != nil {
		fmt.Fprintf(stderr, "selftest: AgentSession %s/%s did not end: %v (last phase %s)\n", s.Namespace, s.Name, err, phaseOf(ended))
		printCondition(stderr, ended)
		return selfTestFailed
	}
	fmt.Fprintf(stdout, "AgentSession %s/%s ended %s\n", s.Namespace, s.Name, ended.Status.Phase)
	if r := ended.Status.Result; r != nil && r.Summary != "" {
		fmt.Fprintf(stdout, "Summary: %s\n", r.Summary)
	}
	if ended.Status.Phase != v1.PhaseSucceeded {
		fmt.Fprintf(stderr, "selftest: failed: AgentSession %s/%s ended %s\n", s.Namespace, s.Name, ended.Status.Phase)
		printCondition(stderr, ended)
		return selfTestFailed
	}
	fmt.Fprintln(stdout, "selftest: passed")
	return selfTestPassed
}

// waitForEnd watches the session until its phase is terminal; it returns the last version
// seen (the created object when none was).
func waitForEnd(ctx context.Context, c client.WithWatch, s *v1.AgentSession, progress func(*v1.AgentSession)) (*v1.AgentSession, error) {
	last := s
	for {
		var list v1.AgentSessionList
		sel := client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", s.Name)}
		if err := c.List(ctx, &list, client.InNamespace(s.Namespace), sel); err != nil {
			return last, err
		}
		if len(list.Items) == 0 {
			return last, errors.New("it was deleted")
		}
		last = &list.Items[0]
		progress(last)
		if last.Status.Phase.IsTerminal() {
			return last, nil
		}
		w, err := c.Watch(ctx, &v1.AgentSessionList{}, client.InNamespace(s.Namespace), sel,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			return last, err
		}
		last, err = watchUntilEnd(ctx, w.ResultChan(), last, progress)
		w.Stop()
		if err != nil || last.Status.Phase.IsTerminal() {
			return last, err
		}
		// The watch closed (the apiserver ends watches now and then): list and watch again.
	}
}

func watchUntilEnd(ctx context.Context, events <-chan watch.Event, last *v1.AgentSession, progress func(*v1.AgentSession)) (*v1.AgentSession, error) {
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return last, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return last, errors.New("it was deleted")
			case watch.Error:
				return last, apierrors.FromObject(ev.Object)
			}
			if s, ok := ev.Object.(*v1.AgentSession); ok {
				last = s
				progress(s)
				if s.Status.Phase.IsTerminal() {
					return last, nil
				}
			}
		}
	}
}

func phaseOf(s *v1.AgentSession) string {
	if s == nil || s.Status.Phase == "" {
		return "none"
	}
	return string(s.Status.Phase)
}

// printCondition prints the Succeeded condition, which says why a session did not succeed.
func printCondition(w io.Writer, s *v1.AgentSession) {
	if s == nil {
		return
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded); c != nil {
		fmt.Fprintf(w, "  condition %s=%s reason %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
}
