package workspace

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReadFilesImplementationsAgree keeps the portable walker (used off
// Linux) honest against the Linux one: same files, same content, same
// ignore and symlink rules.
func TestReadFilesImplementationsAgree(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	files := map[string]string{
		".gitignore":          "*.log\n/build/\n!keep.log\nsub/**/gen_*.go\n",
		".git/info/exclude":   "local-only.txt\n",
		".git/config":         "[core]\n",
		"a.go":                "package a\n",
		"debug.log":           "x\n",
		"keep.log":            "kept\n",
		"build/out":           "ignored dir\n",
		"sub/build/out":       "not anchored, kept\n",
		"sub/x/gen_y.go":      "generated\n",
		"sub/x/real.go":       "real\n",
		"sub/.gitignore":      "*.tmp\n",
		"sub/t.tmp":           "ignored by nested file\n",
		"local-only.txt":      "excluded\n",
		"deep/a/b/c/d/e.txt":  "deep\n",
		".hidden/config.yaml": "hidden dirs are walked\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"link-out": outside, "link-file": filepath.Join(outside, "secret"), "link-in": "sub"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	collect := func(impl func(*Root, context.Context, string, ReadOptions, func(string, []byte) error) error, start string, o ReadOptions) map[string]string {
		var mu sync.Mutex
		got := map[string]string{}
		o.Workers, o.MaxFileBytes = 3, 1<<20
		if err := impl(ws, context.Background(), start, o, func(p string, data []byte) error {
			mu.Lock()
			defer mu.Unlock()
			got[p] = string(data)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := map[string]string{
		".gitignore": files[".gitignore"], "a.go": "package a\n", "keep.log": "kept\n", "sub/build/out": "not anchored, kept\n",
		"sub/x/real.go": "real\n", "sub/.gitignore": "*.tmp\n", "deep/a/b/c/d/e.txt": "deep\n", ".hidden/config.yaml": "hidden dirs are walked\n",
	}
	for _, impl := range []struct {
		name string
		fn   func(*Root, context.Context, string, ReadOptions, func(string, []byte) error) error
	}{{"portable", readFilesPortable}, {"platform", readFiles}} {
		t.Run(impl.name, func(t *testing.T) {
			if diff := cmp.Diff(want, collect(impl.fn, ".", ReadOptions{})); diff != "" {
				t.Errorf("files read (-want +got):\n%s", diff)
			}
			// A symlinked start inside the workspace is resolved; rules anchored
			// to the real path ("sub/**/gen_*.go") do not apply through the link,
			// as git never looks through symlinks.
			sub := collect(impl.fn, "link-in", ReadOptions{})
			var names []string
			for p := range sub {
				names = append(names, p)
			}
			sort.Strings(names)
			if diff := cmp.Diff([]string{"link-in/.gitignore", "link-in/build/out", "link-in/x/gen_y.go", "link-in/x/real.go"}, names); diff != "" {
				t.Errorf("start through an inside symlink (-want +got):\n%s", diff)
			}
			all := collect(impl.fn, ".", ReadOptions{IncludeIgnored: true})
			if _, ok := all["debug.log"]; !ok || len(all) != len(files)-2 { // everything but .git/*
				t.Errorf("IncludeIgnored read %d files: %v", len(all), all)
			}
		})
	}
}
