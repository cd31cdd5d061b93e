package search_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
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
