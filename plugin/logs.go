package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

func logsCommand(out io.Writer, a *artifactsCmd) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs SESSION",
		Short: "Print the agent's steps: the runner's log, or the archived transcript once the pod is gone",
		Long: `Print the runner container's log: one line per model turn and tool call. With -f, keep
streaming until the pod ends. Once the pod is gone, the same kind of lines are rendered from
the archived transcript, read through a temporary share link (created and deleted by this
command; needs create, get, watch and delete on agentsessionshares).`,
		Example: `  kubectl agentry logs fix-flaky-test
  kubectl agentry logs fix-flaky-test -f -n team-a`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.logs(cmd.Context(), out, cmd.ErrOrStderr(), args[0], follow)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming the log until the runner's pod ends")
	return cmd
}

func (a *artifactsCmd) logs(ctx context.Context, out, errOut io.Writer, name string, follow bool) error {
	c, ns, err := a.connect()
	if err != nil {
		return err
	}
	s, err := getSession(ctx, c, ns, name)
	if err != nil {
		return err
	}
	if s.Status.PodName != "" {
		cfg, _, err := a.config()
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		err = streamRunnerLog(ctx, cs, c, s, follow, out)
		if err == nil || !apierrors.IsNotFound(err) {
			return err
		}
		// The pod is gone (deleted after the session ended): the archive has the same steps.
		fmt.Fprintf(errOut, "%s: pod %s is gone; showing the archived transcript\n", s.Name, s.Status.PodName)
	}
	if !archived(s) {
		if s.Status.PodName == "" {
			return fmt.Errorf("session %s/%s has no runner pod yet (phase %s) and no archived transcript", ns, name, orDash(string(s.Status.Phase)))
		}
		return fmt.Errorf("pod %s of session %s/%s is gone and the transcript is not archived (yet)", s.Status.PodName, ns, name)
	}
	files, err := a.fetchArchived(ctx, c, errOut, ns, name, transcriptFile)
	if err != nil {
		return err
	}
	b := files[transcriptFile.path]
	if err := checkDigest("transcript", b, s.Status.Transcript); err != nil {
		return err
	}
	evs, err := decodeTranscript(b)
	if err != nil {
		return fmt.Errorf("the archived transcript of session %s/%s: %w", ns, name, err)
	}
	writeSteps(out, evs)
	return nil
}

// archived reports whether the session's transcript is in object storage.
func archived(s *v1.AgentSession) bool {
	if s.Status.Transcript != nil && s.Status.Transcript.URI != "" {
		return true
	}
	return meta.IsStatusConditionTrue(s.Status.Conditions, v1.ConditionArchived)
}

// streamRunnerLog copies the runner container's log to out, a line at a time and escaped:
// the log holds what the agent and the repository wrote. With follow, a container that has
// not started yet is waited for while the session lasts. A NotFound error means the pod is
// gone.
func streamRunnerLog(ctx context.Context, cs kubernetes.Interface, c client.Client, s *v1.AgentSession, follow bool, out io.Writer) error {
	pod := s.Status.PodName
	for attempt := 1; ; attempt++ {
		stream, err := cs.CoreV1().Pods(s.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: contract.ContainerRunner, Follow: follow}).Stream(ctx)
		if err == nil {
			defer stream.Close()
			r := bufio.NewReaderSize(stream, 4096)
			for {
				line, err := readLine(r)
				if line != "" || err == nil {
					fmt.Fprintln(out, display.EscapeMultiline(line))
				}
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("reading the log of pod %s: %w", pod, err)
				}
			}
		}
		// A container that has not started yet is a Bad Request.
		if !apierrors.IsBadRequest(err) || !follow {
			if apierrors.IsNotFound(err) {
				return err
			}
			return fmt.Errorf("reading the log of container %s in pod %s: %w", contract.ContainerRunner, pod, err)
		}
		fresh := &v1.AgentSession{}
		if gerr := c.Get(ctx, client.ObjectKeyFromObject(s), fresh); gerr == nil && fresh.Status.Phase.IsTerminal() {
			return fmt.Errorf("session %s ended (%s) before its runner container started: %w", s.Name, fresh.Status.Phase, err)
		}
		if err := pause(ctx, backoff(min(attempt, 3))); err != nil {
			return err
		}
	}
}
