// Package tools implements what the model can call. Each tool is a type with a
// name, a JSON schema for its arguments, a kind (read, write, shell) and an
// Execute method; the registry is a list. Errors returned by Execute are sent
// to the model verbatim, so they say what went wrong and what to do instead.
package tools

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// Kind groups tools for scheduling and approval.
type Kind int

const (
	// KindRead tools only observe the workspace; several run concurrently.
	KindRead Kind = iota
	// KindWrite tools change files; they need the writes approval.
	KindWrite
	// KindShell tools run commands; they need the bash approval.
	KindShell
)

func (k Kind) String() string {
	switch k {
	case KindRead:
		return "read"
	case KindWrite:
		return "write"
	case KindShell:
		return "shell"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Tool is one callable tool.
type Tool interface {
	Name() string
	Description() string
	// Schema is the JSON schema of the arguments object.
	Schema() json.RawMessage
	Kind() Kind
	// Args returns a pointer to a new zero value of the argument struct:
	// arguments are decoded into it once, strictly (see Canonical), and the
	// schema describes it.
	Args() any
	// Execute runs the call. A returned error is a failed call whose message
	// goes to the model; the session continues.
	Execute(ctx context.Context, args json.RawMessage) (string, error)
	// Describe renders the call in a few words for approval prompts and
	// progress lines ("bash: go test ./...", "edit_file main.go").
	Describe(args json.RawMessage) string
}

// Set is an ordered list of tools.
type Set []Tool

// Lookup finds a tool by name.
func (s Set) Lookup(name string) (Tool, bool) {
	for _, t := range s {
		if t.Name() == name {
			return t, true
		}
	}
	return nil, false
}

// Names lists tool names in order.
func (s Set) Names() []string {
	out := make([]string, len(s))
	for i, t := range s {
		out[i] = t.Name()
	}
	return out
}

// Select keeps the named tools, in the set's order. Unknown names are an error
// listing what exists.
func (s Set) Select(names []string) (Set, error) {
	var out Set
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := s.Lookup(n); !ok {
			return nil, fmt.Errorf("unknown tool %q (available: %s)", n, strings.Join(s.Names(), ", "))
		}
	}
	for _, t := range s {
		if slices.Contains(names, t.Name()) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Env is what the tools act on.
type Env struct {
	Workspace *workspace.Root
	// Repo is nil when the workspace is not a git checkout.
	Repo *gitrepo.Repo
	Bash BashConfig
}

// All returns every tool, in the order they are offered to the model.
func All(env Env) Set {
	return Set{
		&ReadFile{WS: env.Workspace},
		&WriteFile{WS: env.Workspace},
		&EditFile{WS: env.Workspace},
		&ListDir{WS: env.Workspace},
		&Glob{WS: env.Workspace},
		&Grep{WS: env.Workspace},
		&Bash{WS: env.Workspace, Config: env.Bash},
		&GitStatus{Repo: env.Repo},
		&GitDiff{Repo: env.Repo},
	}
}

// typed is the part of a tool that follows from its argument struct A: a new A to decode
// a call into, and the schema generated from A. Each tool type embeds it.
type typed[A any] struct{}

func (typed[A]) Args() any               { return new(A) }
func (typed[A]) Schema() json.RawMessage { return schemaFor[A]() }

// parse decodes a call's arguments strictly into a new A and checks them (see checked and
// requirer), so that the tool runs exactly the value Canonical approved.
func parse[A any](t Tool, raw json.RawMessage) (*A, error) {
	a := new(A)
	if err := decode(t, raw, a); err != nil {
		return nil, err
	}
	if c, ok := any(a).(checked); ok {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	if r, ok := any(a).(requirer); ok {
		if field := r.missing(); field != "" {
			return nil, fmt.Errorf("%s: %q is required", t.Name(), field)
		}
	}
	return a, nil
}

// missing returns field when its value is empty, for requirer methods.
func missing(field, value string) string {
	if value == "" {
		return field
	}
	return ""
}

// checked arguments are refused already by Canonical, before anyone approves the call,
// when check fails.
type checked interface{ check() error }

// requirer arguments name a required argument the call left empty; the call is approved
// (or not) as sent and fails when it runs.
type requirer interface{ missing() string }

// describeArg reads one string field for Describe, which must never fail. The
// loop passes canonical arguments (see Canonical), so the field it reads is the
// one that runs.
func describeArg(args json.RawMessage, field string) string {
	var m map[string]any
	if json.Unmarshal(args, &m) != nil {
		return ""
	}
	if v, ok := m[field].(string); ok {
		return v
	}
	return ""
}

// docs holds each tool's description for the model, one Markdown file per tool.
//
//go:embed doc/*.md
var docs embed.FS

// doc is the description of the named tool (doc/NAME.md).
func doc(name string) string {
	b, err := docs.ReadFile("doc/" + name + ".md")
	if err != nil {
		panic(fmt.Sprintf("tools: no description for %s: %v", name, err)) // a build-time file
	}
	return strings.TrimSpace(string(b))
}

// bounded argument structs have bounds their tags cannot say.
type bounded interface{ bounds() bounds }

// schemas caches schemaFor: reflect.Type of the argument struct → json.RawMessage.
var schemas sync.Map

// schemaFor is the schema of the argument struct A with A's bounds, computed once.
func schemaFor[A any]() json.RawMessage {
	key := reflect.TypeFor[A]()
	if s, ok := schemas.Load(key); ok {
		return s.(json.RawMessage)
	}
	var b bounds
	if bb, ok := any(*new(A)).(bounded); ok {
		b = bb.bounds()
	}
	s, _ := schemas.LoadOrStore(key, schemaOf[A](b))
	return s.(json.RawMessage)
}

// bound is what struct tags cannot say about one argument: numeric bounds, a length
// limit, a type override (a pointer field is still a required string) or a description
// computed at run time.
type bound struct {
	min, max, maxLength int
	typ, description    string
}

type bounds map[string]bound

// schemaOf returns the JSON schema of the argument struct T: properties from its json tags
// in field order, descriptions from its jsonschema tags, required = the fields without
// omitempty, no additional properties; then b applied.
func schemaOf[T any](b bounds) json.RawMessage {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		panic(fmt.Sprintf("tools: schema of %T: %v", *new(T), err)) // argument structs are fixed
	}
	if s.Properties == nil {
		s.Properties = map[string]*jsonschema.Schema{} // "properties": {} even with no arguments
	}
	for name, c := range b {
		p, ok := s.Properties[name]
		if !ok {
			panic(fmt.Sprintf("tools: %T has no argument %q", *new(T), name))
		}
		if c.typ != "" {
			p.Type, p.Types = c.typ, nil
		}
		if c.min != 0 {
			p.Minimum = ptrFloat(c.min)
		}
		if c.max != 0 {
			p.Maximum = ptrFloat(c.max)
		}
		if c.maxLength != 0 {
			p.MaxLength = &c.maxLength
		}
		if c.description != "" {
			p.Description = c.description
		}
	}
	out, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("tools: schema of %T: %v", *new(T), err))
	}
	return out
}

func ptrFloat(n int) *float64 { f := float64(n); return &f }
