package plugin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
)

func diffCommand(out io.Writer, a *artifactsCmd) *cobra.Command {
	var color string
	cmd := &cobra.Command{
		Use:   "diff SESSION",
		Short: "Print the change a session made (its archived patch)",
		Long: `Print the session's patch, read through a temporary share link (created and deleted by
this command). On a terminal it is coloured and its control characters are escaped; piped,
it is the patch byte for byte, ready for git apply (or use kubectl agentry apply).`,
		Example: `  kubectl agentry diff fix-flaky-test
  kubectl agentry diff fix-flaky-test --color=always | less -R
  kubectl agentry diff fix-flaky-test > fix.patch`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tty := isTerminal(out)
			var colored bool
			switch color {
			case "auto":
				colored = tty && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
			case "always":
				colored = true
			case "never":
			default:
				return usageErrorf("--color must be auto, always or never, got %q", color)
			}
			c, ns, err := a.connect()
			if err != nil {
				return err
			}
			patch, _, err := a.patch(cmd.Context(), c, cmd.ErrOrStderr(), ns, args[0])
			if err != nil {
				return err
			}
			if len(patch) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "session %s changed no files\n", args[0])
				return nil
			}
			if !colored && !tty {
				_, err = out.Write(patch)
				return err
			}
			return writeDiff(out, patch, colored)
		},
	}
	cmd.Flags().StringVar(&color, "color", "auto", "colour the patch: auto (on a terminal), always or never")
	return cmd
}

// patch reads the session and its archived patch, checked against the digest in status.
func (a *artifactsCmd) patch(ctx context.Context, c client.WithWatch, errOut io.Writer, ns, name string) ([]byte, *v1.AgentSession, error) {
	s, err := getSession(ctx, c, ns, name)
	if err != nil {
		return nil, nil, err
	}
	if !s.Status.Phase.IsTerminal() {
		return nil, s, fmt.Errorf("session %s/%s is %s: its patch is archived when it ends", ns, name, orDash(string(s.Status.Phase)))
	}
	if s.Status.Patch == nil && archived(s) && (s.Status.Result == nil || s.Status.Result.FilesChanged == 0) {
		return nil, s, nil // archived without a patch: nothing changed
	}
	files, err := a.fetchArchived(ctx, c, errOut, ns, name, patchFile)
	if err != nil {
		return nil, s, err
	}
	b := files[patchFile.path]
	if err := checkDigest("patch", b, s.Status.Patch); err != nil {
		return nil, s, err
	}
	return b, s, nil
}

// writeDiff prints a patch for a person: each line escaped (the agent wrote it), coloured
// as git colours a diff when colored.
func writeDiff(w io.Writer, patch []byte, colored bool) error {
	paint := func(code string, line []byte) string {
		s := display.Escape(string(line))
		if !colored {
			return s
		}
		return code + s + "\x1b[0m"
	}
	for _, line := range bytes.SplitAfter(patch, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		var s string
		switch {
		case bytes.HasPrefix(line, []byte("diff --git ")), bytes.HasPrefix(line, []byte("+++ ")), bytes.HasPrefix(line, []byte("--- ")),
			bytes.HasPrefix(line, []byte("index ")), bytes.HasPrefix(line, []byte("new file")), bytes.HasPrefix(line, []byte("deleted file")),
			bytes.HasPrefix(line, []byte("rename ")), bytes.HasPrefix(line, []byte("similarity ")):
			s = paint("\x1b[1m", line)
		case bytes.HasPrefix(line, []byte("@@")):
			s = paint("\x1b[36m", line)
		case line[0] == '+':
			s = paint("\x1b[32m", line)
		case line[0] == '-':
			s = paint("\x1b[31m", line)
		default:
			s = display.Escape(string(line))
		}
		if _, err := fmt.Fprintln(w, s); err != nil {
			return err
		}
	}
	return nil
}
