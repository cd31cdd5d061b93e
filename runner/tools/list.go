package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/agentry-dev/agentry/runner/workspace"
)

// ListDir lists one directory.
type ListDir struct {
	WS *workspace.Root
	// MaxEntries bounds the listing; 0 means 500.
	MaxEntries int
}

func (*ListDir) Name() string { return "list_dir" }
func (*ListDir) Kind() Kind   { return KindRead }
func (*ListDir) Description() string {
	return "List a directory of the workspace: directories end with /, symlinks show their target, files show their size. " +
		"Use glob to find files recursively."
}
func (*ListDir) Schema() json.RawMessage {
	return schema(`{"type":"object","properties":{` +
		`"path":{"type":"string","description":"Directory relative to the workspace root. Default: the root"}},` +
		`"additionalProperties":false}`)
}

func (t *ListDir) Describe(args json.RawMessage) string {
	if p := describeArg(args, "path"); p != "" {
		return p
	}
	return "."
}

type pathArgs struct {
	Path string `json:"path,omitempty"`
}

func (*ListDir) Args() any { return &pathArgs{} }

func (t *ListDir) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	var a pathArgs
	if err := decode(t, raw, &a); err != nil {
		return "", err
	}
	fi, rel, err := t.WS.Stat(a.Path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is a file, not a directory; use read_file to read it", rel)
	}
	ents, rel, err := t.WS.ReadDir(a.Path)
	if err != nil {
		return "", err
	}
	max := or(t.MaxEntries, 500)
	var b strings.Builder
	shown := 0
	for _, e := range ents {
		if e.Name() == ".git" {
			continue
		}
		if shown == max {
			fmt.Fprintf(&b, "[%d more entries not shown; use glob with a pattern to narrow down]\n", len(ents)-shown)
			break
		}
		shown++
		switch {
		case e.IsDir():
			fmt.Fprintf(&b, "%s/\n", e.Name())
		case e.Type()&fs.ModeSymlink != 0:
			target, err := t.WS.Readlink(joinRel(rel, e.Name()))
			if err != nil {
				target = "?"
			}
			fmt.Fprintf(&b, "%s@ -> %s\n", e.Name(), target)
		default:
			size := int64(-1)
			if info, err := e.Info(); err == nil {
				size = info.Size()
			}
			fmt.Fprintf(&b, "%s  (%s)\n", e.Name(), humanBytes(size))
		}
	}
	if shown == 0 {
		return fmt.Sprintf("(%s is empty)", rel), nil
	}
	return b.String(), nil
}

func joinRel(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

func humanBytes(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

// Glob finds files by path pattern.
type Glob struct {
	WS *workspace.Root
	// MaxResults bounds the output; 0 means 500.
	MaxResults int
}

func (*Glob) Name() string { return "glob" }
func (*Glob) Kind() Kind   { return KindRead }
func (*Glob) Description() string {
	return "Find files whose workspace-relative path matches a glob pattern. `**` matches any number of directories, " +
		"`*` and `?` match within one path segment, {a,b} lists alternatives: e.g. \"**/*_test.go\", \"cmd/*/main.go\", \"**/*.{ts,tsx}\". " +
		"Files ignored by .gitignore are skipped. Results are sorted."
}
func (*Glob) Schema() json.RawMessage {
	return schema(`{"type":"object","properties":{` +
		`"pattern":{"type":"string","description":"Glob pattern relative to path"},` +
		`"path":{"type":"string","description":"Directory to search from, relative to the workspace root. Default: the root"}},` +
		`"required":["pattern"],"additionalProperties":false}`)
}

type globArgs struct {
	Pattern string `json:"pattern"`
	Path    string `json:"path,omitempty"`
}

func (*Glob) Args() any { return &globArgs{} }

func (t *Glob) Describe(args json.RawMessage) string { return describeArg(args, "pattern") }

func (t *Glob) Execute(ctx context.Context, raw json.RawMessage) (string, error) {
	var a globArgs
	if err := decode(t, raw, &a); err != nil {
		return "", err
	}
	if err := required(t.Name(), "pattern", a.Pattern); err != nil {
		return "", err
	}
	base, err := t.WS.Rel(a.Path)
	if err != nil {
		return "", err
	}
	pattern := a.Pattern
	if base != "." {
		pattern = base + "/" + strings.TrimPrefix(a.Pattern, "./")
	}
	g, err := workspace.CompileGlob(pattern)
	if err != nil {
		return "", err
	}
	start := g.Base()
	if _, _, err := t.WS.Stat(start); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("no files match %q (%s does not exist)", a.Pattern, start), nil
		}
		return "", err
	}
	max := or(t.MaxResults, 500)
	var found []string
	more := 0
	err = t.WS.Walk(ctx, start, workspace.WalkOptions{}, func(e workspace.Entry) error {
		if e.Type.IsDir() || !g.Match(e.Path) {
			return nil
		}
		if len(found) == max {
			more++
			return nil
		}
		found = append(found, e.Path)
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(found) == 0 {
		return fmt.Sprintf("no files match %q", a.Pattern), nil
	}
	out := strings.Join(found, "\n") + "\n"
	if more > 0 {
		out += fmt.Sprintf("[%d more files match; use a more specific pattern]\n", more)
	}
	return out, nil
}
