package controllers

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

const (
	// setupDir holds what the setup container reports to the runner: written in the setup
	// container, read-only in the runner's, absent from the agent's.
	setupDir        = "/agentry/setup"
	setupResultPath = setupDir + "/result.json"
	setupVolume     = "agentry-setup"
	// defaultSetupTimeout applies when spec.setup.timeout is not set.
	defaultSetupTimeout = 10 * time.Minute
)

// setupResultSize bounds the setup result volume: 32 commands' 64 KiB output tails, JSON
// escaped, fit with room to spare.
var setupResultSize = resource.MustParse("16Mi")

// withSetup adds the setup phase to a runner pod whose session has spec.setup: the setup
// init container between checkout and the agent, its result volume, and the runner's
// read-only view of the result.
func withSetup(pod *corev1.Pod, s *v1.AgentSession, cfg RunnerConfig, settings podSettings) {
	if s.Spec.Setup == nil {
		return
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: setupVolume, VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(setupResultSize)},
	}})
	var inits []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		if c.Name == contract.ContainerAgent {
			inits = append(inits, setupContainer(s, cfg, settings))
		}
		inits = append(inits, c)
	}
	pod.Spec.InitContainers = inits
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Name != contract.ContainerRunner {
			continue
		}
		c.Args = append(c.Args, flagArg(contract.FlagRunSetupResult), setupResultPath)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: setupVolume, MountPath: setupDir, ReadOnly: true})
	}
}

// setupContainer runs spec.setup.commands in the agent's image, as the agent's UID, with
// the agent's resources, and the only container holding the spec.setup.env Secrets: it has
// ended before the agent container starts.
func setupContainer(s *v1.AgentSession, cfg RunnerConfig, settings podSettings) corev1.Container {
	setup := s.Spec.Setup
	timeout := defaultSetupTimeout
	if setup.Timeout != nil {
		timeout = setup.Timeout.Duration
	}
	args := []string{contract.RunnerCmdSetup, flagArg(contract.FlagWorkspace), workspacePath, flagArg(contract.FlagSetupResult), setupResultPath,
		flagArg(contract.FlagTimeout), timeout.String()}
	env := []corev1.EnvVar{
		{Name: "HOME", Value: homePath},
		{Name: "TMPDIR", Value: tmpPath},
	}
	for _, e := range setup.Env {
		args = append(args, flagArg(contract.FlagSetupSecretEnv), e.Name)
		env = append(env, corev1.EnvVar{Name: e.Name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: e.SecretKeyRef.Name},
			Key:                  e.SecretKeyRef.Key,
		}}})
	}
	if len(setup.Env) > 0 {
		// Everything the agent container mounts writable: a command that stores a setup
		// Secret there fails setup instead of handing it to the agent.
		args = append(args, flagArg(contract.FlagSetupCheckDir), workspacePath, flagArg(contract.FlagSetupCheckDir), homePath, flagArg(contract.FlagSetupCheckDir), tmpPath)
	}
	for _, c := range setup.Commands {
		args = append(args, flagArg(contract.FlagSetupCommand), c)
	}
	image := agentImage(s, cfg)
	pull := corev1.PullIfNotPresent
	if image == cfg.Image {
		pull = cfg.ImagePullPolicy
	}
	return corev1.Container{
		Name:                     contract.ContainerSetup,
		Image:                    image,
		ImagePullPolicy:          pull,
		Command:                  []string{agentryBinPath + "/runner"},
		Args:                     args,
		WorkingDir:               workspacePath,
		Env:                      env,
		Resources:                settings.agentResources,
		SecurityContext:          restrictedContainerSecurity(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             append(toolchainMounts(), corev1.VolumeMount{Name: setupVolume, MountPath: setupDir}),
	}
}

// setupMessage is a failed setup's status message: the runner's summary (the command, how it
// ended and its output tail, already capped and redacted by the runner), kept whole.
func setupMessage(sum *contract.Summary) string {
	if sum == nil {
		return ""
	}
	return display.Truncate(strings.TrimSpace(sum.Message), 2048)
}

// hasSetupContainer reports whether a runner pod has the setup phase.
func hasSetupContainer(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == contract.ContainerSetup {
			return true
		}
	}
	return false
}
