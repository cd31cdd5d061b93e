// Package approval decides whether a write or a shell command may run: a
// static policy (Allow, Ask, Deny per tool class, plus command patterns) and,
// for Ask, an Asker (a terminal prompt locally, the gateway in a pod).
package approval

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/agentry-dev/agentry/contract"
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
	ID    string // the tool call id
	Tool  string
	Class Class
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
type Policy struct {
	Bash   Mode
	Writes Mode
	// AllowCommands and DenyCommands are shell patterns matched against the
	// whole command line, where * matches any run of characters. Deny wins.
	// Allow patterns only apply to simple commands: a line with ; & | ` $( > <
	// or a newline could chain anything after an allowed prefix, so it falls
	// back to the Bash mode.
	AllowCommands []string
	DenyCommands  []string
}

// Decide returns Allow or Deny, or Ask when a human must answer.
func (p Policy) Decide(r Request) (Mode, string) {
	switch r.Class {
	case ClassShell:
		cmd := strings.TrimSpace(r.Command)
		for _, pat := range p.DenyCommands {
			if Match(pat, cmd) {
				return Deny, fmt.Sprintf("command matches deny pattern %q", pat)
			}
		}
		if !compound(cmd) {
			for _, pat := range p.AllowCommands {
				if Match(pat, cmd) {
					return Allow, fmt.Sprintf("command matches allow pattern %q", pat)
				}
			}
		}
		return or(p.Bash, Ask), "bash approval mode is " + string(or(p.Bash, Ask))
	case ClassWrite:
		return or(p.Writes, Allow), "writes approval mode is " + string(or(p.Writes, Allow))
	}
	return Allow, ""
}

func or(m, def Mode) Mode {
	if m == "" {
		return def
	}
	return m
}

// compound reports whether cmd could run more than one command or write
// files through redirection. Merging stderr into stdout ("2>&1") is neither.
func compound(cmd string) bool {
	cmd = strings.ReplaceAll(cmd, "2>&1", "")
	return strings.ContainsAny(cmd, ";&|`<>\n") || strings.Contains(cmd, "$(")
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
	return Result{Decision: f.Decision, By: f.By, Reason: f.Reason}, nil
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
	fmt.Fprintf(t.Out, "\n  ? Allow %s to %s %s\n    [y]es / [N]o / [r]eason for no: ", r.Tool, what, r.Summary)
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
