package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// ListDir lists one directory.
type ListDir struct {
	typed[listArgs]
	WS *workspace.Root
	// MaxEntries bounds the listing; 0 means 500.
	MaxEntries int
}

func (*ListDir) Name() string { return "list_dir" }
func (*ListDir) Kind() Kind   { return KindRead }

func (t *ListDir) Describe(args json.RawMessage) string {
	if p := describeArg(args, "path"); p != "" {
		return p
	}
	return "."
}

type listArgs struct {
	Path string `json:"path,omitempty" jsonschema:"Directory relative to the workspace root. Default: the root"`
}

func (*ListDir) Description() string { return doc("list_dir") }

func (t *ListDir) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[listArgs](t, raw)
	if err != nil {
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
			fmt.Fprintf(&b, "%s  (%s)\n", e.Name(), display.Bytes(size))
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

// Glob finds files by path pattern.
type Glob struct {
	typed[globArgs]
	WS *workspace.Root
	// MaxResults bounds the output; 0 means 500.
	MaxResults int
}

func (*Glob) Name() string { return "glob" }
func (*Glob) Kind() Kind   { return KindRead }

type globArgs struct {
	Pattern string `json:"pattern" jsonschema:"Glob pattern relative to path"`
	Path    string `json:"path,omitempty" jsonschema:"Directory to search from, relative to the workspace root. Default: the root"`
}

func (a *globArgs) missing() string { return missing("pattern", a.Pattern) }

func (*Glob) Description() string { return doc("glob") }

func (t *Glob) Describe(args json.RawMessage) string { return describeArg(args, "pattern") }

func (t *Glob) Execute(ctx context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[globArgs](t, raw)
	if err != nil {
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
