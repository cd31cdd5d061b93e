// Package delivery turns a finished session's archived patch into a commit on a branch of
// the session's repository, pushed with a GitProvider's credential. It runs in the manager,
// never in a runner pod, and treats the patch as hostile input: every path is checked
// before it reaches a tree, and a change that does not apply exactly is refused, never
// fuzzed.
package delivery

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/agentry-dev/agentry/runner/workspace"
)

// FileChange is one file's change in a patch.
type FileChange struct {
	// OldPath and NewPath are the file's paths before and after; "" for a file that is
	// created (OldPath) or deleted (NewPath).
	OldPath, NewPath string
	// OldMode and NewMode are git file modes (0o100644, 0o100755, 0o120000); 0 when absent.
	OldMode, NewMode uint32
	// Binary is set for a binary change, which a text patch cannot carry.
	Binary bool
	Hunks  []Hunk
}

// Hunk is one @@ section.
type Hunk struct {
	OldStart, OldLines int
	NewStart, NewLines int
	// Lines are the hunk's lines with their leading ' ', '-' or '+', each ending in "\n"
	// unless it was marked "\ No newline at end of file".
	Lines []string
}

// ErrPatch marks a patch that cannot be parsed or carries a path or mode that must not be
// delivered.
var ErrPatch = errors.New("invalid patch")

// ConflictError says a change does not apply on the content it is applied to.
type ConflictError struct {
	Path string
	Hunk int
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: hunk %d does not apply on the base", e.Path, e.Hunk)
}

// ParsePatch reads a git-format unified diff (what the runner archives as result.patch).
func ParsePatch(text []byte) ([]FileChange, error) {
	lines := splitLines(text)
	var out []FileChange
	var cur *FileChange
	flush := func() error {
		if cur == nil {
			return nil
		}
		if err := checkChange(cur); err != nil {
			return err
		}
		out = append(out, *cur)
		cur = nil
		return nil
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "diff --git "):
			if err := flush(); err != nil {
				return nil, err
			}
			a, b, ok := splitGitHeader(strings.TrimSuffix(l[len("diff --git "):], "\n"))
			if !ok {
				return nil, fmt.Errorf("%w: line %d: cannot read the paths of %q", ErrPatch, i+1, trimLine(l))
			}
			cur = &FileChange{OldPath: a, NewPath: b}
		case cur == nil:
			if strings.TrimSpace(l) == "" {
				continue
			}
			return nil, fmt.Errorf("%w: line %d: text before the first file header", ErrPatch, i+1)
		case strings.HasPrefix(l, "new file mode "):
			m, err := parseMode(l[len("new file mode "):])
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
			}
			cur.NewMode, cur.OldPath = m, ""
		case strings.HasPrefix(l, "deleted file mode "):
			m, err := parseMode(l[len("deleted file mode "):])
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
			}
			cur.OldMode, cur.NewPath = m, ""
		case strings.HasPrefix(l, "old mode "):
			m, err := parseMode(l[len("old mode "):])
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
			}
			cur.OldMode = m
		case strings.HasPrefix(l, "new mode "):
			m, err := parseMode(l[len("new mode "):])
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
			}
			cur.NewMode = m
		case strings.HasPrefix(l, "index "):
			// "index a..b [mode]": the mode is the file's when unchanged.
			f := strings.Fields(l)
			if len(f) == 3 {
				m, err := parseMode(f[2])
				if err != nil {
					return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
				}
				cur.OldMode, cur.NewMode = m, m
			}
		case strings.HasPrefix(l, "Binary files ") || strings.HasPrefix(l, "GIT binary patch"):
			cur.Binary = true
		case strings.HasPrefix(l, "similarity index") || strings.HasPrefix(l, "rename from") ||
			strings.HasPrefix(l, "rename to") || strings.HasPrefix(l, "copy from") || strings.HasPrefix(l, "copy to"):
			return nil, fmt.Errorf("%w: line %d: renames and copies are not delivered", ErrPatch, i+1)
		case strings.HasPrefix(l, "--- "):
			p, err := sidePath(l[4:], "a/")
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
			}
			cur.OldPath = p
		case strings.HasPrefix(l, "+++ "):
			p, err := sidePath(l[4:], "b/")
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrPatch, i+1, err)
			}
			cur.NewPath = p
		case strings.HasPrefix(l, "@@ "):
			h, n, err := parseHunk(lines, i)
			if err != nil {
				return nil, err
			}
			cur.Hunks = append(cur.Hunks, h)
			i = n - 1
		default:
			return nil, fmt.Errorf("%w: line %d: unexpected %q", ErrPatch, i+1, trimLine(l))
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func trimLine(l string) string {
	l = strings.TrimSuffix(l, "\n")
	if len(l) > 80 {
		l = l[:80] + "…"
	}
	return l
}

// splitLines splits after each "\n", keeping it; a last line without one is kept too.
func splitLines(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i+1]))
		b = b[i+1:]
	}
	return out
}

// splitGitHeader splits "a/X b/Y". Paths with spaces are ambiguous here; the ---/+++ lines
// that follow are authoritative when present.
func splitGitHeader(s string) (string, string, bool) {
	if !strings.HasPrefix(s, "a/") {
		return "", "", false
	}
	// a/X b/X: the two halves are equal for every change the runner makes.
	if n := len(s); n%2 == 1 {
		half := (n - 1) / 2
		if s[half] == ' ' && s[2:half] == s[half+3:] && s[half+1:half+3] == "b/" {
			return s[2:half], s[half+3:], true
		}
	}
	i := strings.Index(s, " b/")
	if i < 0 {
		return "", "", false
	}
	return s[2:i], s[i+3:], true
}

func sidePath(s, prefix string) (string, error) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\t")
	if s == "/dev/null" {
		return "", nil
	}
	if strings.HasPrefix(s, "\"") {
		return "", fmt.Errorf("quoted path %s is not supported", s)
	}
	if !strings.HasPrefix(s, prefix) {
		return "", fmt.Errorf("path %q does not start with %s", s, prefix)
	}
	return s[len(prefix):], nil
}

func parseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32)
	if err != nil {
		return 0, fmt.Errorf("bad file mode %q", strings.TrimSpace(s))
	}
	switch m {
	case 0o100644, 0o100755, 0o120000:
		return uint32(m), nil
	case 0o160000:
		return 0, errors.New("submodule changes are not delivered")
	}
	return 0, fmt.Errorf("file mode %o is not delivered", m)
}

// parseHunk reads the hunk starting at lines[i]; it returns the index after it.
func parseHunk(lines []string, i int) (Hunk, int, error) {
	var h Hunk
	head := strings.TrimSuffix(lines[i], "\n")
	end := strings.Index(head[3:], " @@")
	if end < 0 {
		return h, 0, fmt.Errorf("%w: line %d: bad hunk header %q", ErrPatch, i+1, trimLine(head))
	}
	ranges := strings.Fields(head[3 : 3+end])
	if len(ranges) != 2 || !strings.HasPrefix(ranges[0], "-") || !strings.HasPrefix(ranges[1], "+") {
		return h, 0, fmt.Errorf("%w: line %d: bad hunk header %q", ErrPatch, i+1, trimLine(head))
	}
	var err1, err2 error
	h.OldStart, h.OldLines, err1 = parseRange(ranges[0][1:])
	h.NewStart, h.NewLines, err2 = parseRange(ranges[1][1:])
	if err1 != nil || err2 != nil {
		return h, 0, fmt.Errorf("%w: line %d: bad hunk header %q", ErrPatch, i+1, trimLine(head))
	}
	old, nw := 0, 0
	j := i + 1
	for ; j < len(lines) && (old < h.OldLines || nw < h.NewLines || (j < len(lines) && strings.HasPrefix(lines[j], "\\"))); j++ {
		l := lines[j]
		switch l[0] {
		case ' ':
			old++
			nw++
		case '-':
			old++
		case '+':
			nw++
		case '\\':
			// "\ No newline at end of file": the line before has no newline.
			if len(h.Lines) == 0 {
				return h, 0, fmt.Errorf("%w: line %d: no-newline marker without a line", ErrPatch, j+1)
			}
			h.Lines[len(h.Lines)-1] = strings.TrimSuffix(h.Lines[len(h.Lines)-1], "\n")
			continue
		default:
			return h, 0, fmt.Errorf("%w: line %d: unexpected %q inside a hunk", ErrPatch, j+1, trimLine(l))
		}
		if !strings.HasSuffix(l, "\n") {
			return h, 0, fmt.Errorf("%w: line %d: truncated patch", ErrPatch, j+1)
		}
		h.Lines = append(h.Lines, l)
	}
	if old != h.OldLines || nw != h.NewLines {
		return h, 0, fmt.Errorf("%w: line %d: hunk counts do not match its lines", ErrPatch, i+1)
	}
	return h, j, nil
}

func parseRange(s string) (start, n int, err error) {
	a, b, found := strings.Cut(s, ",")
	if start, err = strconv.Atoi(a); err != nil || start < 0 {
		return 0, 0, errors.New("bad range")
	}
	n = 1
	if found {
		if n, err = strconv.Atoi(b); err != nil || n < 0 {
			return 0, 0, errors.New("bad range")
		}
	}
	return start, n, nil
}

func checkChange(c *FileChange) error {
	for _, p := range []string{c.OldPath, c.NewPath} {
		if p == "" {
			continue
		}
		if err := CheckPath(p); err != nil {
			return fmt.Errorf("%w: %w", ErrPatch, err)
		}
	}
	if c.OldPath == "" && c.NewPath == "" {
		return fmt.Errorf("%w: a file change with no path", ErrPatch)
	}
	if c.OldPath != "" && c.NewPath != "" && c.OldPath != c.NewPath {
		return fmt.Errorf("%w: %s renamed to %s: renames are not delivered", ErrPatch, c.OldPath, c.NewPath)
	}
	if c.NewPath != "" && c.NewMode == 0 {
		c.NewMode = c.OldMode
	}
	return nil
}

// CheckPath refuses a path that must never reach a commit: absolute, with "." or ".."
// or empty segments, or naming a .git directory in any spelling git treats as one.
func CheckPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") || strings.Contains(p, "\\") {
		return fmt.Errorf("path %q is not a relative repository path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".", "..":
			return fmt.Errorf("path %q has an empty, . or .. segment", p)
		}
		// Every spelling git's own path checks (core.protectNTFS, core.protectHFS) take for
		// .git: the same rule the runner's file tools apply.
		if workspace.IsGitName(seg) {
			return fmt.Errorf("path %q names a .git directory", p)
		}
	}
	return nil
}

// Apply applies the hunks of c to old (the file's content at the base; nil for a new
// file). A hunk applies where its old lines match exactly: at its recorded line, or
// shifted by lines added or removed above it since the patch was made; never with fuzz.
func Apply(c FileChange, old []byte) ([]byte, error) {
	name := c.NewPath
	if name == "" {
		name = c.OldPath
	}
	src := splitLines(old)
	var out []string
	pos := 0 // next line of src not yet copied
	for k, h := range c.Hunks {
		var want, repl []string
		for _, l := range h.Lines {
			switch l[0] {
			case ' ':
				want, repl = append(want, l[1:]), append(repl, l[1:])
			case '-':
				want = append(want, l[1:])
			case '+':
				repl = append(repl, l[1:])
			}
		}
		expected := h.OldStart - 1
		if h.OldLines == 0 {
			expected = h.OldStart // inserting after line OldStart
		}
		at := find(src, want, pos, expected)
		if at < 0 {
			return nil, &ConflictError{Path: name, Hunk: k + 1}
		}
		out = append(out, src[pos:at]...)
		out = append(out, repl...)
		pos = at + len(want)
	}
	out = append(out, src[pos:]...)
	return []byte(strings.Join(out, "")), nil
}

// find returns where want occurs in src at or after from, nearest to expected.
func find(src, want []string, from, expected int) int {
	matches := func(at int) bool {
		if at < from || at+len(want) > len(src) {
			return false
		}
		for i, w := range want {
			if src[at+i] != w {
				return false
			}
		}
		return true
	}
	for d := 0; expected-d >= from || expected+d <= len(src); d++ {
		if matches(expected - d) {
			return expected - d
		}
		if d > 0 && matches(expected+d) {
			return expected + d
		}
	}
	return -1
}
