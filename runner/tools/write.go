package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/agentry-dev/agentry/runner/workspace"
)

// maxWriteBytes bounds what one call can write; a model producing more is
// almost certainly looping.
const maxWriteBytes = 10 << 20

// WriteFile creates or replaces a file.
type WriteFile struct {
	typed[writeArgs]
	WS *workspace.Root
}

func (*WriteFile) Name() string { return "write_file" }
func (*WriteFile) Kind() Kind   { return KindWrite }

type writeArgs struct {
	Path string `json:"path" jsonschema:"File path relative to the workspace root"`
	// Content is a pointer so that a missing content is told from an empty file.
	Content *string `json:"content" jsonschema:"The complete new content of the file"`
}

func (writeArgs) bounds() bounds     { return bounds{"content": {typ: "string"}} }
func (a *writeArgs) missing() string { return missing("path", a.Path) }

func (*WriteFile) Description() string { return doc("write_file") }

func (t *WriteFile) Describe(args json.RawMessage) string {
	var a writeArgs
	if json.Unmarshal(args, &a) != nil || a.Content == nil {
		return describeArg(args, "path")
	}
	return fmt.Sprintf("%s (%d bytes)", a.Path, len(*a.Content))
}

func (t *WriteFile) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[writeArgs](t, raw)
	if err != nil {
		return "", err
	}
	if a.Content == nil {
		return "", fmt.Errorf("write_file: \"content\" is required (use an empty string for an empty file)")
	}
	if len(*a.Content) > maxWriteBytes {
		return "", fmt.Errorf("write_file: content is %d bytes, more than the %d byte limit; split the file", len(*a.Content), maxWriteBytes)
	}
	_, _, statErr := t.WS.Stat(a.Path)
	existed := statErr == nil
	rel, err := t.WS.WriteFile(a.Path, []byte(*a.Content))
	if err != nil {
		return "", err
	}
	verb := "created"
	if existed {
		verb = "overwrote"
	}
	return fmt.Sprintf("%s %s (%d bytes, %d lines)", verb, rel, len(*a.Content), countLines(*a.Content)), nil
}

func countLines(s string) int {
	if s == "" {
		return 0
	}
	n := strings.Count(s, "\n")
	if !strings.HasSuffix(s, "\n") {
		n++
	}
	return n
}

// EditFile replaces an exact string that occurs exactly once (or every
// occurrence, when asked).
type EditFile struct {
	typed[editArgs]
	WS *workspace.Root
}

func (*EditFile) Name() string { return "edit_file" }
func (*EditFile) Kind() Kind   { return KindWrite }

func (t *EditFile) Describe(args json.RawMessage) string { return describeArg(args, "path") }

type editArgs struct {
	Path       string `json:"path" jsonschema:"File path relative to the workspace root"`
	OldString  string `json:"old_string" jsonschema:"Exact text to replace"`
	NewString  string `json:"new_string" jsonschema:"Replacement text"`
	ReplaceAll bool   `json:"replace_all,omitempty" jsonschema:"Replace every occurrence instead of requiring exactly one. Default false"`
}

func (a *editArgs) missing() string { return missing("path", a.Path) }

func (*EditFile) Description() string { return doc("edit_file") }

func (t *EditFile) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[editArgs](t, raw)
	if err != nil {
		return "", err
	}
	if a.OldString == "" {
		return "", errors.New("edit_file: old_string is empty; to create a file or replace all of it use write_file")
	}
	if a.OldString == a.NewString {
		return "", errors.New("edit_file: old_string and new_string are identical; nothing would change")
	}
	data, err := t.WS.ReadFile(a.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w; use write_file to create a new file", err)
		}
		return "", err
	}
	rel, _ := t.WS.Rel(a.Path)
	if bytes.IndexByte(data[:min(len(data), 8<<10)], 0) >= 0 {
		return "", fmt.Errorf("%s is a binary file; edit_file only edits text", rel)
	}
	content := string(data)
	n := strings.Count(content, a.OldString)
	switch {
	case n == 0:
		return "", fmt.Errorf("edit_file: old_string was not found in %s (0 matches). %s", rel, notFoundHint(content, a.OldString))
	case n > 1 && !a.ReplaceAll:
		return "", fmt.Errorf("edit_file: old_string matches %d times in %s (at lines %s); include more surrounding lines to make it unique, or set replace_all to true",
			n, rel, matchLines(content, a.OldString, 10))
	}
	first := lineOf(content, strings.Index(content, a.OldString))
	updated := strings.Replace(content, a.OldString, a.NewString, 1)
	if a.ReplaceAll {
		updated = strings.ReplaceAll(content, a.OldString, a.NewString)
	}
	if _, err := t.WS.WriteFile(a.Path, []byte(updated)); err != nil {
		return "", err
	}
	if n == 1 {
		return fmt.Sprintf("edited %s: replaced 1 occurrence at line %d (%d lines removed, %d added)",
			rel, first, countLines(a.OldString), countLines(a.NewString)), nil
	}
	return fmt.Sprintf("edited %s: replaced %d occurrences (first at line %d)", rel, n, first), nil
}

func lineOf(s string, idx int) int { return strings.Count(s[:idx], "\n") + 1 }

func matchLines(content, sub string, max int) string {
	var lines []string
	from := 0
	for len(lines) < max {
		i := strings.Index(content[from:], sub)
		if i < 0 {
			break
		}
		lines = append(lines, fmt.Sprint(lineOf(content, from+i)))
		from += i + len(sub)
	}
	if strings.Count(content, sub) > max {
		lines = append(lines, "…")
	}
	return strings.Join(lines, ", ")
}

// notFoundHint diagnoses the usual reasons an exact match fails.
func notFoundHint(content, old string) string {
	if looksNumbered(old) {
		return "old_string seems to include read_file's line-number prefixes; remove them and copy only the file text."
	}
	if i := strings.Index(squash(content), squash(old)); i >= 0 && squash(old) != "" {
		return "A match exists if whitespace is ignored: indentation, tabs vs spaces or line endings differ. Re-read the file with read_file and copy the text exactly."
	}
	first := strings.TrimSpace(strings.SplitN(old, "\n", 2)[0])
	if first != "" {
		if i := strings.Index(content, first); i >= 0 {
			return fmt.Sprintf("Its first line appears at line %d, but the following lines differ; re-read that part of the file with read_file.", lineOf(content, i))
		}
	}
	return "Re-read the file with read_file and copy the text to replace exactly."
}

func looksNumbered(s string) bool {
	line := strings.SplitN(s, "\n", 2)[0]
	num, rest, ok := strings.Cut(strings.TrimLeft(line, " "), "\t")
	if !ok || num == "" || rest == "" {
		return false
	}
	for _, r := range num {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
