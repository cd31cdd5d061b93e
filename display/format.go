package display

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Prose renders text on one line for a terminal: runs of white space become one space, the
// rest is escaped, and it is cut to n runes.
func Prose(s string, n int) string {
	return Cut(Escape(strings.Join(strings.Fields(s), " ")), n)
}

// Verbatim renders a tool call's argument (a command, a path) on one line without changing
// it: a newline in a command shows as \n, because it separates commands.
func Verbatim(s string, n int) string { return Cut(Escape(s), n) }

// Cut shortens s to n runes, ending in "…" when it cut.
func Cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + "…"
}

// Millis renders a duration in milliseconds as people read it: 840ms, 2.5s, 3m10s.
func Millis(v int64) string {
	d := time.Duration(v) * time.Millisecond
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", v)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

// Tokens renders a token count: 950, 1.2k, 48k, 2.0M.
func Tokens(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	case n >= 1000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// Bytes renders a size as people read it: 512 B, 1.5 KiB, 64.0 MiB ("?" when unknown).
func Bytes(n int64) string {
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

// ResultDetail summarises a successful tool result in a few words: bash's exit code, a file
// tool's one-line answer, a listing's count line, else its number of lines.
func ResultDetail(tool, output string) string {
	out := strings.TrimRight(output, "\n")
	switch tool {
	case "bash":
		if i := strings.LastIndex(out, "exit code: "); i >= 0 {
			return Prose(out[i:], 80)
		}
	case "edit_file", "write_file":
		return Prose(out, 80)
	case "grep", "glob", "git_status", "git_diff", "list_dir":
		if i := strings.LastIndexByte(out, '\n'); i >= 0 && strings.HasPrefix(out[i+1:], "[") {
			return Prose(strings.Trim(out[i+1:], "[]"), 80)
		}
		if !strings.Contains(out, "\n") {
			return Prose(out, 80)
		}
	}
	return fmt.Sprintf("%d lines", strings.Count(out, "\n")+1)
}
