// Package display renders text that an agent or a repository influenced —
// commands, paths, summaries, model output, error messages — for a person, so
// that what the person reads is what is there. Control characters (which can
// move the cursor, erase a line or recolour a terminal), Unicode bidi controls
// and other invisible characters (which reorder or hide text), look-alike
// spaces and invalid UTF-8 are shown as visible escapes; printable text,
// including non-ASCII letters, is unchanged.
//
// Escaping is idempotent: a backslash is left alone, so text escaped once (for
// example a summary the gateway stored in status) and escaped again by a
// client reads the same. The price is that the text `\x1b` typed literally and
// a real ESC character look alike; both are shown as `\x1b`, never as an
// effect on the terminal.
package display

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ellipsis marks text that Truncate or FirstLine cut.
const ellipsis = "…"

// Escape renders s on one line: every control character (C0 including NUL,
// CR, LF, TAB, ESC, BEL and backspace; DEL; C1), every Unicode format
// character (bidi embeddings, overrides and isolates U+202A–U+202E,
// U+2066–U+2069, marks U+200E, U+200F, U+061C; zero-width U+200B–U+200D,
// U+2060, U+FEFF; tag characters), line and paragraph separators U+2028 and
// U+2029, spaces other than U+0020, Hangul fillers, and each invalid UTF-8
// byte becomes a visible escape: `\n`, `\r`, `\t`, `\x1b` (bytes and ASCII
// controls), `\u202e` or `\U000e0041` (other code points).
func Escape(s string) string { return escape(s, false) }

// EscapeMultiline is Escape for text meant to be read as several lines, such
// as the model's final answer: a line feed (or CR LF) and TAB stay as they
// are; everything else Escape renders is escaped the same way.
func EscapeMultiline(s string) string { return escape(s, true) }

func escape(s string, multiline bool) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, size) && !(multiline && keepInMultiline(s, i)) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s // the common case: nothing to escape, no allocation
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case !needsEscape(r, size) || (multiline && keepInMultiline(s, i)):
			b.WriteString(s[i : i+size])
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// keepInMultiline reports whether the byte at s[i] is a line feed, a TAB, or
// a CR that ends a line (CR LF), which multi-line output keeps.
func keepInMultiline(s string, i int) bool {
	switch s[i] {
	case '\n', '\t':
		return true
	case '\r':
		return i+1 < len(s) && s[i+1] == '\n'
	}
	return false
}

// needsEscape reports whether the rune decoded with the given size must be
// shown as an escape.
func needsEscape(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return true // an invalid byte
	case r < 0x80:
		return r < 0x20 || r == 0x7f
	}
	switch r {
	case 0x115F, 0x1160, 0x3164, 0xFFA0: // Hangul fillers: letters that render as nothing
		return true
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Zs)
}

// Truncate cuts s to at most max bytes, ending in "…" when anything was cut,
// and never in the middle of a UTF-8 sequence. A max too small for the
// ellipsis cuts without one; max <= 0 gives "".
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	keep, mark := max-len(ellipsis), ellipsis
	if keep < 0 {
		keep, mark = max, ""
	}
	// Back up to the start of a rune. Invalid input may have no rune start
	// nearby; stop after the longest sequence so the loop stays bounded.
	for n := 0; keep > 0 && n < utf8.UTFMax-1 && !utf8.RuneStart(s[keep]); n++ {
		keep--
	}
	return s[:keep] + mark
}

// Headline is the first line of s with the surrounding blanks removed, for a one-line
// message or title made from prose (a summary, an error). It neither escapes nor marks
// what it dropped; callers bound its length with Truncate.
func Headline(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// FirstLine returns s up to its first line break (LF or CR), followed by
// " …" when non-blank text was dropped. It does not escape; it is for prose
// such as an error message, never for a command a person approves, which must
// be shown whole.
func FirstLine(s string) string {
	i := strings.IndexAny(s, "\r\n")
	if i < 0 {
		return s
	}
	if strings.TrimSpace(s[i:]) == "" {
		return s[:i]
	}
	return s[:i] + " " + ellipsis
}
