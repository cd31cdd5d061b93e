package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/agentry-dev/agentry/runner/gitrepo"
)

var errNoRepo = errors.New("the workspace is not a git repository; git_status and git_diff are unavailable")

// GitStatus lists changed files.
type GitStatus struct {
	typed[noArgs]
	Repo *gitrepo.Repo
}

func (*GitStatus) Name() string                    { return "git_status" }
func (*GitStatus) Kind() Kind                      { return KindRead }
func (*GitStatus) Describe(json.RawMessage) string { return "" }

type noArgs struct{}

func (*GitStatus) Description() string { return doc("git_status") }

type diffArgs struct {
	Path string `json:"path,omitempty" jsonschema:"Limit the diff to this file or directory"`
}

func (*GitDiff) Description() string { return doc("git_diff") }

func (t *GitStatus) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	if _, err := parse[noArgs](t, raw); err != nil {
		return "", err
	}
	if t.Repo == nil {
		return "", errNoRepo
	}
	s, err := t.Repo.Status()
	if err != nil {
		return "", err
	}
	if s == "" {
		return "working tree clean", nil
	}
	return s + "\n", nil
}

// GitDiff shows the session's changes as a patch.
type GitDiff struct {
	typed[diffArgs]
	Repo *gitrepo.Repo
	// MaxBytes bounds the output; 0 means 64 KiB.
	MaxBytes int
}

func (*GitDiff) Name() string { return "git_diff" }
func (*GitDiff) Kind() Kind   { return KindRead }

func (t *GitDiff) Describe(args json.RawMessage) string { return describeArg(args, "path") }

func (t *GitDiff) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	if t.Repo == nil {
		return "", errNoRepo
	}
	a, err := parse[diffArgs](t, raw)
	if err != nil {
		return "", err
	}
	var paths []string
	if a.Path != "" && a.Path != "." {
		paths = []string{a.Path}
	}
	p, err := t.Repo.Diff(paths...)
	if err != nil {
		return "", err
	}
	if len(p.Text) == 0 && len(p.Omitted) == 0 {
		return "no changes", nil
	}
	files, add, del := p.Totals()
	out := string(p.Text)
	if max := or(t.MaxBytes, 64<<10); len(out) > max {
		out = out[:max] + fmt.Sprintf("\n[diff truncated: %d of %d bytes shown; pass path to see one file]\n", max, len(p.Text))
	}
	var omitted strings.Builder
	for _, o := range p.Omitted {
		fmt.Fprintf(&omitted, "not in the patch: %q (%d bytes): %s\n", o.Path, o.Size, o.Reason)
	}
	return fmt.Sprintf("%s%s%d files changed, +%d -%d\n", out, omitted.String(), files, add, del), nil
}
