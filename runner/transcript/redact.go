package transcript

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Redactor removes secrets from text before it is recorded anywhere: exact
// values the runner knows (its API key, S3 credentials) and strings that look
// like well-known credential formats. The model itself still sees file
// contents unredacted; only the record is scrubbed.
//
// A known value is also removed in the encodings a command would print it in:
// base64 (standard and URL-safe, padded or not, and at any alignment inside a
// longer base64 stream), hex (either case) and URL escaping.
type Redactor struct {
	// literals finds every encoded form of every known secret in one pass;
	// nil when there are none.
	literals *literalSet
	patterns []secretPattern
}

const redactedSecret = "[REDACTED:secret]"

type secretPattern struct {
	kind string
	// hints are substrings one of which must be present for the pattern to
	// possibly match; checking them first keeps redaction cheap on the large
	// tool outputs that contain no secret at all.
	hints []string
	re    *regexp.Regexp
	// keep preserves submatch 1 (e.g. "Bearer ") so the record still shows
	// what kind of value was there.
	keep bool
}

var defaultPatterns = []secretPattern{
	{kind: "private-key", hints: []string{"PRIVATE KEY"}, re: regexp.MustCompile(`-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?(-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|$)`)},
	{kind: "openai-key", hints: []string{"sk-"}, re: regexp.MustCompile(`\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20,}`)},
	{kind: "github-token", hints: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, re: regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{30,}`)},
	{kind: "github-token", hints: []string{"github_pat_"}, re: regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{20,}`)},
	{kind: "aws-access-key", hints: []string{"AKIA", "ASIA"}, re: regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`)},
	{kind: "aws-secret-key", hints: []string{"ecret", "ECRET"}, re: regexp.MustCompile(`(?i)(aws_?secret_?access_?key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}`), keep: true},
	{kind: "slack-token", hints: []string{"xox"}, re: regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`)},
	{kind: "google-api-key", hints: []string{"AIza"}, re: regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}`)},
	{kind: "jwt", hints: []string{"eyJ"}, re: regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}`)},
	{kind: "bearer-token", hints: []string{"earer", "EARER"}, re: regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-]{16,}`), keep: true},
	{kind: "password-url", hints: []string{"://"}, re: regexp.MustCompile(`(\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]{3,}@`), keep: true},
}

// NewRedactor returns a redactor for the well-known patterns and the given
// exact secrets. Secrets shorter than 8 bytes are ignored: redacting them would
// mangle ordinary words without protecting anything.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{patterns: defaultPatterns}
	var forms []string
	for _, s := range secrets {
		s = strings.TrimSpace(s)
		if len(s) >= 8 {
			forms = append(forms, encodedForms(s)...)
		}
	}
	if len(forms) > 0 {
		r.literals = newLiteralSet(forms)
	}
	return r
}

// encodedForms lists s as it could appear in recorded text: itself, base64,
// hex and URL-escaped. Forms shorter than 8 bytes are dropped, like short
// secrets.
func encodedForms(s string) []string {
	b := []byte(s)
	forms := []string{
		s,
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		url.QueryEscape(s),
		url.PathEscape(s),
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		raw := enc.WithPadding(base64.NoPadding)
		forms = append(forms, enc.EncodeToString(b), raw.EncodeToString(b))
		forms = append(forms, base64Aligned(raw, b)...)
	}
	return slices.DeleteFunc(forms, func(f string) bool { return len(f) < 8 })
}

// base64Aligned returns the characters of s's base64 encoding that depend on
// s alone, for each of the three offsets (0, 1 or 2 bytes, mod 3) at which s
// can start inside a longer encoded stream. The first and last characters,
// which mix in bits of the neighbouring bytes, differ from stream to stream
// and are left out: character i covers bits [6i, 6i+6), and s occupies bits
// [8k, 8(k+n)) after k filler bytes.
func base64Aligned(raw *base64.Encoding, s []byte) []string {
	out := make([]string, 0, 3)
	for k := range 3 {
		full := raw.EncodeToString(append(make([]byte, k, k+len(s)), s...))
		from, to := (8*k+5)/6, 8*(k+len(s))/6
		out = append(out, full[from:to])
	}
	return out
}

// String returns s with every secret replaced by "[REDACTED:<kind>]".
func (r *Redactor) String(s string) string {
	if r == nil || len(s) < 8 {
		return s
	}
	if r.literals != nil {
		s = r.literals.replace(s, redactedSecret)
	}
	for _, p := range r.patterns {
		if !containsAny(s, p.hints) {
			continue
		}
		repl := "[REDACTED:" + p.kind + "]"
		if p.keep {
			repl = "${1}" + repl
		}
		s = p.re.ReplaceAllString(s, repl)
	}
	return s
}

// redactBytes is String for a byte slice; b itself is returned when nothing
// was redacted.
func (r *Redactor) redactBytes(b []byte) []byte {
	if r == nil || len(b) < 8 {
		return b
	}
	s := string(b)
	if red := r.String(s); red != s {
		return []byte(red)
	}
	return b
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

var timeType = reflect.TypeFor[time.Time]()

// Apply redacts every exported string reachable from v, which must be a pointer.
func (r *Redactor) Apply(v any) {
	if r == nil {
		return
	}
	r.walk(reflect.ValueOf(v))
}

func (r *Redactor) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			r.walk(v.Elem())
		}
	case reflect.Struct:
		if v.Type() == timeType {
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				r.walk(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			r.walk(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.String {
				v.SetMapIndex(k, reflect.ValueOf(r.String(e.String())).Convert(e.Type()))
			}
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(r.String(v.String()))
		}
	}
}
