package transcript

import (
	"slices"
	"strings"
)

// literalSet finds every occurrence of a fixed set of strings, each at least
// 8 bytes long, in one pass whatever their number: the 8 bytes at each
// position are hashed into a bitset holding the first 8 bytes of every
// string, and only the rare positions whose bit is set are compared exactly.
// On source text that is several times faster than a strings.Replacer over
// the same strings, and unlike a replacer it redacts overlapping occurrences
// whole.
type literalSet struct {
	filter [1 << 16 / 64]uint64
	// heads maps the first 8 bytes of each string to the strings starting
	// with them, longest first.
	heads map[uint64][]string
}

func newLiteralSet(lits []string) *literalSet {
	lits = slices.Clone(lits)
	slices.Sort(lits)
	lits = slices.Compact(lits)
	slices.SortStableFunc(lits, func(a, b string) int { return len(b) - len(a) })
	l := &literalSet{heads: make(map[uint64][]string, len(lits))}
	for _, s := range lits {
		if len(s) < 8 {
			panic("transcript: literal shorter than 8 bytes")
		}
		h := load64(s)
		k := slot(h)
		l.filter[k/64] |= 1 << (k % 64)
		l.heads[h] = append(l.heads[h], s)
	}
	return l
}

func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// slot is a multiplicative hash of 8 bytes to 16 bits.
func slot(h uint64) uint64 { return (h * 0x9E3779B97F4A7C15) >> 48 }

// replace returns s with each run of bytes covered by one or more
// occurrences replaced by repl; s itself when nothing matches.
func (l *literalSet) replace(s, repl string) string {
	var spans [][2]int // merged [start, end) ranges, in order
	for i := 0; i+8 <= len(s); i++ {
		h := load64(s[i:])
		if k := slot(h); l.filter[k/64]&(1<<(k%64)) == 0 {
			continue
		}
		for _, lit := range l.heads[h] {
			if !strings.HasPrefix(s[i:], lit) {
				continue
			}
			end := i + len(lit)
			if n := len(spans); n > 0 && i < spans[n-1][1] {
				spans[n-1][1] = max(spans[n-1][1], end)
			} else {
				spans = append(spans, [2]int{i, end})
			}
			break // the longest match at i covers the others
		}
	}
	if spans == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp[0]])
		b.WriteString(repl)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}
