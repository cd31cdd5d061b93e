package workspace

import (
	"fmt"
	"path"
	"strings"
)

// Glob matches slash-separated workspace paths. "**" as a whole segment
// matches any number of directories (including none); other segments use
// path.Match syntax; {a,b} alternatives are expanded.
type Glob struct {
	alts [][]string
}

// CompileGlob parses a pattern such as "**/*_test.go" or "cmd/*/main.{go,sh}".
func CompileGlob(pattern string) (*Glob, error) {
	p := strings.TrimPrefix(pattern, "./")
	if p == "" {
		return nil, fmt.Errorf("empty glob pattern")
	}
	if strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("glob %q: patterns are relative to the workspace root; drop the leading /", pattern)
	}
	g := &Glob{}
	for _, alt := range expandBraces(p) {
		segs := strings.Split(alt, "/")
		for _, s := range segs {
			if s == ".." {
				return nil, fmt.Errorf("glob %q: \"..\" is not allowed; patterns stay inside the workspace", pattern)
			}
			if s == "**" {
				continue
			}
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("invalid glob %q: %w", pattern, err)
			}
		}
		g.alts = append(g.alts, segs)
	}
	return g, nil
}

// Match reports whether the workspace-relative path p matches.
func (g *Glob) Match(p string) bool {
	name := strings.Split(p, "/")
	for _, segs := range g.alts {
		if matchSegs(segs, name) {
			return true
		}
	}
	return false
}

// Base is the longest leading directory without metacharacters shared by all
// alternatives, so a walk can start there instead of at the root.
func (g *Glob) Base() string {
	var base []string
	for i, segs := range g.alts {
		var b []string
		for _, s := range segs[:len(segs)-1] {
			if s == "**" || strings.ContainsAny(s, `*?[\`) {
				break
			}
			b = append(b, s)
		}
		if i == 0 {
			base = b
			continue
		}
		n := 0
		for n < len(base) && n < len(b) && base[n] == b[n] {
			n++
		}
		base = base[:n]
	}
	if len(base) == 0 {
		return "."
	}
	return strings.Join(base, "/")
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// expandBraces turns "a.{go,md}" into ["a.go", "a.md"], recursively.
func expandBraces(p string) []string {
	open := strings.IndexByte(p, '{')
	if open < 0 {
		return []string{p}
	}
	depth := 0
	for i := open; i < len(p); i++ {
		switch p[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				var out []string
				for _, alt := range splitTop(p[open+1 : i]) {
					out = append(out, expandBraces(p[:open]+alt+p[i+1:])...)
				}
				return out
			}
		}
	}
	return []string{p} // unbalanced: treat literally
}

func splitTop(s string) []string {
	var parts []string
	depth, last := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[last:i])
				last = i + 1
			}
		}
	}
	return append(parts, s[last:])
}
