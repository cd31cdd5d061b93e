package tools_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/workspace"
	"github.com/agentry-dev/agentry/test/testutil"
)

func TestReadFileNumbersLinesAndPages(t *testing.T) {
	var src strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&src, "line %d\n", i)
	}
	e := newEnv(t, map[string]string{"f.txt": src.String()})

	out := e.mustRun("read_file", map[string]any{"path": "f.txt", "offset": 10, "limit": 3})
	want := "    10\tline 10\n    11\tline 11\n    12\tline 12\n[showing lines 10-12 of 30; call read_file with offset=13 to continue]\n"
	if out != want {
		t.Errorf("read_file window:\n got %q\nwant %q", out, want)
	}
	out = e.mustRun("read_file", map[string]any{"path": "f.txt"})
	if !strings.HasPrefix(out, "     1\tline 1\n") || strings.Contains(out, "showing") || !strings.HasSuffix(out, "    30\tline 30\n") {
		t.Errorf("whole-file read is wrong:\n%s", out)
	}
	if _, err := e.run("read_file", map[string]any{"path": "f.txt", "offset": 31}); err == nil || !strings.Contains(err.Error(), "has 30 lines") {
		t.Errorf("offset past the end: err = %v", err)
	}
}

func TestReadFileHandlesHugeAndBinaryFiles(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "a\n"})
	// 10 MB of short lines.
	var big bytes.Buffer
	for i := 0; big.Len() < 10<<20; i++ {
		fmt.Fprintf(&big, "row %08d of a big generated file\n", i)
	}
	lines := bytes.Count(big.Bytes(), []byte{'\n'})
	writeFile(t, e.dir, "big.txt", big.Bytes())
	// 10 MB on a single line (minified).
	writeFile(t, e.dir, "minified.js", bytes.Repeat([]byte("x"), 10<<20))
	// A binary file with a NUL byte early.
	writeFile(t, e.dir, "image.png", append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bytes.Repeat([]byte{0xff}, 4096)...))

	out := e.mustRun("read_file", map[string]any{"path": "big.txt"})
	if len(out) > 110<<10 {
		t.Errorf("10 MB file returned %d bytes; the output must stay bounded", len(out))
	}
	if !strings.Contains(out, fmt.Sprintf("of %d; call read_file with offset=", lines)) {
		t.Errorf("big file: no paging hint with the total line count %d:\n%s", lines, out[len(out)-200:])
	}
	out = e.mustRun("read_file", map[string]any{"path": "big.txt", "offset": lines, "limit": 5})
	if !strings.Contains(out, fmt.Sprintf("row %08d", lines-1)) {
		t.Errorf("reading the last line of the big file: %q", out)
	}

	out = e.mustRun("read_file", map[string]any{"path": "minified.js"})
	if len(out) > 4096 || !strings.Contains(out, "line truncated") {
		t.Errorf("single 10 MB line: got %d bytes, want a short truncated line", len(out))
	}

	_, err := e.run("read_file", map[string]any{"path": "image.png"})
	if err == nil || !strings.Contains(err.Error(), "binary file") {
		t.Errorf("binary file: err = %v, want a binary-file refusal", err)
	}
	for _, tool := range []string{"edit_file"} {
		if _, err := e.run(tool, map[string]any{"path": "image.png", "old_string": "PNG", "new_string": "JPG"}); err == nil || !strings.Contains(err.Error(), "binary") {
			t.Errorf("%s on a binary file: err = %v", tool, err)
		}
	}
	out = e.mustRun("grep", map[string]any{"pattern": "PNG|IHDR"})
	if !strings.HasPrefix(out, "no matches") {
		t.Errorf("grep should skip binary files:\n%s", out)
	}
	out = e.mustRun("grep", map[string]any{"pattern": "row 00000042 "})
	if !strings.Contains(out, "big.txt:43:row 00000042 of a big") {
		t.Errorf("grep in the big file:\n%s", out)
	}
}

func TestReadFileExplainsMisuse(t *testing.T) {
	e := newEnv(t, map[string]string{"dir/a.txt": "a\n"})
	cases := map[string]struct {
		args map[string]any
		want string
	}{
		"directory":    {map[string]any{"path": "dir"}, "is a directory; use list_dir"},
		"missing":      {map[string]any{"path": "nope.txt"}, "no such file"},
		"no path":      {map[string]any{}, `"path" is required`},
		"wrong type":   {map[string]any{"path": 42}, "invalid arguments for read_file"},
		"unknown file": {map[string]any{"path": "dir/b.txt"}, "dir/b.txt: no such file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.run("read_file", tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	tool, _ := e.set.Lookup("read_file")
	if _, err := tool.Execute(context.Background(), json.RawMessage(`{"path": "dir/a.txt"`)); err == nil || !strings.Contains(err.Error(), `"required":["path"]`) {
		t.Errorf("malformed JSON should quote the schema: %v", err)
	}
}

func TestEditFileRequiresExactlyOneMatch(t *testing.T) {
	src := "func a() {\n\treturn 1\n}\n\nfunc b() {\n\treturn 1\n}\n"
	e := newEnv(t, map[string]string{"x.go": src})

	_, err := e.run("edit_file", map[string]any{"path": "x.go", "old_string": "return 2", "new_string": "return 3"})
	if err == nil || !strings.Contains(err.Error(), "not found in x.go (0 matches)") {
		t.Errorf("0 matches: err = %v", err)
	}
	_, err = e.run("edit_file", map[string]any{"path": "x.go", "old_string": "\treturn 1", "new_string": "\treturn 2"})
	if err == nil || !strings.Contains(err.Error(), "matches 2 times in x.go (at lines 2, 6)") || !strings.Contains(err.Error(), "replace_all") {
		t.Errorf("2 matches: err = %v", err)
	}
	if got := readFile(t, e.dir, "x.go"); got != src {
		t.Fatalf("failed edits changed the file:\n%s", got)
	}

	out := e.mustRun("edit_file", map[string]any{"path": "x.go", "old_string": "func b() {\n\treturn 1", "new_string": "func b() {\n\treturn 2"})
	if !strings.Contains(out, "replaced 1 occurrence at line 5") {
		t.Errorf("edit result: %s", out)
	}
	if got := readFile(t, e.dir, "x.go"); got != strings.Replace(src, "func b() {\n\treturn 1", "func b() {\n\treturn 2", 1) {
		t.Errorf("file after edit:\n%s", got)
	}
	out = e.mustRun("edit_file", map[string]any{"path": "x.go", "old_string": "func", "new_string": "fn", "replace_all": true})
	if !strings.Contains(out, "replaced 2 occurrences") || strings.Contains(readFile(t, e.dir, "x.go"), "func") {
		t.Errorf("replace_all: %s", out)
	}
}

func TestEditFileHintsAtCommonMistakes(t *testing.T) {
	e := newEnv(t, map[string]string{"x.py": "def f():\n    return 1\n"})
	cases := map[string]struct {
		old, want string
	}{
		"line numbers copied": {"     2\t    return 1", "line-number prefixes"},
		"tabs vs spaces":      {"def f():\n\treturn 1", "whitespace is ignored"},
		"later lines differ":  {"def f():\n    return 2", "first line appears at line 1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.run("edit_file", map[string]any{"path": "x.py", "old_string": tc.old, "new_string": "x"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want hint %q", err, tc.want)
			}
		})
	}
	if _, err := e.run("edit_file", map[string]any{"path": "new.py", "old_string": "a", "new_string": "b"}); err == nil || !strings.Contains(err.Error(), "use write_file") {
		t.Errorf("editing a missing file should point to write_file: %v", err)
	}
}

func TestWriteFileCreatesDirectoriesAndKeepsMode(t *testing.T) {
	e := newEnv(t, map[string]string{"run.sh": "#!/bin/sh\necho old\n"})
	if err := os.Chmod(filepath.Join(e.dir, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := e.mustRun("write_file", map[string]any{"path": "pkg/deep/new.go", "content": "package deep\n"})
	if out != "created pkg/deep/new.go (13 bytes, 1 lines)" {
		t.Errorf("create: %q", out)
	}
	out = e.mustRun("write_file", map[string]any{"path": "run.sh", "content": "#!/bin/sh\necho new\n"})
	if !strings.HasPrefix(out, "overwrote run.sh") {
		t.Errorf("overwrite: %q", out)
	}
	fi, err := os.Stat(filepath.Join(e.dir, "run.sh"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode after overwrite = %v, want 0755", fi.Mode())
	}
	if _, err := e.run("write_file", map[string]any{"path": "x.txt"}); err == nil || !strings.Contains(err.Error(), `"content" is required`) {
		t.Errorf("missing content: %v", err)
	}
}

func TestGrepHonoursGitignoreAndFilters(t *testing.T) {
	e := newEnv(t, map[string]string{
		".gitignore":          "build/\n*.log\n!keep.log\n",
		"src/.gitignore":      "generated.go\n",
		"src/main.go":         "package main\n// needle one\nfunc main() {}\n",
		"src/util_test.go":    "package main\n// Needle two\n",
		"src/generated.go":    "// needle generated\n",
		"build/out.txt":       "needle in build\n",
		"debug.log":           "needle in log\n",
		"keep.log":            "needle kept\n",
		"docs/readme.md":      "a needle in docs\n",
		".github/ci.yml":      "needle: hidden dirs are searched\n",
		"node_modules/x/y.js": "needle\n", // not ignored: no rule for it
	})
	out := e.mustRun("grep", map[string]any{"pattern": "needle"})
	want := ".github/ci.yml:1:needle: hidden dirs are searched\n" +
		"docs/readme.md:1:a needle in docs\n" +
		"keep.log:1:needle kept\n" +
		"node_modules/x/y.js:1:needle\n" +
		"src/main.go:2:// needle one\n" +
		"[5 matches in 5 files]\n"
	if out != want {
		t.Errorf("grep:\n got:\n%s\nwant:\n%s", out, want)
	}
	out = e.mustRun("grep", map[string]any{"pattern": "needle", "ignore_case": true, "glob": "*.go"})
	if out != "src/main.go:2:// needle one\nsrc/util_test.go:2:// Needle two\n[2 matches in 2 files]\n" {
		t.Errorf("grep -i with glob:\n%s", out)
	}
	out = e.mustRun("grep", map[string]any{"pattern": `func \w+\(\)`, "path": "src"})
	if out != "src/main.go:3:func main() {}\n[1 matches in 1 files]\n" {
		t.Errorf("grep regex in path:\n%s", out)
	}
	out = e.mustRun("grep", map[string]any{"pattern": "needle", "max_results": 2})
	if !strings.Contains(out, "[stopped after 2 matches") || strings.Count(out, "needle") != 2+0 {
		t.Errorf("max_results:\n%s", out)
	}
	// An explicitly named ignored directory is searched, as ripgrep does.
	out = e.mustRun("grep", map[string]any{"pattern": "needle", "path": "build"})
	if !strings.Contains(out, "build/out.txt:1:needle in build") {
		t.Errorf("explicit ignored path:\n%s", out)
	}
	if _, err := e.run("grep", map[string]any{"pattern": "func ("}); err == nil || !strings.Contains(err.Error(), "invalid regular expression") {
		t.Errorf("bad regex: %v", err)
	}
}

func TestGlobMatchesRecursivelyAndSorts(t *testing.T) {
	e := newEnv(t, map[string]string{
		".gitignore":         "vendor/\n",
		"main.go":            "",
		"cmd/a/main.go":      "",
		"cmd/b/main.go":      "",
		"pkg/x/x_test.go":    "",
		"pkg/x/x.go":         "",
		"web/app.ts":         "",
		"web/view.tsx":       "",
		"vendor/dep/dep.go":  "",
		"pkg/x/testdata/t.s": "",
	})
	cases := map[string]struct {
		args map[string]any
		want string
	}{
		"double star":  {map[string]any{"pattern": "**/*.go"}, "cmd/a/main.go\ncmd/b/main.go\nmain.go\npkg/x/x.go\npkg/x/x_test.go\n"},
		"single star":  {map[string]any{"pattern": "cmd/*/main.go"}, "cmd/a/main.go\ncmd/b/main.go\n"},
		"braces":       {map[string]any{"pattern": "**/*.{ts,tsx}"}, "web/app.ts\nweb/view.tsx\n"},
		"under a path": {map[string]any{"pattern": "*_test.go", "path": "pkg/x"}, "pkg/x/x_test.go\n"},
		"none":         {map[string]any{"pattern": "**/*.rs"}, `no files match "**/*.rs"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := e.mustRun("glob", tc.args); got != tc.want {
				t.Errorf("glob %v:\n got %q\nwant %q", tc.args, got, tc.want)
			}
		})
	}
}

func TestListDir(t *testing.T) {
	e := newEnv(t, map[string]string{"b.txt": "12345", "a/x.go": ""})
	e.symlink("b.txt", "c")
	if got, want := e.mustRun("list_dir", map[string]any{}), "a/\nb.txt  (5 B)\nc@ -> b.txt\n"; got != want {
		t.Errorf("list_dir:\n got %q\nwant %q", got, want)
	}
	if _, err := e.run("list_dir", map[string]any{"path": "b.txt"}); err == nil || !strings.Contains(err.Error(), "use read_file") {
		t.Errorf("list_dir on a file: %v", err)
	}
}

func TestBashReportsExitCodeAndCapsOutput(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "x\n"})
	t.Setenv("OPENAI_API_KEY", "sk-should-never-reach-commands-0000000000")
	t.Setenv("AGENTRY_TEST_VISIBLE", "visible")

	out := e.mustRun("bash", map[string]any{"command": "pwd; cat a.txt; echo err >&2; exit 3"})
	if !strings.HasPrefix(out, e.dir+"\nx\nerr\n") || !strings.HasSuffix(out, "exit code: 3") {
		t.Errorf("bash output:\n%s", out)
	}
	out = e.mustRun("bash", map[string]any{"command": `echo "key=[$OPENAI_API_KEY] other=[$AGENTRY_TEST_VISIBLE]"`})
	if !strings.Contains(out, "key=[] other=[visible]") {
		t.Errorf("secrets must be removed from the command environment:\n%s", out)
	}
	out = e.mustRun("bash", map[string]any{"command": "seq 1 200000"})
	if len(out) > 40<<10 || !strings.HasPrefix(out, "1\n2\n") || !strings.Contains(out, "bytes of output omitted") || !strings.Contains(out, "199999\n200000\n") {
		t.Errorf("capped output: %d bytes, head %q tail %q", len(out), out[:20], out[len(out)-40:])
	}
	if _, err := e.run("bash", map[string]any{"command": "  "}); err == nil {
		t.Error("empty command accepted")
	}
}

func TestBashKillsHungCommandAndItsChildren(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "x\n"})
	// The command starts a background child that would outlive a naive kill
	// of the shell, records its pid, then hangs.
	out := e.mustRun("bash", map[string]any{"command": "sleep 300 & echo $! > child.pid; echo started; sleep 300", "timeout_seconds": 1})
	if !strings.Contains(out, "started") || !strings.Contains(out, "timed out after 1s and was killed") || !strings.HasSuffix(out, "exit code: killed") {
		t.Errorf("timeout output:\n%s", out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, e.dir, "child.pid")))
	if err != nil {
		t.Fatal(err)
	}
	// The child is a zombie-or-gone once killed; signal 0 fails for a reaped
	// process. Reaping is asynchronous (init adopts it), so poll briefly.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if testutil.Poll(ctx, testutil.Holds(func() bool { return !alive(pid) })) != nil {
		t.Errorf("background child %d survived the timeout", pid)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestBashStopsWhenTheSessionIsCancelled(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "x\n"})
	tool, _ := e.set.Lookup("bash")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := tool.Execute(ctx, json.RawMessage(`{"command":"echo ready > ready; sleep 300"}`))
		done <- err
	}()
	for !fileExists(filepath.Join(e.dir, "ready")) {
		select {
		case err := <-done:
			t.Fatalf("command ended early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("cancelled command returned no error")
	}
}

func TestGitToolsShowTheSessionsChanges(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "one\ntwo\n", "b.txt": "bee\n"})
	if out := e.mustRun("git_status", map[string]any{}); out != "working tree clean" {
		t.Errorf("clean status: %q", out)
	}
	e.mustRun("edit_file", map[string]any{"path": "a.txt", "old_string": "two", "new_string": "TWO"})
	e.mustRun("write_file", map[string]any{"path": "new/c.txt", "content": "sea\n"})
	if err := os.Remove(filepath.Join(e.dir, "b.txt")); err != nil {
		t.Fatal(err)
	}
	if got, want := e.mustRun("git_status", map[string]any{}), " M a.txt\n D b.txt\n?? new/c.txt\n"; got != want {
		t.Errorf("status:\n got %q\nwant %q", got, want)
	}
	out := e.mustRun("git_diff", map[string]any{})
	for _, want := range []string{"-two\n+TWO\n", "deleted file mode", "+sea\n", "3 files changed, +2 -2"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	out = e.mustRun("git_diff", map[string]any{"path": "new"})
	if strings.Contains(out, "a.txt") || !strings.Contains(out, "new/c.txt") {
		t.Errorf("diff limited to new/:\n%s", out)
	}
}

func TestSelectRejectsUnknownTools(t *testing.T) {
	set := tools.All(tools.Env{})
	got, err := set.Select([]string{"grep", "read_file"})
	if err != nil || strings.Join(got.Names(), ",") != "read_file,grep" {
		t.Errorf("Select = %v, %v", got.Names(), err)
	}
	if _, err := set.Select([]string{"rm_rf"}); err == nil || !strings.Contains(err.Error(), "available: read_file") {
		t.Errorf("unknown tool: %v", err)
	}
	for _, tool := range set {
		var schema map[string]any
		if err := json.Unmarshal(tool.Schema(), &schema); err != nil || schema["type"] != "object" {
			t.Errorf("%s: schema is not a JSON object schema: %v", tool.Name(), err)
		}
	}
}

func TestNotARepository(t *testing.T) {
	dir := t.TempDir()
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	set := tools.All(tools.Env{Workspace: ws})
	tool, _ := set.Lookup("git_diff")
	if _, err := tool.Execute(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "not a git repository") {
		t.Errorf("git_diff outside a repo: %v", err)
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
