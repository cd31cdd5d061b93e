package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/agentry-dev/agentry/runner/search"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// Grep searches file contents with a regular expression.
type Grep struct {
	typed[grepArgs]
	WS *workspace.Root
	// MaxResults is the default cap on matches; 0 means 200.
	MaxResults int
}

func (*Grep) Name() string { return "grep" }
func (*Grep) Kind() Kind   { return KindRead }

type grepArgs struct {
	Pattern    string `json:"pattern" jsonschema:"Regular expression, e.g. \"func \\\\w+Handler\" or \"TODO\""`
	Path       string `json:"path,omitempty" jsonschema:"File or directory to search, relative to the workspace root. Default: the root"`
	Glob       string `json:"glob,omitempty" jsonschema:"Only search files whose name (or path, if it contains /) matches this glob"`
	IgnoreCase bool   `json:"ignore_case,omitempty" jsonschema:"Case-insensitive match. Default false"`
	MaxResults int    `json:"max_results,omitempty" jsonschema:"Stop after this many matching lines. Default 200"`
}

func (grepArgs) bounds() bounds     { return bounds{"max_results": {min: 1, max: 2000}} }
func (a *grepArgs) missing() string { return missing("pattern", a.Pattern) }

func (*Grep) Description() string { return doc("grep") }

func (t *Grep) Describe(args json.RawMessage) string {
	s := fmt.Sprintf("/%s/", describeArg(args, "pattern"))
	if p := describeArg(args, "path"); p != "" {
		s += " in " + p
	}
	if g := describeArg(args, "glob"); g != "" {
		s += " (" + g + ")"
	}
	return s
}

func (t *Grep) Execute(ctx context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[grepArgs](t, raw)
	if err != nil {
		return "", err
	}
	limit := or(t.MaxResults, 200)
	if a.MaxResults > 0 {
		limit = min(a.MaxResults, 2000)
	}
	res, err := search.Grep(ctx, t.WS, search.Options{
		Pattern: a.Pattern, IgnoreCase: a.IgnoreCase, Path: a.Path, Glob: a.Glob, MaxMatches: limit,
	})
	if err != nil {
		return "", err
	}
	where := "the workspace"
	if a.Path != "" && a.Path != "." {
		where = a.Path
	}
	if len(res.Matches) == 0 {
		return fmt.Sprintf("no matches for /%s/ in %s (%d files searched; binary and .gitignored files skipped)", a.Pattern, where, res.FilesSearched), nil
	}
	var b strings.Builder
	for _, m := range res.Matches {
		fmt.Fprintf(&b, "%s:%d:%s\n", m.Path, m.Line, m.Text)
	}
	if res.Truncated {
		fmt.Fprintf(&b, "[stopped after %d matches; narrow the pattern, path or glob, or raise max_results]\n", limit)
	} else {
		fmt.Fprintf(&b, "[%d matches in %d files]\n", len(res.Matches), res.FilesMatched)
	}
	return b.String(), nil
}
