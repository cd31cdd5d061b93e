package workspace_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/agentry-dev/agentry/runner/workspace"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// .agentryignore hides paths from every file operation and walk, even when the caller asks
// for ignored files and even when a .gitignore re-includes them; it is read once, so the
// agent rewriting it changes nothing.
func TestAgentryIgnoreHidesPathsFromTheFileTools(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		".agentryignore":    "# noise\nvendor/\n*.snap\n",
		".gitignore":        "!vendor/\n!*.snap\n",
		"vendor/lib/lib.go": "package lib\n",
		"ui/button.snap":    "snapshot\n",
		"ui/button.go":      "package ui\n",
		"main.go":           "package main\n",
	})
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	patterns, err := ws.HideAgentryIgnored()
	if err != nil || !slices.Equal(patterns, []string{"vendor/", "*.snap"}) {
		t.Fatalf("patterns = %q, %v", patterns, err)
	}
	for _, p := range []string{"vendor/lib/lib.go", "vendor", "ui/button.snap", "./vendor/lib/../lib/lib.go"} {
		if _, err := ws.ReadFile(p); !errors.Is(err, workspace.ErrHidden) {
			t.Errorf("ReadFile(%q) = %v, want ErrHidden", p, err)
		}
	}
	if _, err := ws.WriteFile("vendor/new.go", []byte("x")); !errors.Is(err, workspace.ErrHidden) {
		t.Errorf("WriteFile into a hidden directory = %v, want ErrHidden", err)
	}
	if _, err := ws.ReadFile("ui/button.go"); err != nil {
		t.Errorf("a visible file: %v", err)
	}
	for _, include := range []bool{false, true} {
		var seen []string
		err := ws.Walk(context.Background(), ".", workspace.WalkOptions{IncludeIgnored: include}, func(e workspace.Entry) error {
			seen = append(seen, e.Path)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var read []string
		err = ws.ReadFiles(context.Background(), ".", workspace.ReadOptions{IncludeIgnored: include}, func(p string, _ []byte) error {
			read = append(read, p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, hidden := range []string{"vendor", "vendor/lib/lib.go", "ui/button.snap"} {
			if slices.Contains(seen, hidden) || slices.Contains(read, hidden) {
				t.Errorf("IncludeIgnored=%v: walk %q / read %q show hidden %s", include, seen, read, hidden)
			}
		}
		if !slices.Contains(read, "ui/button.go") {
			t.Errorf("IncludeIgnored=%v: a visible file is missing from %q", include, read)
		}
	}
	// The agent rewrites the file: what was hidden stays hidden for this session.
	if _, err := ws.WriteFile(".agentryignore", []byte("")); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.ReadFile("vendor/lib/lib.go"); !errors.Is(err, workspace.ErrHidden) {
		t.Errorf("after rewriting .agentryignore: %v, want still hidden", err)
	}
}

func TestNoAgentryIgnoreHidesNothing(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"vendor/a.go": "package a\n"})
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if p, err := ws.HideAgentryIgnored(); p != nil || err != nil {
		t.Fatalf("= %q, %v", p, err)
	}
	if _, err := ws.ReadFile("vendor/a.go"); err != nil {
		t.Error(err)
	}
}
