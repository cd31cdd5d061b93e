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
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"regexp"
	"regexp/syntax"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/agentry-dev/agentry/contract"
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

// wholeFileBytes is the largest file read whole by the parallel walker; larger
// files are scanned in chunks of scanBufBytes afterwards. Either way a worker
// holds at most about 2 MiB (the buffer and, for case-insensitive literals, a
// lowered copy), whatever the size of the files.
const wholeFileBytes = 1 << 20

// scanBufBytes is the chunk a large file is scanned in. It is also the longest
// line searched whole: a longer line (minified code, a data dump) is searched
// in its first scanBufBytes only and the rest of it is skipped.
const scanBufBytes = 1 << 20

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
	if !m.fold {
		m.each(buf, nil, fn)
		return
	}
	lp := getLower()
	defer putLower(lp)
	m.each(buf, lp, fn)
}

// each is Each with the storage for the lowered copy a case-insensitive
// literal is searched in (nil when m.fold is not set).
func (m *Matcher) each(buf []byte, lp *[]byte, fn func(line int, text []byte) bool) {
	lineNo, counted := 1, 0 // lineNo is the number of the line starting at counted
	pos := 0
	// (?m)$ does not match before "\r\n", so files with CRs are matched line
	// by line when no literal narrows the search.
	perLine := m.literal == nil && bytes.IndexByte(buf, '\r') >= 0
	hay := buf
	if m.fold {
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

func getLower() *[]byte { return lowerPool.Get().(*[]byte) }

func putLower(lp *[]byte) {
	if cap(*lp) > 8<<20 { // one huge file should not pin its size
		*lp = nil
	}
	lowerPool.Put(lp)
}

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

// EachReader is Each over a stream, read through buf (whose length bounds the
// memory used): complete lines are searched a buffer at a time, with line
// numbers carried across. A line longer than buf is searched in its first
// len(buf) bytes only. A NUL byte in the first binarySniff bytes means binary:
// nothing is searched and binary is true.
func (m *Matcher) EachReader(r io.Reader, buf []byte, fn func(line int, text []byte) bool) (binary bool, err error) {
	var (
		n, base        int // bytes held in buf; lines before buf[0]
		eof, skip      bool
		sniffed, ended bool
	)
	var lp *[]byte // one lowered copy for the whole stream
	if m.fold {
		lp = getLower()
		defer putLower(lp)
	}
	each := func(b []byte) {
		m.each(b, lp, func(line int, text []byte) bool {
			if !fn(base+line, text) {
				ended = true
				return false
			}
			return true
		})
	}
	for {
		if !eof && n < len(buf) {
			k, err := io.ReadFull(r, buf[n:])
			n += k
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				eof = true
			} else if err != nil {
				return false, err
			}
		}
		if !sniffed {
			sniffed = true
			if bytes.IndexByte(buf[:min(n, binarySniff)], 0) >= 0 {
				return true, nil
			}
		}
		if skip { // the rest of an overlong line
			i := bytes.IndexByte(buf[:n], '\n')
			if i < 0 {
				n = 0
				if eof {
					return false, nil
				}
				continue
			}
			n = copy(buf, buf[i+1:n])
			base++
			skip = false
			continue
		}
		if eof {
			if n > 0 {
				each(buf[:n])
			}
			return false, nil
		}
		end := bytes.LastIndexByte(buf[:n], '\n') + 1
		if end == 0 { // the buffer is full and holds part of one line
			each(buf[:n])
			n, skip = 0, true
		} else {
			each(buf[:end])
			base += bytes.Count(buf[:end], []byte{'\n'})
			n = copy(buf, buf[end:n])
		}
		if ended {
			return false, nil
		}
	}
}

func lineEnd(buf []byte, from int) int {
	if i := bytes.IndexByte(buf[from:], '\n'); i >= 0 {
		return from + i
	}
	return len(buf)
}

// Grep searches the workspace. Memory is bounded whatever the size of the
// files (see wholeFileBytes); with MaxMatches, the result is bounded too.
func Grep(ctx context.Context, ws *workspace.Root, o Options) (Result, error) {
	m, err := Compile(o.Pattern, o.IgnoreCase)
	if err != nil {
		return Result{}, err
	}
	keep, err := globFilter(o.Glob)
	if err != nil {
		return Result{}, err
	}
	g := &grep{m: m, o: o, maxLine: cmp.Or(o.MaxLineBytes, 300)}
	workers := cmp.Or(o.Workers, runtime.GOMAXPROCS(0))

	if o.Path != "" && o.Path != "." {
		fi, _, err := ws.Stat(o.Path)
		if err != nil {
			return Result{}, err
		}
		if !fi.IsDir() {
			if err := g.oneFile(ws, fi); err != nil {
				return Result{}, err
			}
			return g.result(), nil
		}
	}

	// Files up to wholeFileBytes are read whole by the workspace's parallel
	// walker. Larger ones it skips: they are the ones offered to keep and
	// never delivered, scanned in chunks once the walk is done.
	var (
		pmu     sync.Mutex
		pending = map[string]struct{}{}
	)
	track := func(p string) bool {
		if keep != nil && !keep(p) {
			return false
		}
		pmu.Lock()
		pending[p] = struct{}{}
		pmu.Unlock()
		return true
	}
	err = ws.ReadFiles(ctx, o.Path, workspace.ReadOptions{IncludeIgnored: o.IncludeIgnored, Workers: workers, Keep: track, MaxFileBytes: wholeFileBytes},
		func(p string, buf []byte) error {
			pmu.Lock()
			delete(pending, p)
			pmu.Unlock()
			if !g.searchBuffer(p, buf) {
				return fs.SkipAll
			}
			return nil
		})
	if err != nil {
		return Result{}, err
	}
	if len(pending) > 0 && !g.stopped.Load() {
		if err := g.largeFiles(ctx, ws, slices.Sorted(maps.Keys(pending)), workers); err != nil {
			return Result{}, err
		}
	}
	return g.result(), nil
}

// grep is one search in progress, shared by its workers.
type grep struct {
	m       *Matcher
	o       Options
	maxLine int

	mu                   sync.Mutex
	matches              []Match
	total                atomic.Int64
	searched, bin, files atomic.Int64
	stopped              atomic.Bool
}

func (g *grep) result() Result {
	res := Result{Matches: g.matches}
	res.FilesSearched, res.FilesMatched, res.BinarySkipped = int(g.searched.Load()), int(g.files.Load()), int(g.bin.Load())
	res.Truncated = g.o.MaxMatches > 0 && g.total.Load() > int64(g.o.MaxMatches)
	slices.SortFunc(res.Matches, func(a, b Match) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line))
	})
	return res
}

// collect returns the callback recording p's matches into local, and reports
// through stop when MaxMatches is reached.
func (g *grep) collect(p string, local *[]Match) func(line int, text []byte) bool {
	return func(line int, text []byte) bool {
		if g.o.MaxMatches > 0 && g.total.Add(1) > int64(g.o.MaxMatches) {
			g.stopped.Store(true)
			return false
		}
		*local = append(*local, Match{Path: p, Line: line, Text: shorten(text, g.maxLine)})
		return true
	}
}

func (g *grep) publish(local []Match) {
	if len(local) > 0 {
		g.files.Add(1)
		g.mu.Lock()
		g.matches = append(g.matches, local...)
		g.mu.Unlock()
	}
}

// searchBuffer searches one whole file; false means stop the search.
func (g *grep) searchBuffer(p string, buf []byte) bool {
	g.searched.Add(1)
	if bytes.IndexByte(buf[:min(len(buf), binarySniff)], 0) >= 0 {
		g.bin.Add(1)
		return true
	}
	var local []Match
	g.m.Each(buf, g.collect(p, &local))
	g.publish(local)
	return !g.stopped.Load()
}

// searchReader scans one file in chunks through buf.
func (g *grep) searchReader(p string, r io.Reader, buf []byte) error {
	g.searched.Add(1)
	var local []Match
	binary, err := g.m.EachReader(r, buf, g.collect(p, &local))
	if binary {
		g.bin.Add(1)
	}
	g.publish(local)
	return err
}

// oneFile searches the file Path names, fi being what it resolves to (a
// symlink inside the workspace is followed, as when the walker is started on
// it).
func (g *grep) oneFile(ws *workspace.Root, fi fs.FileInfo) error {
	rel, err := ws.Rel(g.o.Path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", rel)
	}
	root, err := os.OpenRoot(ws.Dir())
	if err != nil {
		return err
	}
	defer root.Close()
	// O_NONBLOCK: a FIFO swapped in since the Stat must not block the open.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !ofi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", rel)
	}
	if err := g.searchReader(rel, f, make([]byte, scanBufBytes)); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// largeFiles scans the files the walker left for being large, from up to
// workers goroutines, each with its own buffer. As with the walker, a
// symlink is never followed and an unreadable file is skipped.
func (g *grep) largeFiles(ctx context.Context, ws *workspace.Root, paths []string, workers int) error {
	root, err := os.OpenRoot(ws.Dir())
	if err != nil {
		return err
	}
	defer root.Close()
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range min(workers, len(paths)) {
		wg.Go(func() {
			buf := make([]byte, scanBufBytes)
			for p := range jobs {
				if ctx.Err() == nil && !g.stopped.Load() {
					g.scanPath(root, p, buf)
				}
			}
		})
	}
	for _, p := range paths {
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
}

func (g *grep) scanPath(root *os.Root, p string, buf []byte) {
	fi, err := root.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	// O_NONBLOCK: a FIFO swapped in since the Lstat must not block the open.
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return // replaced (by a symlink, say) since the Lstat
	}
	_ = g.searchReader(p, f, buf) // a read error ends the file, as for the walker
}

// shorten cuts a matched line to at most n bytes on a character boundary, marking the cut.
func shorten(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return contract.TruncateUTF8(string(b[:n+1]), n) + "…"
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
