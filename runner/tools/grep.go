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
	WS *workspace.Root
	// MaxResults is the default cap on matches; 0 means 200.
	MaxResults int
}

func (*Grep) Name() string { return "grep" }
func (*Grep) Kind() Kind   { return KindRead }
func (*Grep) Description() string {
	return "Search file contents with a regular expression (RE2/Go syntax, matched per line). " +
		"Returns path:line:text for each matching line, sorted by path. Skips binary files and files ignored by .gitignore. " +
		"Narrow with path (a directory or file) and glob (e.g. \"*.go\" or \"**/*_test.go\")."
}
func (*Grep) Schema() json.RawMessage {
	return schema(`{"type":"object","properties":{` +
		`"pattern":{"type":"string","description":"Regular expression, e.g. \"func \\\\w+Handler\" or \"TODO\""},` +
		`"path":{"type":"string","description":"File or directory to search, relative to the workspace root. Default: the root"},` +
		`"glob":{"type":"string","description":"Only search files whose name (or path, if it contains /) matches this glob"},` +
		`"ignore_case":{"type":"boolean","description":"Case-insensitive match. Default false"},` +
		`"max_results":{"type":"integer","minimum":1,"maximum":2000,"description":"Stop after this many matching lines. Default 200"}},` +
		`"required":["pattern"],"additionalProperties":false}`)
}

type grepArgs struct {
	Pattern    string `json:"pattern"`
	Path       string `json:"path,omitempty"`
	Glob       string `json:"glob,omitempty"`
	IgnoreCase bool   `json:"ignore_case,omitempty"`
	MaxResults int    `json:"max_results,omitempty"`
}

func (*Grep) Args() any { return &grepArgs{} }

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
	var a grepArgs
	if err := decode(t, raw, &a); err != nil {
		return "", err
	}
	if err := required(t.Name(), "pattern", a.Pattern); err != nil {
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
