package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// An image without bash (a distroless toolchain with a busybox sh, say): the executor runs
// commands with sh, the bash tool's description and schema tell the model it is a POSIX
// sh, and a command runs there instead of failing with "bash: executable file not found".
func TestShellCommandsRunWithShWhereThereIsNoBash(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(filepath.Base(sh), "bash") {
		t.Fatalf("/bin/sh is %s; the case needs a POSIX sh that is not bash", sh)
	}
	bin := t.TempDir() // the image's PATH: a shell and nothing called bash
	if err := os.Symlink(sh, filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	for name, flags := range executorModes {
		t.Run(name, func(t *testing.T) {
			origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
			srv := scriptedllm.New(
				scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": `echo "shell=${BASH_VERSION:-posix}"`}}),
				scriptedllm.Text("done"),
			)
			defer srv.Close()
			out, code := runProcess(t, []string{"PATH=" + bin, "OPENAI_API_KEY=unused"}, append([]string{"--repo", origin, "--task", "x", "--base-url", srv.URL,
				"--model", "scripted", "--yes", "--transcript-dir", t.TempDir()}, flags...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			reqs := srv.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d model requests, want 2\n%s", len(reqs), out)
			}
			var desc, schema string
			for _, tool := range reqs[0].Body.Tools {
				if tool.Function != nil && tool.Function.Name == "bash" {
					desc = tool.Function.Description
					b, _ := json.Marshal(tool.Function.Parameters)
					schema = string(b)
				}
			}
			if !strings.Contains(desc, "POSIX sh, not bash") || !strings.Contains(schema, "run with sh -c") {
				t.Errorf("the model was not told the shell is sh:\ndescription: %s\nschema: %s", desc, schema)
			}
			if got := reqs[1].Body.Messages[len(reqs[1].Body.Messages)-1].Content; !strings.Contains(got, "shell=posix") {
				t.Errorf("the command's result: %q, want it run by sh", got)
			}
		})
	}
}
