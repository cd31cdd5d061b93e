package instructions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/runner/workspace"
)

func open(t *testing.T, files map[string]string) *workspace.Root {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// The nearest AGENTS.md governs a path; a directory whose name merely starts like another's
// is not under it.
func TestTheNearestNestedAgentsFileApplies(t *testing.T) {
	ws := open(t, map[string]string{
		"AGENTS.md":             "root",
		"svc/AGENTS.md":         "svc",
		"svc/api/AGENTS.md":     "api",
		"svc/api/v1/handler.go": "package v1",
		"svcx/main.go":          "package main",
	})
	c := Load(ws, nil)
	if len(c.Nested) != 2 {
		t.Fatalf("nested = %q", c.Nested)
	}
	for path, want := range map[string]string{
		"svc/api/v1/handler.go": "svc/api/AGENTS.md",
		"svc/main.go":           "svc/AGENTS.md",
		"svc":                   "svc/AGENTS.md",
		"svcx/main.go":          "",
		"main.go":               "",
	} {
		if got := c.ForPath(path); got != want {
			t.Errorf("ForPath(%q) = %q, want %q", path, got, want)
		}
	}
	g := &Guide{WS: ws, Context: c}
	if n := g.NoteFor("svc/api/v1/handler.go"); !strings.Contains(n, "[Instructions from svc/api/AGENTS.md") {
		t.Errorf("first note = %q", n)
	}
	if n := g.NoteFor("./svc/api/x.go"); n != "" {
		t.Errorf("a second call under the same directory repeated the note: %q", n)
	}
}

func TestLongAgentsFileIsCutWithANote(t *testing.T) {
	ws := open(t, map[string]string{"AGENTS.md": strings.Repeat("é", MaxFileBytes)}) // 2 bytes each
	text, ok := ReadFile(ws, FileName)
	if !ok || !strings.HasSuffix(text, "[… cut: AGENTS.md is longer than 32768 bytes]") || len(text) > MaxFileBytes+100 {
		t.Fatalf("ok %v, len %d, tail %q", ok, len(text), text[max(0, len(text)-60):])
	}
	if !strings.HasPrefix(text, "éé") || strings.Contains(text, "\uFFFD") {
		t.Errorf("the cut split a character")
	}
}

func TestDetectProject(t *testing.T) {
	cases := []struct {
		files map[string]string
		want  []string
		not   []string
	}{
		{map[string]string{"go.mod": "module x"}, []string{"`go test ./...`"}, []string{"Node"}},
		{map[string]string{"package.json": `{"scripts":{"test":"vitest"}}`, "pnpm-lock.yaml": ""}, []string{"pnpm", "`pnpm test`"}, nil},
		{map[string]string{"package.json": `{"name":"x"}`}, []string{"no test script in package.json"}, nil},
		{map[string]string{"pyproject.toml": ""}, []string{"pytest"}, nil},
		{map[string]string{"Cargo.toml": ""}, []string{"cargo test"}, nil},
		{map[string]string{"pom.xml": ""}, []string{"mvn -q test"}, nil},
		{map[string]string{"build.gradle.kts": "", "gradlew": ""}, []string{"./gradlew test"}, nil},
		{map[string]string{"Makefile": "all:\n\ntest: all\n\tgo test\n"}, []string{"`make test`"}, nil},
		{map[string]string{"README.md": "hi"}, nil, []string{"Detected"}},
	}
	for _, c := range cases {
		got := DetectProject(open(t, c.files))
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: %q lacks %q", c.files, got, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(got, n) {
				t.Errorf("%v: %q has %q", c.files, got, n)
			}
		}
	}
}
