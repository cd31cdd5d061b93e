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
