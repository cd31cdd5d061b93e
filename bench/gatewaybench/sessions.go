package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// benchSession is one simulated runner's session: its object, its pod and the token the
// kubelet would project into the pod.
type benchSession struct {
	key   types.NamespacedName
	uid   types.UID
	pod   string
	token string
}

// createSessions creates n sessions across namespaces (each with a default ServiceAccount,
// as the ServiceAccount controller would make, and an AgentPolicy with a token budget, so
// budget accounting runs on every model call), lets the real reconciler create their pods,
// plays the kubelet (init containers done, runner running), waits until the reconciler
// narrowed every NetworkPolicy to the agent phase, and mints each pod's gateway token.
func createSessions(ctx context.Context, c client.Client, kube *kubernetes.Clientset, n, namespaces int, budget bool) ([]*benchSession, error) {
	nss := make([]string, namespaces)
	for i := range nss {
		nss[i] = fmt.Sprintf("team-%02d", i)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nss[i]}}); err != nil {
			return nil, err
		}
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: nss[i]}}); err != nil {
			return nil, err
		}
		if budget {
			if err := c.Create(ctx, &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "budget", Namespace: nss[i]},
				Spec: v1.AgentPolicySpec{TokenBudget: &v1.TokenBudget{Tokens: 1 << 50}}}); err != nil {
				return nil, err
			}
		}
	}
	out := make([]*benchSession, n)
	err := parallel(ctx, n, 16, func(i int) error {
		s := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%04d", i), Namespace: nss[i%namespaces]},
			Spec: v1.AgentSessionSpec{
				Task: "Fix the failing test in pkg/parse.",
				// An IP host: the reconciler resolves repository hosts for the NetworkPolicy.
				Repository: v1.RepositorySpec{URL: "https://127.0.0.1/org/repo.git"},
				Limits:     v1.Limits{MaxTokens: 1_000_000_000},
			}}
		if err := c.Create(ctx, s); err != nil {
			return fmt.Errorf("creating session %d: %w", i, err)
		}
		out[i] = &benchSession{key: client.ObjectKeyFromObject(s), uid: s.UID}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 5*time.Minute, "every session's pod recorded in status.podUID", func() (bool, error) {
		return allSessions(ctx, c, nss, func(s *v1.AgentSession) bool { return s.Status.PodUID != "" })
	}); err != nil {
		return nil, err
	}
	err = parallel(ctx, n, 16, func(i int) error {
		bs := out[i]
		s := &v1.AgentSession{}
		if err := c.Get(ctx, bs.key, s); err != nil {
			return err
		}
		bs.pod = s.Status.PodName
		pod := &corev1.Pod{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: bs.key.Namespace, Name: bs.pod}, pod); err != nil {
			return err
		}
		if err := runPod(ctx, c, pod); err != nil {
			return err
		}
		tr, err := kube.CoreV1().ServiceAccounts(bs.key.Namespace).CreateToken(ctx, "default", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
			Audiences: []string{contract.GatewayAudience}, ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("minting the token of pod %s: %w", pod.Name, err)
		}
		bs.token = tr.Status.Token
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 5*time.Minute, "every NetworkPolicy narrowed to the agent phase", func() (bool, error) {
		agent := 0
		for _, ns := range nss {
			var l networkingv1.NetworkPolicyList
			if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
				return false, err
			}
			for _, np := range l.Items {
				if np.Annotations[contract.AnnotationEgressPhase] == contract.EgressPhaseAgent {
					agent++
				}
			}
		}
		return agent >= n, nil
	}); err != nil {
		return nil, err
	}
	// The gateway holds model calls for AgentPhaseSettle after the narrowing.
	time.Sleep(2500 * time.Millisecond)
	return out, nil
}

// runPod writes the pod status a kubelet writes once the init containers finished and
// the runner started.
func runPod(ctx context.Context, c client.Client, pod *corev1.Pod) error {
	now := metav1.Now()
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	done := func(name string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &now
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{
		done(contract.ContainerInstall), done(contract.ContainerCheckout),
		{Name: contract.ContainerAgent, Ready: true, Started: ptr.To(true), State: running},
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: contract.ContainerRunner, Ready: true, Started: ptr.To(true), State: running}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("writing the status of pod %s as the kubelet: %w", pod.Name, err)
	}
	return nil
}

func allSessions(ctx context.Context, c client.Client, nss []string, ok func(*v1.AgentSession) bool) (bool, error) {
	for _, ns := range nss {
		var l v1.AgentSessionList
		if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for i := range l.Items {
			if !ok(&l.Items[i]) {
				return false, nil
			}
		}
	}
	return true, nil
}

func waitFor(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		done, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(int) error) error {
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}
