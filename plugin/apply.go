package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentry-dev/agentry/display"
)

func applyCommand(out io.Writer, a *artifactsCmd) *cobra.Command {
	var dir string
	var forceBase bool
	cmd := &cobra.Command{
		Use:   "apply SESSION",
		Short: "Apply a session's patch to a local checkout with git apply",
		Long: `Read the session's patch through a temporary share link and apply it to the git checkout
in --dir with the git on your PATH (git apply: the working tree only, nothing staged). It
refuses when the checkout's HEAD is not the commit the session started from
(status.resolved.commitSHA) unless --force-base, and when a file the patch touches has
uncommitted changes.`,
		Example: `  kubectl agentry apply fix-flaky-test
  kubectl agentry apply fix-flaky-test --dir ~/src/app --force-base`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.apply(cmd.Context(), out, cmd.ErrOrStderr(), args[0], dir, forceBase)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "the git checkout to apply the patch to")
	cmd.Flags().BoolVar(&forceBase, "force-base", false, "apply even when HEAD is not the commit the session started from")
	return cmd
}

func (a *artifactsCmd) apply(ctx context.Context, out, errOut io.Writer, name, dir string, forceBase bool) error {
	top, err := git(ctx, dir, nil, "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("--dir %s is not a git checkout: %w", dir, err)
	}
	top = strings.TrimSpace(top)
	head, err := git(ctx, top, nil, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return fmt.Errorf("reading HEAD of %s: %w", top, err)
	}
	head = strings.TrimSpace(head)
	c, ns, err := a.connect()
	if err != nil {
		return err
	}
	s, err := getSession(ctx, c, ns, name)
	if err != nil {
		return err
	}
	base := ""
	if s.Status.Resolved != nil {
		base = s.Status.Resolved.CommitSHA
	}
	switch {
	case base == "" && !forceBase:
		return fmt.Errorf("session %s/%s records no base commit (status.resolved.commitSHA); use --force-base to apply on %s anyway", ns, name, head)
	case base != "" && base != head && !forceBase:
		return fmt.Errorf("session %s/%s started from commit %s, but %s is at %s: check out %s first, or use --force-base",
			ns, name, display.Escape(base), top, head, display.Escape(base))
	}
	patch, _, err := a.patch(ctx, c, errOut, ns, name)
	if err != nil {
		return err
	}
	if len(patch) == 0 {
		fmt.Fprintf(out, "session %s changed no files; nothing to apply\n", name)
		return nil
	}
	stats, err := patchStats(ctx, top, patch)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(stats))
	for _, st := range stats {
		paths = append(paths, st.paths...)
	}
	// Changes in a touched file would be mixed with the agent's: refuse, as git stash would.
	dirty, err := git(ctx, top, nil, append([]string{"status", "--porcelain", "--untracked-files=all", "--"}, literal(paths)...)...)
	if err != nil {
		return fmt.Errorf("checking %s for uncommitted changes: %w", top, err)
	}
	if strings.TrimSpace(dirty) != "" {
		return fmt.Errorf("files the patch touches have uncommitted changes in %s; commit or stash them first:\n%s", top, display.EscapeMultiline(strings.TrimRight(dirty, "\n")))
	}
	// git apply refuses paths outside the checkout, through symlinks or into .git.
	if _, err := git(ctx, top, patch, "apply", "--check", "-"); err != nil {
		return fmt.Errorf("the patch does not apply to %s: %w", top, err)
	}
	if _, err := git(ctx, top, patch, "apply", "-"); err != nil {
		return fmt.Errorf("applying the patch to %s: %w", top, err)
	}
	fmt.Fprintf(out, "applied session %s's patch to %s (%d files):\n", name, top, len(stats))
	for _, st := range stats {
		fmt.Fprintf(out, "  %s\n", st.line)
	}
	if base != "" && base != head {
		fmt.Fprintf(out, "note: the session started from %s, the checkout is at %s (--force-base)\n", display.Escape(base), head)
	}
	return nil
}

type fileStat struct {
	paths []string // one, or a rename's two
	line  string
}

// patchStats lists the files a patch touches, as git reads it (git apply --numstat -z).
func patchStats(ctx context.Context, dir string, patch []byte) ([]fileStat, error) {
	raw, err := git(ctx, dir, patch, "apply", "--numstat", "-z", "-")
	if err != nil {
		return nil, fmt.Errorf("reading the patch: %w", err)
	}
	var stats []fileStat
	fields := strings.Split(raw, "\x00")
	for i := 0; i < len(fields); i++ {
		rec := fields[i]
		if rec == "" {
			continue
		}
		parts := strings.SplitN(rec, "\t", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("unexpected git apply --numstat output %q", display.Escape(rec))
		}
		counts := "+" + parts[0] + " -" + parts[1]
		if parts[0] == "-" {
			counts = "binary"
		}
		if parts[2] != "" {
			stats = append(stats, fileStat{paths: []string{parts[2]}, line: display.Escape(parts[2]) + "  " + counts})
			continue
		}
		// A rename: the two paths follow as their own fields.
		if i+2 >= len(fields) {
			return nil, errors.New("unexpected end of git apply --numstat output")
		}
		from, to := fields[i+1], fields[i+2]
		i += 2
		stats = append(stats, fileStat{paths: []string{from, to}, line: display.Escape(from) + " → " + display.Escape(to) + "  " + counts})
	}
	return stats, nil
}

// literal makes paths pathspecs that match only themselves.
func literal(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = ":(literal)" + p
	}
	return out
}

// git runs the user's git in dir; its error carries git's stderr.
func git(ctx context.Context, dir string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, display.EscapeMultiline(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), nil
}
