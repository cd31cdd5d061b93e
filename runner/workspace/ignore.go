package workspace

import (
	"bytes"
	"path"
	"strings"
)

// ignoreRule is one .gitignore line. Walks prune ignored directories, so a
// rule never needs to look at an entry's ancestors: a pattern without a slash
// is matched against the entry's name only, and a pattern with a slash against
// the path relative to the .gitignore's directory. That keeps matching cheap
// on large trees (one comparison per rule and entry, most of them literal).
type ignoreRule struct {
	domain   int // number of leading path components the rule's .gitignore lives under
	negate   bool
	dirOnly  bool
	anchored bool
	kind     ruleKind
	text     string   // literal name, suffix (for "*.ext") or glob
	segs     []string // anchored rules: pattern segments
}

type ruleKind int

const (
	ruleLiteral ruleKind = iota
	ruleSuffix
	ruleGlob
)

// parseIgnore reads a .gitignore living in the directory with the given
// path components.
func parseIgnore(data []byte, domain []string) []ignoreRule {
	var rules []ignoreRule
	for line := range bytes.Lines(data) {
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" || s[0] == '#' {
			continue
		}
		if !strings.HasSuffix(s, `\ `) {
			s = strings.TrimRight(s, " \t")
		}
		r := ignoreRule{domain: len(domain)}
		if s[0] == '!' {
			r.negate, s = true, s[1:]
		} else if strings.HasPrefix(s, `\!`) || strings.HasPrefix(s, `\#`) {
			s = s[1:]
		}
		if strings.HasSuffix(s, "/") {
			r.dirOnly, s = true, strings.TrimRight(s, "/")
		}
		// "**/name" is the same as "name": it matches at any depth.
		if rest, ok := strings.CutPrefix(s, "**/"); ok && !strings.Contains(rest, "/") {
			s = rest
		}
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			r.anchored = true
			r.segs = strings.Split(strings.TrimPrefix(s, "/"), "/")
		} else {
			r.text = s
			switch {
			case !strings.ContainsAny(s, `*?[\`):
				r.kind = ruleLiteral
			case s[0] == '*' && !strings.ContainsAny(s[1:], `*?[\`):
				r.kind, r.text = ruleSuffix, s[1:]
			default:
				r.kind = ruleGlob
			}
		}
		rules = append(rules, r)
	}
	return rules
}

func (r *ignoreRule) match(comps []string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if r.anchored {
		if len(comps) <= r.domain {
			return false
		}
		return matchSegs(r.segs, comps[r.domain:])
	}
	name := comps[len(comps)-1]
	switch r.kind {
	case ruleLiteral:
		return name == r.text
	case ruleSuffix:
		return strings.HasSuffix(name, r.text)
	}
	ok, _ := path.Match(r.text, name)
	return ok
}

// ignored applies rules in git's priority order: the last matching rule
// decides, and a "!" rule re-includes.
func ignored(rules []ignoreRule, comps []string, isDir bool) bool {
	for i := len(rules) - 1; i >= 0; i-- {
		if rules[i].match(comps, isDir) {
			return !rules[i].negate
		}
	}
	return false
}
