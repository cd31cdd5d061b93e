// Package search is the grep tool's engine: a parallel, .gitignore-aware,
// binary-skipping regular-expression search over a workspace.
//
// Go's regexp package is far slower than a SIMD substring search, so most of
// the speed comes from not running it: a literal that every match must contain
// is extracted from the pattern, candidate lines are found with bytes.Index,
// and the regexp only confirms those lines. Pure-literal patterns never touch
// the regexp at all.
package search

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"regexp/syntax"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/agentry-dev/agentry/runner/workspace"
)

// Options describes one search.
type Options struct {
	// Pattern is an RE2 regular expression (Go syntax), matched per line.
	Pattern string
	// IgnoreCase makes the pattern case-insensitive.
	IgnoreCase bool
	// Path is the file or directory to search, relative to the workspace; "" means all of it.
	Path string
	// Glob keeps only files whose name (pattern without "/") or workspace-relative
	// path (pattern with "/", "**" allowed) matches.
	Glob string
	// MaxMatches stops the search early; 0 means no limit.
	MaxMatches int
	// MaxLineBytes shortens reported lines; 0 means 300.
	MaxLineBytes int
	// Workers is the number of files searched at once; 0 means GOMAXPROCS.
	Workers int
	// IncludeIgnored searches files .gitignore excludes.
	IncludeIgnored bool
}

// Match is one matching line.
type Match struct {
	Path string
	Line int
	Text string
}

// Result of a search.
type Result struct {
	Matches       []Match // sorted by path, then line
	FilesSearched int
	FilesMatched  int
	BinarySkipped int
	// Truncated is set when MaxMatches stopped the search.
	Truncated bool
}

// binarySniff is how much of a file is checked for a NUL byte, the same
// heuristic git and ripgrep use to call a file binary.
const binarySniff = 8 << 10

// maxFileBytes bounds the memory one file can take; larger files are skipped.
const maxFileBytes = 256 << 20

// Matcher finds matching lines in a buffer.
type Matcher struct {
	re      *regexp.Regexp // matches one line
	bufRe   *regexp.Regexp // the same in multi-line mode, to scan a whole file
	literal []byte         // every match contains it; nil when none could be extracted
	exact   bool           // the pattern is exactly literal: no regexp needed
	// fold means literal is lower-case ASCII to be found in an ASCII-lowered
	// copy of the buffer, for case-insensitive patterns.
	fold bool
}

// Compile builds a Matcher. Its error reads well as a tool error.
func Compile(pattern string, ignoreCase bool) (*Matcher, error) {
	flags := syntax.Perl
	if ignoreCase {
		flags |= syntax.FoldCase
	}
	parsed, err := syntax.Parse(pattern, flags)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w (RE2 syntax; escape literal characters like ( [ . * with a backslash)", pattern, err)
	}
	src := pattern
	if ignoreCase {
		src = "(?i)" + pattern
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", pattern, err)
	}
	m := &Matcher{re: re, bufRe: regexp.MustCompile("(?m)" + src)}
	parsed = parsed.Simplify()
	if parsed.Op == syntax.OpLiteral && parsed.Flags&syntax.FoldCase == 0 && !strings.ContainsRune(string(parsed.Rune), '\n') {
		m.literal, m.exact = []byte(string(parsed.Rune)), true
	} else if lit, fold := requiredLiteral(parsed); len(lit) >= 2 && !strings.ContainsRune(lit, '\n') {
		m.literal, m.fold = []byte(lit), fold
	}
	return m, nil
}

// requiredLiteral returns the longest literal that any match must contain,
// looking through top-level concatenations, captures and repetitions. A
// case-insensitive literal is returned lower-cased with fold set, but only
// when ASCII lowering finds every match: Unicode folds K (Kelvin) to k and ſ
// to s, so literals with k or s are not used.
func requiredLiteral(re *syntax.Regexp) (string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s := string(re.Rune)
		if re.Flags&syntax.FoldCase == 0 {
			return s, false
		}
		low := strings.ToLower(s)
		for i := 0; i < len(low); i++ {
			if low[i] >= 0x80 || low[i] == 'k' || low[i] == 's' {
				return "", false
			}
		}
		return low, true
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		best, bestFold := "", false
		for _, sub := range re.Sub {
			// Prefer a case-sensitive literal: it needs no lowered copy.
			if s, fold := requiredLiteral(sub); len(s) > len(best) || (len(s) == len(best) && s != "" && bestFold && !fold) {
				best, bestFold = s, fold
			}
		}
		return best, bestFold
	}
	return "", false
}

// Each calls fn for every matching line of buf with its 1-based line number
// and content (without the newline or a trailing \r). fn returning false stops.
func (m *Matcher) Each(buf []byte, fn func(line int, text []byte) bool) {
	lineNo, counted := 1, 0 // lineNo is the number of the line starting at counted
	pos := 0
	// (?m)$ does not match before "\r\n", so files with CRs are matched line
	// by line when no literal narrows the search.
	perLine := m.literal == nil && bytes.IndexByte(buf, '\r') >= 0
	hay := buf
	if m.fold {
		lp := lowerPool.Get().(*[]byte)
		defer func() {
			if cap(*lp) > 8<<20 { // one huge file should not pin its size
				*lp = nil
			}
			lowerPool.Put(lp)
		}()
		*lp = lowerASCII(*lp, buf)
		hay = *lp
	}
	for pos < len(buf) {
		var start, end int
		switch {
		case m.literal != nil:
			i := bytes.Index(hay[pos:], m.literal)
			if i < 0 {
				return
			}
			hit := pos + i
			start = bytes.LastIndexByte(buf[pos:hit], '\n') + 1 + pos
			end = lineEnd(buf, hit)
		case perLine:
			start, end = pos, lineEnd(buf, pos)
		default:
			loc := m.bufRe.FindIndex(buf[pos:])
			if loc == nil {
				return
			}
			hit := pos + loc[0]
			if hit == len(buf) && buf[len(buf)-1] == '\n' {
				return // the empty "line" after the final newline does not exist
			}
			start = bytes.LastIndexByte(buf[pos:hit], '\n') + 1 + pos
			end = lineEnd(buf, hit)
		}
		line := bytes.TrimSuffix(buf[start:end], []byte{'\r'})
		// The buffer-wide search can match across lines (\s matches \n); the
		// line alone decides. If it fails, no match starts on this line.
		if !m.exact && !m.re.Match(line) {
			pos = end + 1
			continue
		}
		lineNo += bytes.Count(buf[counted:start], []byte{'\n'})
		counted = start
		if !fn(lineNo, line) {
			return
		}
		pos = end + 1
	}
}

var lowerPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// lowerASCII returns a copy of src, reusing dst's storage, with A-Z lowered
// eight bytes at a time: a byte gets 0x20 added exactly when it is in
// 'A'..'Z' (bytes >= 0x80 are left alone), so offsets stay aligned with src.
func lowerASCII(dst, src []byte) []byte {
	dst = slices.Grow(dst[:0], len(src))[:len(src)]
	const (
		lo7  = 0x7f7f7f7f7f7f7f7f
		high = 0x8080808080808080
		ones = 0x0101010101010101
	)
	i := 0
	for ; i+8 <= len(src); i += 8 {
		x := binary.LittleEndian.Uint64(src[i:])
		h := x & lo7
		geA := h + (0x80-'A')*ones      // high bit set where byte >= 'A'
		gtZ := h + (0x80-'Z'-1)*ones    // high bit set where byte > 'Z'
		upper := geA &^ gtZ &^ x & high // in range and ASCII
		binary.LittleEndian.PutUint64(dst[i:], x|upper>>2)
	}
	for ; i < len(src); i++ {
		c := src[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return dst
}

func lineEnd(buf []byte, from int) int {
	if i := bytes.IndexByte(buf[from:], '\n'); i >= 0 {
		return from + i
	}
	return len(buf)
}

// Grep searches the workspace.
func Grep(ctx context.Context, ws *workspace.Root, o Options) (Result, error) {
	m, err := Compile(o.Pattern, o.IgnoreCase)
	if err != nil {
		return Result{}, err
	}
	keep, err := globFilter(o.Glob)
	if err != nil {
		return Result{}, err
	}
	maxLine := cmp.Or(o.MaxLineBytes, 300)
	workers := cmp.Or(o.Workers, runtime.GOMAXPROCS(0))

	var (
		mu                   sync.Mutex
		res                  Result
		total                atomic.Int64
		searched, bin, files atomic.Int64
	)
	err = ws.ReadFiles(ctx, o.Path, workspace.ReadOptions{IncludeIgnored: o.IncludeIgnored, Workers: workers, Keep: keep, MaxFileBytes: maxFileBytes},
		func(p string, buf []byte) error {
			searched.Add(1)
			if bytes.IndexByte(buf[:min(len(buf), binarySniff)], 0) >= 0 {
				bin.Add(1)
				return nil
			}
			var local []Match
			stop := false
			m.Each(buf, func(line int, text []byte) bool {
				if o.MaxMatches > 0 && total.Add(1) > int64(o.MaxMatches) {
					stop = true
					return false
				}
				local = append(local, Match{Path: p, Line: line, Text: shorten(text, maxLine)})
				return true
			})
			if len(local) > 0 {
				files.Add(1)
				mu.Lock()
				res.Matches = append(res.Matches, local...)
				mu.Unlock()
			}
			if stop {
				return fs.SkipAll
			}
			return nil
		})
	if err != nil {
		return Result{}, err
	}
	res.FilesSearched, res.FilesMatched, res.BinarySkipped = int(searched.Load()), int(files.Load()), int(bin.Load())
	res.Truncated = o.MaxMatches > 0 && total.Load() > int64(o.MaxMatches)
	slices.SortFunc(res.Matches, func(a, b Match) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line))
	})
	return res, nil
}

func shorten(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]) + "…"
}

// globFilter turns the glob option into a path predicate.
func globFilter(glob string) (func(string) bool, error) {
	if glob == "" {
		return nil, nil
	}
	if !strings.Contains(glob, "/") {
		if _, err := path.Match(glob, ""); err != nil {
			return nil, fmt.Errorf("invalid glob %q: %w", glob, err)
		}
		return func(p string) bool {
			ok, _ := path.Match(glob, path.Base(p))
			return ok
		}, nil
	}
	g, err := workspace.CompileGlob(glob)
	if err != nil {
		return nil, err
	}
	return g.Match, nil
}
