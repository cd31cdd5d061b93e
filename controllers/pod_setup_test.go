package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

func setupSession() *v1.AgentSession {
	s := testutil.Session("fix", "team-a").UID("uid-1").Image("golang:1.26").Obj()
	s.Spec.Setup = &v1.SetupSpec{
		Commands: []string{"go mod download", "make deps"},
		Env:      []v1.SetupEnvVar{{Name: "GOPROXY_TOKEN", SecretKeyRef: v1.SecretKeySelector{Name: "proxy", Key: "token"}}},
		Timeout:  &metav1.Duration{Duration: 3 * time.Minute},
	}
	return s
}

func initContainerNames(p *corev1.Pod) []string {
	var names []string
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name)
	}
	return names
}

func TestSetupContainerOnlyWhenTheSessionHasSetup(t *testing.T) {
	plain := testutil.Session("fix", "team-a").UID("uid-1").Obj()
	pod := buildRunnerPod(plain, testRunnerConfig, defaultSettings(t, plain))
	if got := initContainerNames(pod); slices.Contains(got, contract.ContainerSetup) {
		t.Errorf("a session without spec.setup has a setup container: %v", got)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == setupVolume {
			t.Error("a session without spec.setup has the setup volume")
		}
	}
	if slices.Contains(containerByName(pod, contract.ContainerRunner).Args, "--setup-result") {
		t.Error("the runner is told to read a setup result that nothing writes")
	}

	s := setupSession()
	pod = buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	want := []string{contract.ContainerInstall, contract.ContainerCheckout, contract.ContainerSetup, contract.ContainerAgent}
	if got := initContainerNames(pod); !slices.Equal(got, want) {
		t.Fatalf("init containers %v, want %v (setup after checkout, before the agent)", got, want)
	}
	setup := containerByName(pod, contract.ContainerSetup)
	if setup.Image != "golang:1.26" || setup.Command[0] != "/agentry/bin/runner" || setup.RestartPolicy != nil {
		t.Errorf("setup runs %s %v (restartPolicy %v); want the toolchain image, the copied runner, run to completion", setup.Image, setup.Command, setup.RestartPolicy)
	}
	wantArgs := "setup --workspace /workspace --result /agentry/setup/result.json --timeout 3m0s --secret-env GOPROXY_TOKEN --check-dir /workspace --check-dir /home/agentry --check-dir /tmp --command go mod download --command make deps"
	if got := strings.Join(setup.Args, " "); got != wantArgs {
		t.Errorf("setup args\n got %q\nwant %q", got, wantArgs)
	}
	if agent := containerByName(pod, contract.ContainerAgent); !setup.Resources.Limits.Memory().Equal(*agent.Resources.Limits.Memory()) {
		t.Errorf("setup resources %+v, want the agent's %+v", setup.Resources, agent.Resources)
	}
	runner := containerByName(pod, contract.ContainerRunner)
	if !strings.Contains(strings.Join(runner.Args, " "), "--setup-result /agentry/setup/result.json") {
		t.Errorf("runner args lack --setup-result: %v", runner.Args)
	}
}

// The setup Secrets and the setup result belong to the setup phase: the agent container
// (every tool call, all repository code after setup) sees neither, and the runner reads
// the result but cannot be written to through it.
func TestSetupSecretsReachOnlyTheSetupContainer(t *testing.T) {
	s := setupSession()
	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		var fromSecret []string
		for _, e := range c.Env {
			if e.ValueFrom != nil {
				fromSecret = append(fromSecret, e.Name)
			}
		}
		if len(c.EnvFrom) != 0 {
			t.Errorf("container %s has envFrom %+v", c.Name, c.EnvFrom)
		}
		switch c.Name {
		case contract.ContainerSetup:
			if !slices.Equal(fromSecret, []string{"GOPROXY_TOKEN"}) {
				t.Errorf("setup env from Secrets = %v, want GOPROXY_TOKEN", fromSecret)
			}
			ref := c.Env[len(c.Env)-1].ValueFrom.SecretKeyRef
			if ref == nil || ref.Name != "proxy" || ref.Key != "token" {
				t.Errorf("GOPROXY_TOKEN comes from %+v, want Secret proxy key token", c.Env[len(c.Env)-1].ValueFrom)
			}
			if !hasMount(c.VolumeMounts, setupVolume) || hasMount(c.VolumeMounts, "gateway-token") || hasMount(c.VolumeMounts, "agentry-ipc") {
				t.Errorf("setup mounts %+v: want the setup volume, no token, no executor socket", c.VolumeMounts)
			}
		default:
			if len(fromSecret) != 0 {
				t.Errorf("container %s reads %v from Secrets", c.Name, fromSecret)
			}
		}
		for _, m := range c.VolumeMounts {
			if m.Name != setupVolume {
				continue
			}
			switch c.Name {
			case contract.ContainerSetup:
			case contract.ContainerRunner:
				if !m.ReadOnly {
					t.Error("the runner mounts the setup volume writable")
				}
			default:
				t.Errorf("container %s mounts the setup volume", c.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			t.Errorf("Secret volume %s: setup Secrets are env of the setup container only", v.Secret.SecretName)
		}
		if v.Name == setupVolume && (v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil) {
			t.Error("the setup volume is not a bounded emptyDir")
		}
	}
}

func TestSetupTimeoutDefaultsToTenMinutes(t *testing.T) {
	s := setupSession()
	s.Spec.Setup.Timeout = nil
	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	if got := strings.Join(containerByName(pod, contract.ContainerSetup).Args, " "); !strings.Contains(got, "--timeout 10m0s") {
		t.Errorf("setup args %q lack the default timeout", got)
	}
}

func TestSetupFailuresEndTheSessionSetupFailed(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tail := strings.Repeat("resolving deps\n", 40) + "npm ERR! 404 left-pad not found"
	failed := summaryJSON(t, contract.Summary{Outcome: contract.OutcomeSetupFailed, ExitCode: contract.ExitSetupFailed,
		Message: "setup failed: `npm ci` exited 1: …" + tail})
	cases := map[string]struct {
		pod        corev1.PodStatus
		wantPhase  v1.SessionPhase
		wantInMsg  []string
		wantReason string
	}{
		"a command failed: the runner reports it with the output tail": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerCheckout, 0, "Completed", ""), terminated(contract.ContainerSetup, 0, "Completed", "")},
				ContainerStatuses: []corev1.ContainerStatus{terminated(contract.ContainerRunner, int32(contract.ExitSetupFailed), "Error", failed)}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonSetupFailed,
			wantInMsg: []string{"`npm ci` exited 1", "npm ERR! 404 left-pad not found"},
		},
		"exit code 8 without a termination message": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{terminated(contract.ContainerRunner, int32(contract.ExitSetupFailed), "Error", "")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonSetupFailed, wantInMsg: []string{"spec.setup command failed"},
		},
		"setup running": {
			pod: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerCheckout, 0, "Completed", ""), {Name: contract.ContainerSetup, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
			wantPhase: v1.PhasePending, wantReason: v1.ReasonPending, wantInMsg: []string{"Running the setup commands."},
		},
		"runner setup itself failed (pod still pending)": {
			pod: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerCheckout, 0, "Completed", ""), terminated(contract.ContainerSetup, 1, "Error", "runner: writing the setup result: disk full")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonSetupFailed, wantInMsg: []string{"could not run", "writing the setup result"},
		},
		"runner setup itself failed (pod failed)": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerCheckout, 0, "Completed", ""), terminated(contract.ContainerSetup, 2, "Error", "runner: unknown flag")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonSetupFailed, wantInMsg: []string{"could not run", "exit code 2"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{Status: tc.pod}
			o := outcomeFromPod(pod, now)
			if o.phase != tc.wantPhase || o.reason != tc.wantReason {
				t.Errorf("phase/reason = %s/%s, want %s/%s (%s)", o.phase, o.reason, tc.wantPhase, tc.wantReason, o.message)
			}
			for _, w := range tc.wantInMsg {
				if !strings.Contains(o.message, w) {
					t.Errorf("message lacks %q: %q", w, o.message)
				}
			}
		})
	}
}
