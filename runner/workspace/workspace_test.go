package workspace_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/agentry-dev/agentry/runner/workspace"
)

func TestRel(t *testing.T) {
	dir := t.TempDir()
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ok := map[string]string{
		"":                                ".",
		".":                               ".",
		"a/b.go":                          "a/b.go",
		"./a//b.go":                       "a/b.go",
		"a/../b.go":                       "b.go",
		filepath.Join(ws.Dir(), "x/y.go"): "x/y.go",
		ws.Dir():                          ".",
		ws.Dir() + "/":                    ".",
		"dir/with spaces/and-ünïcode.txt": "dir/with spaces/and-ünïcode.txt",
		"..foo":                           "..foo",
	}
	for in, want := range ok {
		if got, err := ws.Rel(in); err != nil || got != want {
			t.Errorf("Rel(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../x", "a/../../x", "/etc/passwd", filepath.Dir(ws.Dir()), ws.Dir() + "/../x", "a\x00b"} {
		if _, err := ws.Rel(in); !errors.Is(err, workspace.ErrOutside) {
			t.Errorf("Rel(%q) = %v, want ErrOutside", in, err)
		}
	}
}
