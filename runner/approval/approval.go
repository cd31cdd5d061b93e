// Package approval decides whether a write or a shell command may run: a
// static policy (Allow, Ask, Deny per tool class, plus command patterns) and,
// for Ask, an Asker (a terminal prompt locally, the gateway in a pod).
package approval

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"mvdan.cc/sh/v3/syntax"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// Mode is the policy for one class of tools.
type Mode string

const (
	Allow Mode = "Allow"
	Ask   Mode = "Ask"
	Deny  Mode = "Deny"
)

// ParseMode accepts the mode names case-insensitively.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Allow, Ask, Deny} {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("invalid approval mode %q (want Allow, Ask or Deny)", s)
}

// Class is what a request is about.
type Class string

const (
	ClassWrite Class = "write"
	ClassShell Class = "shell"
)

// Request describes a call awaiting a decision.
type Request struct {
	ID     string // the approval id, unique in the session ("ap-1")
	CallID string // the model's tool call id
	Tool   string
	Class  Class
	// Summary is a one-line rendering for a human ("go test ./...", "edit main.go").
	Summary string
	// Command is the shell command line for ClassShell.
	Command string
}

// Result is a decision and who made it.
type Result struct {
	Decision contract.Decision
	By       string
	Reason   string
}

// Policy is the static part of the decision.
//
// What an allow-list can and cannot promise: an allow pattern decides which
// command lines run without a person looking at them; it does not make a
// command safe. A build or test command (go test, make, npm test, cargo,
// pytest) runs code from the repository, which the agent can edit, and git
// obeys configuration and hooks inside the repository (core.fsmonitor,
// aliases, diff drivers) that the agent may be able to write. So "go test *"
// in allowCommands means "the agent may run any code it writes, as the
// sandbox user". The sandbox — the pod, its network policy, its credentials —
// is the security boundary, not the pattern. Likewise a deny-list is a guard
// against accidents, not a boundary: a script file, an interpreter, or a
// command name computed at run time does what a pattern cannot see.
type Policy struct {
	Bash   Mode
	Writes Mode
	// AllowCommands and DenyCommands are command patterns: * matches any run of
	// characters (spaces and slashes included), everything else is literal.
	//
	// A command line is parsed as bash (mvdan.cc/sh). Every simple command in
	// it is found — in chains, pipes, subshells, blocks, if/for/while/case
	// bodies, functions, command and process substitutions — and rendered as
	// its words after quote removal joined by single spaces, leaving out
	// leading VAR=value assignments. Commands that run other commands are
	// looked into, up to 8 levels: sh, bash, dash, zsh, ksh, mksh, ash -c
	// STRING, eval, trap and alias (their strings are parsed), find -exec,
	// -execdir, -ok, -okdir, and the wrappers env (including -S), command
	// (not -v), builtin, exec, nice, nohup, timeout, xargs, sudo, doas,
	// busybox, time, stdbuf and setsid. A wrapper and the command it runs are
	// both simple commands.
	//
	// Deny wins. A line is denied when a deny pattern matches the line as
	// written (trimmed), or any simple command, or the same with the command
	// name reduced to its base name (/bin/rm -> rm), or a wrapper's words from
	// any of its first 16 arguments on. A pattern ending in " *" also matches
	// the command alone (deny "rm *" covers "xargs rm"). A line that cannot be
	// parsed is matched only as written.
	//
	// A line is allowed by pattern only when all of this holds: it parses; it
	// has at least one simple command; every simple command matches an allow
	// pattern as written (no base name: "go test *" does not allow "./go
	// test"); nothing in it is only known when it runs — no command or process
	// substitution, parameter or arithmetic expansion, glob or brace
	// expansion, $'…' quoting, [[ ]], function or variable declaration; no
	// command is run with variable assignments (PATH=, LD_PRELOAD=,
	// GOFLAGS=, GIT_CONFIG_*= change what runs); no xargs (its arguments come
	// from stdin); no shell reading commands from stdin; no redirection that
	// writes a file other than /dev/null (redirections are how a command
	// would write outside the workspace, past the write tools' confinement and
	// their own mode; 2>&1 and reading files are fine); and no argument of an
	// allowed program that makes it run another program or write files (see
	// execOption). Anything else falls back to the Bash mode.
	AllowCommands []string
	DenyCommands  []string
}

// Decide returns Allow or Deny, or Ask when a human must answer.
func (p Policy) Decide(r Request) (Mode, string) {
	switch r.Class {
	case ClassShell:
		mode := or(p.Bash, Ask)
		fallback := "bash approval mode is " + string(mode)
		if len(p.AllowCommands) == 0 && len(p.DenyCommands) == 0 {
			return mode, fallback
		}
		cmd := strings.TrimSpace(r.Command)
		a := analyze(cmd)
		// The line as written first: patterns meant for whole lines keep working.
		for _, pat := range p.DenyCommands {
			if matchDeny(pat, cmd) {
				return Deny, fmt.Sprintf("command matches deny pattern %q", pat)
			}
		}
		for _, pat := range p.DenyCommands {
			for _, line := range a.denyLines {
				if matchDeny(pat, line) {
					return Deny, fmt.Sprintf("command matches deny pattern %q", pat)
				}
			}
		}
		if len(p.AllowCommands) == 0 {
			return mode, fallback
		}
		pats, why := p.allowedBy(a)
		if why != "" {
			return mode, fallback + "; no allow pattern applies: " + why
		}
		if len(pats) == 1 {
			return Allow, fmt.Sprintf("command matches allow pattern %q", pats[0])
		}
		quoted := make([]string, len(pats))
		for i, pat := range pats {
			quoted[i] = strconv.Quote(pat)
		}
		return Allow, "command matches allow patterns " + strings.Join(quoted, ", ")
	case ClassWrite:
		return or(p.Writes, Allow), "writes approval mode is " + string(or(p.Writes, Allow))
	}
	return Allow, ""
}

// matchDeny is Match, except that a pattern ending in " *" also matches the
// command without further words: deny "rm *" covers a bare "rm" (as xargs rm
// runs it).
func matchDeny(pattern, s string) bool {
	if p, ok := strings.CutSuffix(pattern, " *"); ok && Match(p, s) {
		return true
	}
	return Match(pattern, s)
}

func or(m, def Mode) Mode {
	if m == "" {
		return def
	}
	return m
}

// allowedBy returns the allow patterns that admit every simple command of the
// analysed line, or why the line cannot be allowed by pattern.
func (p Policy) allowedBy(a *analysis) (pats []string, why string) {
	if a.blocked != "" {
		return nil, a.blocked
	}
	if len(a.cmds) == 0 {
		return nil, "it runs no command"
	}
	for _, c := range a.cmds {
		line := display.Truncate(c.line(), 120)
		switch {
		case !c.literal():
			return nil, fmt.Sprintf("%q has words only known when it runs", line)
		case c.env:
			return nil, fmt.Sprintf("%q is run with variable assignments", line)
		case c.stdinArgs:
			return nil, fmt.Sprintf("%q takes arguments from stdin (xargs)", line)
		}
		var found string
		for _, pat := range p.AllowCommands {
			if Match(pat, c.line()) {
				found = pat
				break
			}
		}
		if found == "" {
			return nil, fmt.Sprintf("%q matches none", line)
		}
		if opt := execOption(c.args()); opt != "" {
			return nil, fmt.Sprintf("in %q, %s can run another program or write files", line, display.Truncate(opt, 60))
		}
		if !slices.Contains(pats, found) {
			pats = append(pats, found)
		}
	}
	return pats, ""
}

// Limits of the analysis, so memory and time stay bounded whatever the model
// sends: longer lines (the bash tool refuses more than 4000 bytes anyway) are
// matched only as written, deeper nesting of shells and wrappers is not looked
// into, and neither is ever allowed by pattern.
const (
	maxAnalysedBytes = 16 << 10
	maxNesting       = 8
	maxWrapperSplits = 16
)

// word is one argument after quote removal. A word whose value is only known
// when the shell runs (expansions, globs) keeps its source text and is not
// literal.
type word struct {
	text    string
	literal bool
}

// simpleCommand is one command the line runs.
type simpleCommand struct {
	words     []word
	env       bool // run with VAR=value assignments
	stdinArgs bool // run by xargs, which appends arguments from stdin
}

func (c simpleCommand) args() []string {
	out := make([]string, len(c.words))
	for i, w := range c.words {
		out[i] = w.text
	}
	return out
}

func (c simpleCommand) line() string { return strings.Join(c.args(), " ") }

func (c simpleCommand) literal() bool {
	for _, w := range c.words {
		if !w.literal {
			return false
		}
	}
	return true
}

// analysis is what a command line runs, as far as a parser can tell.
type analysis struct {
	cmds      []simpleCommand
	denyLines []string // renderings deny patterns are matched against
	blocked   string   // why no pattern may allow the line; "" if none
}

func analyze(cmd string) *analysis {
	a := &analysis{}
	if len(cmd) > maxAnalysedBytes {
		a.block("it is too long to analyse")
		return a
	}
	a.parse(cmd, 0)
	return a
}

// block records the first reason the line cannot be allowed by pattern.
func (a *analysis) block(why string) {
	if a.blocked == "" {
		a.blocked = why
	}
}

func (a *analysis) parse(src string, depth int) {
	if depth > maxNesting {
		a.block("it nests shells or wrappers too deeply to analyse")
		return
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), "")
	if err != nil {
		a.block("it cannot be parsed as a shell command")
		return
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		a.visit(n, depth)
		return true
	})
}

// visit looks at one node; the walk goes on into its children, so commands
// inside substitutions, bodies and here-documents are all seen.
func (a *analysis) visit(n syntax.Node, depth int) {
	switch n := n.(type) {
	case *syntax.CallExpr:
		if len(n.Args) == 0 {
			a.block("it assigns shell variables")
			return
		}
		words := make([]word, len(n.Args))
		for i, w := range n.Args {
			words[i] = renderWord(w)
		}
		a.command(simpleCommand{words: words, env: len(n.Assigns) > 0}, depth)
	case *syntax.CmdSubst:
		a.block("it uses command substitution")
	case *syntax.ProcSubst:
		a.block("it uses process substitution")
	case *syntax.ParamExp:
		a.block("it expands a variable")
	case *syntax.ArithmExp, *syntax.ArithmCmd, *syntax.LetClause, *syntax.CStyleLoop:
		a.block("it uses arithmetic, which can run commands")
	case *syntax.ExtGlob:
		a.block("it uses a glob")
	case *syntax.TestClause:
		a.block("it uses [[ ]], which can evaluate arithmetic")
	case *syntax.DeclClause:
		a.block("it declares variables")
		a.denyLines = append(a.denyLines, source(n))
	case *syntax.FuncDecl, *syntax.TestDecl:
		a.block("it declares a function")
	case *syntax.CoprocClause:
		a.block("it starts a coprocess")
	case *syntax.ArrayExpr:
		a.block("it uses an array")
	case *syntax.Redirect:
		a.redirect(n)
	}
}

// redirect blocks redirections that write files. Duplicating descriptors
// (2>&1), reading files and here-documents are fine; their words and bodies
// are checked for expansions by the walk.
func (a *analysis) redirect(r *syntax.Redirect) {
	if r.N != nil && !digits(r.N.Value) {
		a.block("it redirects to a named descriptor")
		return
	}
	switch r.Op {
	case syntax.RdrIn, syntax.Hdoc, syntax.DashHdoc, syntax.WordHdoc:
		return
	case syntax.DplIn, syntax.DplOut:
		if w := renderWord(r.Word); w.literal && (digits(w.text) || w.text == "-") {
			return
		}
	}
	if w := renderWord(r.Word); w.literal && (w.text == "/dev/null" || w.text == "/dev/stdout" || w.text == "/dev/stderr") {
		return
	}
	a.block("it redirects output to a file")
}

// command records a simple command and looks inside it when it runs another
// command: a shell with -c, eval, trap, alias, find -exec, or a wrapper such
// as env, timeout or xargs.
func (a *analysis) command(c simpleCommand, depth int) {
	a.cmds = append(a.cmds, c)
	a.denyLines = append(a.denyLines, denyRenderings(c.words)...)
	if len(c.words) == 0 || !c.words[0].literal {
		return
	}
	name, args := path.Base(c.words[0].text), c.words[1:]
	if depth >= maxNesting {
		if shellWrappers[name] || isShell(name) || name == "eval" || name == "trap" || name == "find" || name == "alias" {
			a.block("it nests shells or wrappers too deeply to analyse")
		}
		return
	}
	switch {
	case isShell(name):
		switch kind, script := shellScript(args); kind {
		case shellUnknown:
			a.block("it runs a shell on something only known when it runs")
		case shellStdin:
			a.block("it runs a shell that reads commands from stdin")
		case shellString:
			a.parse(script.text, depth+1)
		}
	case name == "eval":
		if !allLiteral(args) {
			a.block("it evals a string only known when it runs")
			return
		}
		a.parse(joinWords(args), depth+1)
	case name == "trap":
		// trap 'commands' SIGNAL... runs the commands later.
		if len(args) > 1 && !strings.HasPrefix(args[0].text, "-") {
			if !args[0].literal {
				a.block("it sets a trap only known when it runs")
				return
			}
			a.parse(args[0].text, depth+1)
		}
	case name == "find":
		// find -exec CMD ARGS ; and the like run CMD: deny patterns see it.
		for i := 0; i < len(args); i++ {
			switch args[i].text {
			case "-exec", "-execdir", "-ok", "-okdir":
				j := i + 1
				for j < len(args) && args[j].text != ";" && args[j].text != "+" {
					j++
				}
				if j > i+1 {
					a.command(simpleCommand{words: args[i+1 : j]}, depth+1)
				}
				i = j
			}
		}
	case name == "alias":
		// alias name='commands' (bash expands aliases only when told to).
		for _, w := range args {
			if _, value, ok := strings.Cut(w.text, "="); ok && w.literal {
				a.parse(value, depth+1)
			}
		}
	case shellWrappers[name]:
		inner, ok := unwrap(name, args)
		if ok && inner.lookup {
			return
		}
		// Deny patterns see the words from every argument on, whatever the
		// wrapper's options mean.
		a.denyLines = append(a.denyLines, suffixRenderings(args)...)
		if !ok {
			a.block(fmt.Sprintf("it runs %s with options that cannot be analysed", name))
			return
		}
		if inner.split != nil {
			a.block(fmt.Sprintf("it runs %s -S", name))
			if !allLiteral(inner.split) {
				return
			}
			a.parse(joinWords(inner.split), depth+1)
			return
		}
		if len(inner.words) == 0 {
			return
		}
		a.command(simpleCommand{words: inner.words, env: c.env || inner.env, stdinArgs: c.stdinArgs || name == "xargs"}, depth+1)
	}
}

// denyRenderings are the lines deny patterns are matched against for one
// command: its words, and the same with the command name's base name.
func denyRenderings(words []word) []string {
	if len(words) == 0 {
		return nil
	}
	line := joinWords(words)
	out := []string{line}
	if base := path.Base(words[0].text); base != words[0].text && words[0].literal {
		out = append(out, base+line[len(words[0].text):])
	}
	return out
}

// suffixRenderings are the deny renderings of args[i:] for the first
// maxWrapperSplits values of i, sharing one joined line.
func suffixRenderings(args []word) []string {
	line := joinWords(args)
	var out []string
	off := 0
	for _, w := range args[:min(len(args), maxWrapperSplits)] {
		out = append(out, line[off:])
		if base := path.Base(w.text); w.literal && base != w.text {
			out = append(out, base+line[off+len(w.text):])
		}
		off += len(w.text) + 1
	}
	return out
}

func joinWords(ws []word) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w.text)
	}
	return b.String()
}

func allLiteral(ws []word) bool {
	for _, w := range ws {
		if !w.literal {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// renderWord removes quotes the way the shell does. A word with any expansion
// (parameters, substitutions, arithmetic, globs, braces, $'…' or $"…"
// quoting) is not literal and keeps its source text.
func renderWord(w *syntax.Word) word {
	var b strings.Builder
	var shape []byte // the word's unquoted, unescaped characters; quoted ones as 'x'
	literal := true
	for _, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			v := p.Value
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
					b.WriteByte(v[i])
					shape = append(shape, 'x')
					continue
				}
				b.WriteByte(v[i])
				shape = append(shape, v[i])
			}
		case *syntax.SglQuoted:
			literal = literal && !p.Dollar
			b.WriteString(p.Value)
			shape = append(shape, 'x')
		case *syntax.DblQuoted:
			literal = literal && !p.Dollar
			for _, q := range p.Parts {
				l, ok := q.(*syntax.Lit)
				if !ok {
					literal = false
					continue
				}
				b.WriteString(unescapeDouble(l.Value))
			}
			shape = append(shape, 'x')
		default:
			literal = false
		}
	}
	if literal && expands(string(shape)) {
		literal = false
	}
	if !literal {
		return word{text: source(w)}
	}
	return word{text: b.String(), literal: true}
}

// expands reports whether unquoted text undergoes pathname or brace
// expansion: * ? or [...], or {a,b} / {1..9}.
func expands(shape string) bool {
	if strings.ContainsAny(shape, "*?") {
		return true
	}
	if i := strings.IndexByte(shape, '['); i >= 0 && strings.IndexByte(shape[i:], ']') > 0 {
		return true
	}
	if i := strings.IndexByte(shape, '{'); i >= 0 {
		if j := strings.IndexByte(shape[i:], '}'); j > 0 {
			inner := shape[i : i+j]
			return strings.Contains(inner, ",") || strings.Contains(inner, "..")
		}
	}
	return false
}

// unescapeDouble removes the backslashes that are special inside double quotes.
func unescapeDouble(v string) string {
	if !strings.Contains(v, "\\") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("$`\"\\\n", v[i+1]) >= 0 {
			i++
			if v[i] == '\n' {
				continue
			}
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func source(n syntax.Node) string {
	var b strings.Builder
	if err := syntax.NewPrinter().Print(&b, n); err != nil {
		return ""
	}
	return b.String()
}

// shellWrappers run the command in their arguments; see unwrap. Other
// programs that run commands (watch, flock, chroot, su, ssh, …) are ordinary
// commands to the policy: allowing them with * allows whatever they run.
var shellWrappers = map[string]bool{
	"env": true, "command": true, "builtin": true, "exec": true, "nice": true, "nohup": true,
	"timeout": true, "xargs": true, "sudo": true, "doas": true, "busybox": true, "time": true,
	"stdbuf": true, "setsid": true,
}

func isShell(name string) bool {
	switch name {
	case "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash":
		return true
	}
	return false
}

// What a shell invocation runs.
const (
	shellUnknown = iota // options that cannot be followed
	shellString         // sh -c STRING
	shellFile           // sh FILE
	shellStdin          // sh, sh -s: commands from stdin
)

// shellScript tells what a shell with these arguments runs, and for -c the
// command string.
func shellScript(args []word) (int, *word) {
	c, s := false, false
	i := 0
	for ; i < len(args); i++ {
		if !args[i].literal {
			return shellUnknown, nil
		}
		a := args[i].text
		if a == "--" || a == "-" {
			i++
			break
		}
		if strings.HasPrefix(a, "--") {
			if a == "--rcfile" || a == "--init-file" {
				i++
			}
			continue
		}
		if len(a) < 2 || (a[0] != '-' && a[0] != '+') {
			break
		}
		for _, ch := range a[1:] {
			switch ch {
			case 'c':
				c = true
			case 's':
				s = true
			case 'o', 'O':
				i++ // -o option and -O shopt take a value
			}
		}
	}
	switch {
	case c && i < len(args):
		if !args[i].literal {
			return shellUnknown, nil
		}
		return shellString, &args[i]
	case c:
		return shellUnknown, nil // -c without a string
	case s || i >= len(args):
		return shellStdin, nil
	}
	return shellFile, nil
}

// inner is what a wrapper runs.
type inner struct {
	words  []word
	env    bool   // the wrapper sets variables (env VAR=x cmd)
	split  []word // env -S STRING [ARGS]: the string and arguments to split
	lookup bool   // command -v/-V: runs nothing
}

// optSpec describes a getopt-style option syntax.
type optSpec struct {
	flags, values, attached string // short options: no value, a value, an optional attached value
	long, longValues        []string
	numeric                 bool // -N is an option (nice -10)
}

var wrapperOpts = map[string]optSpec{
	"env":     {flags: "i0v", values: "uCP", long: []string{"ignore-environment", "null", "debug"}, longValues: []string{"unset", "chdir"}},
	"command": {flags: "pvV"},
	"builtin": {},
	"exec":    {flags: "cl", values: "a"},
	"nice":    {values: "n", longValues: []string{"adjustment"}, numeric: true},
	"nohup":   {},
	"timeout": {flags: "v", values: "sk", long: []string{"preserve-status", "foreground", "verbose"}, longValues: []string{"signal", "kill-after"}},
	"xargs": {flags: "0prtx", values: "adEILnPs", attached: "iel",
		long:       []string{"null", "interactive", "no-run-if-empty", "verbose", "exit", "open-tty", "eof", "replace", "max-lines"},
		longValues: []string{"arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"}},
	"sudo": {flags: "AbEHiKklnPSsVv", values: "CDghpRrTtUu",
		long:       []string{"askpass", "background", "preserve-env", "set-home", "login", "remove-timestamp", "reset-timestamp", "non-interactive", "preserve-groups", "stdin", "shell", "validate"},
		longValues: []string{"close-from", "chdir", "group", "host", "prompt", "chroot", "role", "type", "command-timeout", "other-user", "user"}},
	"doas":    {flags: "ns", values: "Cu"},
	"busybox": {},
	"time":    {flags: "pvaq", values: "fo", long: []string{"portability", "verbose", "append", "quiet"}, longValues: []string{"format", "output"}},
	"stdbuf":  {values: "ioe", longValues: []string{"input", "output", "error"}},
	"setsid":  {flags: "cfw", long: []string{"ctty", "fork", "wait"}},
}

// unwrap returns the command a wrapper runs, or false when its options cannot
// be followed (an unknown option, a computed word).
func unwrap(name string, args []word) (inner, bool) {
	spec := wrapperOpts[name]
	var in inner
	i := 0
	for ; i < len(args); i++ {
		w := args[i]
		if !w.literal {
			return inner{}, false
		}
		a := w.text
		if a == "--" {
			i++
			break
		}
		if name == "env" {
			if a == "-" {
				continue
			}
			// -S / --split-string: the rest is one string split into words.
			if v, ok := strings.CutPrefix(a, "-S"); ok {
				if v == "" {
					i++
					if i >= len(args) {
						return inner{}, false
					}
					return inner{split: args[i:]}, true
				}
				return inner{split: append([]word{{text: v, literal: true}}, args[i+1:]...)}, true
			}
			if v, ok := strings.CutPrefix(a, "--split-string"); ok {
				if v, ok = strings.CutPrefix(v, "="); ok {
					return inner{split: append([]word{{text: v, literal: true}}, args[i+1:]...)}, true
				}
				i++
				if i >= len(args) {
					return inner{}, false
				}
				return inner{split: args[i:]}, true
			}
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if name == "command" && strings.ContainsAny(a, "vV") {
			return inner{lookup: true}, true // command -v only looks a name up
		}
		n, ok := spec.skip(args[i:])
		if !ok {
			return inner{}, false
		}
		i += n - 1
	}
	if name == "env" || name == "sudo" {
		for ; i < len(args) && assignment(args[i].text); i++ {
			in.env = true
		}
	}
	if name == "timeout" {
		i++ // the duration
	}
	if i >= len(args) {
		if name == "xargs" {
			return inner{words: []word{{text: "echo", literal: true}}}, true
		}
		return in, true
	}
	in.words = args[i:]
	return in, true
}

// skip consumes the option at args[0] and its value; it returns how many words
// that was, or false for an unknown option.
func (s optSpec) skip(args []word) (int, bool) {
	a := args[0].text
	if name, ok := strings.CutPrefix(a, "--"); ok {
		name, _, hasValue := strings.Cut(name, "=")
		switch {
		case slices.Contains(s.long, name):
			return 1, true
		case slices.Contains(s.longValues, name):
			if hasValue {
				return 1, true
			}
			return 2, len(args) >= 2
		}
		return 0, false
	}
	if s.numeric && digits(a[1:]) {
		return 1, true
	}
	for j := 1; j < len(a); j++ {
		c := a[j]
		switch {
		case strings.IndexByte(s.attached, c) >= 0:
			return 1, true
		case strings.IndexByte(s.values, c) >= 0:
			if j < len(a)-1 {
				return 1, true
			}
			return 2, len(args) >= 2
		case strings.IndexByte(s.flags, c) < 0:
			return 0, false
		}
	}
	return 1, true
}

// assignment reports whether s is NAME=value.
func assignment(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return false
	}
	for i, c := range []byte(name) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// execOption returns the argument that makes an allowed program run another
// program of the caller's choosing, or write files outside the write tools,
// or "". The list covers the usual suspects, not every program: an allow
// pattern with * admits every option of the program it names.
//
//   - git: -c, --config-env, --exec-path=, --git-dir before the subcommand;
//     --upload-pack, --receive-pack, --exec, --extcmd, --to-cmd, --cc-cmd,
//     --sendmail-cmd, --output (and their abbreviations); -u for clone, fetch and
//     ls-remote; -x for rebase and difftool; submodule foreach, bisect run,
//     filter-branch, and any git config that is not a read.
//   - go: -exec, -toolexec, -vettool, -overlay, -modfile, -ldflags with
//     -extld, and go env -w.
//   - find: -exec, -execdir, -ok, -okdir, -delete, -fprint, -fprint0,
//     -fprintf, -fls.
//   - make: --eval, -E.
//   - python: -c; perl: -e, -E, -M, -m; ruby: -e; php: -r; node: -e, --eval,
//     -p, --print, -r, --require, --import, --loader.
//   - tar: --to-command, --use-compress-program, -I, --checkpoint-action,
//     --info-script, --new-volume-script, -F, --rsh-command, --rmt-command;
//     rsync: -e, --rsh, --rsync-path; sort: --compress-program.
//
// It does not flag make -f, npm, go generate and the like: they run
// repository code, which the agent can edit anyway.
func execOption(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	name, args := path.Base(argv[0]), argv[1:]
	switch {
	case name == "git":
		return gitExecOption(args)
	case name == "go":
		return goExecOption(args)
	case name == "find":
		for _, a := range args {
			switch a {
			case "-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls":
				return a
			}
		}
	case name == "make" || name == "gmake":
		for _, a := range args {
			if longOption(a, "eval") || shortOption(a, "E") {
				return a
			}
		}
	case strings.HasPrefix(name, "python") || name == "pypy" || name == "pypy3":
		return interpreterOption(args, "c", nil)
	case name == "perl":
		return interpreterOption(args, "eEMm", nil)
	case name == "ruby":
		return interpreterOption(args, "e", nil)
	case name == "php":
		return interpreterOption(args, "r", nil)
	case name == "node" || name == "nodejs":
		return interpreterOption(args, "eprr", []string{"eval", "print", "require", "import", "loader", "experimental-loader"})
	case name == "tar" || name == "gtar" || name == "bsdtar":
		for i, a := range args {
			if longOption(a, "to-command", "use-compress-program", "checkpoint-action", "info-script", "new-volume-script", "rsh-command", "rmt-command") ||
				shortOption(a, "IF") || (i == 0 && !strings.HasPrefix(a, "-") && strings.ContainsAny(a, "IF")) {
				return a
			}
		}
	case name == "rsync":
		for _, a := range args {
			if longOption(a, "rsh", "rsync-path") || shortOption(a, "e") {
				return a
			}
		}
	case name == "sort":
		for _, a := range args {
			if longOption(a, "compress-program") {
				return a
			}
		}
	}
	return ""
}

// longOption reports whether a is --name or --name=value for one of names,
// or an abbreviation of one (getopt_long and git accept unique prefixes).
func longOption(a string, names ...string) bool {
	name, ok := strings.CutPrefix(a, "--")
	if !ok || name == "" {
		return false
	}
	name, _, _ = strings.Cut(name, "=")
	for _, n := range names {
		if strings.HasPrefix(n, name) {
			return true
		}
	}
	return false
}

// shortOption reports whether a is a cluster of short options containing one
// of letters (-x, -ax, -xVALUE).
func shortOption(a, letters string) bool {
	return len(a) > 1 && a[0] == '-' && a[1] != '-' && strings.ContainsAny(a[1:], letters)
}

// interpreterOption checks an interpreter's options, up to the script name.
func interpreterOption(args []string, letters string, long []string) string {
	for _, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return ""
		}
		if shortOption(a, letters) || (len(long) > 0 && longOption(a, long...)) {
			return a
		}
	}
	return ""
}

func gitExecOption(args []string) string {
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		a := args[i]
		switch {
		case a == "-c", a == "--config-env", strings.HasPrefix(a, "--config-env="),
			strings.HasPrefix(a, "--exec-path="), a == "--git-dir", strings.HasPrefix(a, "--git-dir="):
			return a
		case a == "-C", a == "--work-tree", a == "--namespace", a == "--super-prefix", a == "--attr-source", a == "--list-cmds":
			i++ // takes a value
		}
	}
	if i >= len(args) {
		return ""
	}
	sub, rest := args[i], args[i+1:]
	for j, a := range rest {
		if a == "--" {
			break
		}
		if longOption(a, "upload-pack", "receive-pack", "exec", "extcmd", "to-cmd", "cc-cmd", "sendmail-cmd", "output") {
			return a
		}
		switch sub {
		case "clone", "fetch", "ls-remote":
			if shortOption(a, "u") {
				return a
			}
		case "rebase", "difftool":
			if shortOption(a, "x") {
				return a
			}
		case "submodule":
			if a == "foreach" {
				return "submodule foreach"
			}
		case "bisect":
			if j == 0 && a == "run" {
				return "bisect run"
			}
		}
	}
	switch sub {
	case "filter-branch":
		return "filter-branch"
	case "config":
		if len(rest) > 0 && (rest[0] == "get" || rest[0] == "list") {
			return ""
		}
		for _, a := range rest {
			switch a {
			case "--get", "--get-all", "--get-regexp", "--get-urlmatch", "--list", "-l":
				return ""
			}
		}
		return "git config"
	}
	return ""
}

func goExecOption(args []string) string {
	for i, a := range args {
		if a == "-args" || a == "--args" || a == "--" {
			return "" // what follows goes to the test binary or the program
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		switch name {
		case "exec", "toolexec", "vettool", "overlay", "modfile":
			return a
		case "ldflags":
			if !hasValue && i+1 < len(args) {
				value = args[i+1]
			}
			if strings.Contains(value, "extld") {
				return a
			}
		case "w":
			if len(args) > 0 && args[0] == "env" {
				return "go env -w"
			}
		}
	}
	return ""
}

// Match reports whether s matches pattern, where * matches any sequence of
// characters (including spaces and slashes) and everything else is literal.
func Match(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}

// Asker obtains a decision for a request the policy left to a human. It may
// block until someone answers or ctx ends.
type Asker interface {
	Ask(ctx context.Context, r Request) (Result, error)
}

// Fixed answers every request the same way: --yes, or a refusal when nobody
// can be asked (no terminal).
type Fixed struct {
	Decision contract.Decision
	By       string
	Reason   string
}

func (f Fixed) Ask(context.Context, Request) (Result, error) {
	return Result(f), nil
}

// Terminal prompts on a terminal. One question at a time.
type Terminal struct {
	In  io.Reader
	Out io.Writer

	mu sync.Mutex
	rd *bufio.Reader
}

func (t *Terminal) Ask(ctx context.Context, r Request) (Result, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rd == nil {
		t.rd = bufio.NewReader(t.In)
	}
	what := "write"
	if r.Class == ClassShell {
		what = "run"
	}
	// The person approves what runs: the command itself when there is one,
	// with anything that could move the cursor, recolour or reorder the text
	// shown as an escape.
	action := r.Summary
	if r.Class == ClassShell && r.Command != "" {
		action = r.Command
	}
	shown := display.Escape(action)
	fmt.Fprintf(t.Out, "\n  ? Allow %s to %s %s\n", display.Escape(r.Tool), what, shown)
	if shown != action {
		fmt.Fprint(t.Out, "    (it contains control or invisible characters, shown as escapes like \\n, \\x1b or \\u202e)\n")
	}
	fmt.Fprint(t.Out, "    [y]es / [N]o / [r]eason for no: ")
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := t.rd.ReadString('\n')
		ch <- answer{line, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(t.Out)
		return Result{}, context.Cause(ctx)
	case a := <-ch:
		resp := strings.TrimSpace(a.line)
		switch strings.ToLower(resp) {
		case "y", "yes":
			return Result{Decision: contract.DecisionAllow, By: "terminal"}, nil
		case "r", "reason":
			fmt.Fprint(t.Out, "    reason (sent to the model): ")
			reason, _ := t.rd.ReadString('\n')
			return Result{Decision: contract.DecisionDeny, By: "terminal", Reason: strings.TrimSpace(reason)}, nil
		}
		if a.err != nil && resp == "" {
			fmt.Fprintln(t.Out)
			return Result{Decision: contract.DecisionDeny, By: "terminal", Reason: "no answer (input closed)"}, nil
		}
		return Result{Decision: contract.DecisionDeny, By: "terminal", Reason: "denied by the user"}, nil
	}
}
