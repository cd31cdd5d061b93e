package search_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/runner/search"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// TestGrepAgreesWithLineByLineRegexp checks the literal prefilter against the
// obvious implementation on random text, for patterns of every shape the
// prefilter handles differently (pure literal, required literal, none).
func TestGrepAgreesWithLineByLineRegexp(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	words := []string{"foo", "bar", "Foo", "baz", "func", "(", ")", " ", "\t", "x1", "é", "ab", "aab", "\r"}
	files := map[string]string{}
	for f := range 40 {
		var b strings.Builder
		for range rng.IntN(60) {
			for range rng.IntN(12) {
				b.WriteString(words[rng.IntN(len(words))])
			}
			b.WriteByte('\n')
		}
		if rng.IntN(4) == 0 { // some files end without a newline
			b.WriteString("foo bar")
		}
		name := fmt.Sprintf("d%d/f%d.txt", f%5, f)
		files[name] = b.String()
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	patterns := []string{"foo", "foo bar", `func\(`, `fo+\s*ba[rz]`, `a+b`, `^foo`, `bar$`, `(?:foo|baz)x1`, `\bab\b`, `é`, `x1.*\)`, `[A-Z]oo`, `^$`, `(foo)+bar`, `.`}
	for _, pat := range patterns {
		for _, ic := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/i=%v", pat, ic), func(t *testing.T) {
				src := pat
				if ic {
					src = "(?i)" + pat
				}
				re := regexp.MustCompile(src)
				var want []search.Match
				for name, content := range files {
					lines := strings.Split(content, "\n")
					if strings.HasSuffix(content, "\n") {
						lines = lines[:len(lines)-1]
					}
					for i, l := range lines {
						l = strings.TrimSuffix(l, "\r")
						if re.MatchString(l) {
							want = append(want, search.Match{Path: name, Line: i + 1, Text: l})
						}
					}
				}
				slices.SortFunc(want, func(a, b search.Match) int {
					if c := strings.Compare(a.Path, b.Path); c != 0 {
						return c
					}
					return a.Line - b.Line
				})
				res, err := search.Grep(context.Background(), ws, search.Options{Pattern: pat, IgnoreCase: ic, MaxLineBytes: 1 << 20})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, res.Matches, cmpEmpty()); diff != "" {
					t.Errorf("matches differ from line-by-line regexp (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func cmpEmpty() cmp.Option {
	return cmp.FilterValues(func(a, b []search.Match) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())
}

func TestGlobSyntax(t *testing.T) {
	cases := map[string]struct {
		pattern string
		match   []string
		nomatch []string
		base    string
	}{
		"any depth":     {"**/*.go", []string{"a.go", "x/y/z.go"}, []string{"a.gox", "x/a.txt"}, "."},
		"middle stars":  {"a/**/b/*.txt", []string{"a/b/c.txt", "a/x/y/b/c.txt"}, []string{"a/c.txt", "b/c.txt"}, "a"},
		"trailing":      {"docs/**", []string{"docs/a", "docs/x/y"}, []string{"doc/a"}, "docs"},
		"braces":        {"src/*.{ts,tsx}", []string{"src/a.ts", "src/b.tsx"}, []string{"src/c.js", "src/x/a.ts"}, "src"},
		"nested braces": {"{cmd,pkg/{a,b}}/*.go", []string{"cmd/m.go", "pkg/a/x.go", "pkg/b/y.go"}, []string{"pkg/c/z.go"}, "."},
		"char class":    {"file[0-9].txt", []string{"file1.txt"}, []string{"fileA.txt"}, "."},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g, err := workspace.CompileGlob(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.match {
				if !g.Match(p) {
					t.Errorf("%q should match %q", tc.pattern, p)
				}
			}
			for _, p := range tc.nomatch {
				if g.Match(p) {
					t.Errorf("%q should not match %q", tc.pattern, p)
				}
			}
			if got := g.Base(); got != tc.base {
				t.Errorf("Base() = %q, want %q", got, tc.base)
			}
		})
	}
	for _, bad := range []string{"/etc/*", "../x", "a/[", ""} {
		if _, err := workspace.CompileGlob(bad); err == nil {
			t.Errorf("CompileGlob(%q) accepted", bad)
		}
	}
}

// lineByLine is the obvious implementation Grep must agree with.
func lineByLine(files map[string]string, re *regexp.Regexp) []search.Match {
	var want []search.Match
	for name, content := range files {
		lines := strings.Split(content, "\n")
		if strings.HasSuffix(content, "\n") {
			lines = lines[:len(lines)-1]
		}
		for i, l := range lines {
			l = strings.TrimSuffix(l, "\r")
			if re.MatchString(l) {
				want = append(want, search.Match{Path: name, Line: i + 1, Text: l})
			}
		}
	}
	slices.SortFunc(want, func(a, b search.Match) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
	return want
}

// TestLargeFilesAreScannedInChunksWithTheSameResults searches files larger
// than what is read whole, so matches, line numbers and CRs meet chunk
// boundaries, both from a directory walk and with the file as the path.
func TestLargeFilesAreScannedInChunksWithTheSameResults(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"foo", "bar", "Foo", "baz", "func", "(", ")", " ", "x1", "é", "ab", "\r", "needle"}
	dir := t.TempDir()
	files := map[string]string{}
	for f, size := range []int{2<<20 + 17, 1<<20 + 1, 2<<20 + 5} {
		var b strings.Builder
		for b.Len() < size {
			for range rng.IntN(40) {
				b.WriteString(words[rng.IntN(len(words))])
			}
			b.WriteByte('\n')
		}
		if f == 1 {
			b.WriteString("foo needle without newline")
		}
		name := fmt.Sprintf("big%d.txt", f)
		files[name] = b.String()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files["small.txt"] = "needle\nfoo\n"
	if err := os.WriteFile(filepath.Join(dir, "small.txt"), []byte(files["small.txt"]), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, pat := range []string{"needle", `fo+\s*ba[rz]`, `bar$`, `^$`, `é`} {
		for _, ic := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/i=%v", pat, ic), func(t *testing.T) {
				src := pat
				if ic {
					src = "(?i)" + pat
				}
				want := lineByLine(files, regexp.MustCompile(src))
				res, err := search.Grep(context.Background(), ws, search.Options{Pattern: pat, IgnoreCase: ic, MaxLineBytes: 1 << 20, Workers: 3})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, res.Matches, cmpEmpty()); diff != "" {
					t.Errorf("directory walk (-want +got):\n%s", diff)
				}
				if res.FilesSearched != 4 {
					t.Errorf("searched %d files, want 4", res.FilesSearched)
				}
				res, err = search.Grep(context.Background(), ws, search.Options{Pattern: pat, IgnoreCase: ic, MaxLineBytes: 1 << 20, Path: "big1.txt"})
				if err != nil {
					t.Fatal(err)
				}
				want = lineByLine(map[string]string{"big1.txt": files["big1.txt"]}, regexp.MustCompile(src))
				if diff := cmp.Diff(want, res.Matches, cmpEmpty()); diff != "" {
					t.Errorf("file as the path (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestOverlongLinesDoNotLoadTheFile: a line longer than the scan buffer is
// searched in its first part only and reported shortened; line numbers after
// it stay right.
func TestOverlongLinesDoNotLoadTheFile(t *testing.T) {
	dir := t.TempDir()
	long := "needle at the start " + strings.Repeat("x", 3<<20) + " needle at the end"
	content := "first\n" + long + "\nneedle after\n" + strings.Repeat("y", 3<<20) + " needle far away\nlast needle"
	if err := os.WriteFile(filepath.Join(dir, "long.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	res, err := search.Grep(context.Background(), ws, search.Options{Pattern: "needle"})
	if err != nil {
		t.Fatal(err)
	}
	want := []search.Match{
		{Path: "long.txt", Line: 2, Text: "needle at the start " + strings.Repeat("x", 280) + "…"},
		{Path: "long.txt", Line: 3, Text: "needle after"},
		{Path: "long.txt", Line: 5, Text: "last needle"},
	}
	if diff := cmp.Diff(want, res.Matches); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestGrepMemoryDoesNotGrowWithFileSize greps large files; before, each was
// read whole (up to 256 MiB a file).
func TestGrepMemoryDoesNotGrowWithFileSize(t *testing.T) {
	dir := t.TempDir()
	line := strings.Repeat("lorem ipsum dolor sit amet ", 3) + "\n"
	chunk := strings.Repeat(line, (1<<20)/len(line))
	for i := range 2 {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("big%d.txt", i)))
		if err != nil {
			t.Fatal(err)
		}
		for range 48 {
			_, _ = f.WriteString(chunk)
		}
		_, _ = f.WriteString("the needle\n")
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, o := range []search.Options{{Pattern: "needle"}, {Pattern: "NEEDLE", IgnoreCase: true}, {Pattern: "needle", Path: "big0.txt"}} {
		o.Workers = 2
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		res, err := search.Grep(context.Background(), ws, o)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 12<<20 {
			t.Errorf("%+v: allocated %d MiB to grep 48 MiB files", o, alloc>>20)
		}
		if len(res.Matches) == 0 || res.Matches[0].Line != 48*((1<<20)/len(line))+1 {
			t.Errorf("%+v: matches %+v", o, res.Matches)
		}
	}
}
