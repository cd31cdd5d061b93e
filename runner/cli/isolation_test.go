package cli_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// executorModes are the two ways a local runner starts its executor: in its own
// namespaces, and as a plain child (kernels that refuse unprivileged namespaces).
var executorModes = map[string][]string{
	"own namespaces":              nil,
	"plain child (no namespaces)": {"--no-executor-namespaces"},
}

// runProcess runs `runner run` as a real process (this test binary, see TestMain)
// with env added to the environment, so that what the kernel shows in /proc is
// what a user's runner would show.
func runProcess(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"run"}, args...)...)
	cmd.Env = append(append(os.Environ(), "TMPDIR="+t.TempDir()), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

// The attack: agent code reads every process's environment and command line it can
// see, the runner's parent's and PID 1's included, and sends it to the model (a
// tool result goes to the provider unredacted). The runner was given its secrets in
// the environment, as a user running it on a laptop does.
func TestToolsFindNoSecretInProc(t *testing.T) {
	secrets := map[string]string{
		"OPENAI_API_KEY":        "sk-proj-procLeak0123456789abcdefABCDEF",
		"AWS_SECRET_ACCESS_KEY": "awsSecretProcLeak0123456789abcdef",
		"AGENTRY_GATEWAY_TOKEN": "gatewayTokenProcLeak0123456789",
	}
	const steal = `for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline /proc/self/environ; do tr '\0' '\n' <"$f"; done 2>/dev/null; ` +
		`tr '\0' '\n' </proc/$PPID/environ; tr '\0' '\n' </proc/1/environ; env; echo END`
	for name, flags := range executorModes {
		t.Run(name, func(t *testing.T) {
			origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
			srv := scriptedllm.New(
				scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": steal}}),
				scriptedllm.Text("done"),
			)
			defer srv.Close()
			srv.RequireKey(secrets["OPENAI_API_KEY"])
			dir := t.TempDir()
			var env []string
			for k, v := range secrets {
				env = append(env, k+"="+v)
			}
			out, code := runProcess(t, env, append([]string{"--repo", origin, "--task", "x", "--base-url", srv.URL,
				"--model", "scripted", "--yes", "--transcript-dir", dir}, flags...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			reqs := srv.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d model requests, want 2\n%s", len(reqs), out)
			}
			result := reqs[1].Body.Messages[len(reqs[1].Body.Messages)-1].Content
			if !strings.Contains(result, "END") || !strings.Contains(result, "PATH=") {
				t.Fatalf("the command did not run as expected: %q", result)
			}
			transcript, _ := os.ReadFile(filepath.Join(dir, "transcript.jsonl"))
			for k, v := range secrets {
				if strings.Contains(result, v) {
					t.Errorf("the tool read %s from /proc:\n%s", k, result)
				}
				for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
					if bytes.Contains(transcript, []byte(form)) {
						t.Errorf("the transcript holds %s", k)
					}
				}
			}
		})
	}
}

// The attack: a command leaves processes behind — a background job, a daemon that
// detaches with setsid, the grandchild of a double fork — to keep running after its
// call was approved and ended (to tamper with the workspace later, or to outlive an
// approval). The next call looks for them.
func TestEveryProcessEndsWithItsCall(t *testing.T) {
	// A marker unique to this run: without namespaces /proc shows every process on the
	// machine, another test run's included.
	n := 1000 + rand.IntN(8000)
	leave := fmt.Sprintf(`setsid sh -c 'sleep %[1]d1' >/dev/null 2>&1 </dev/null & `+
		`(sh -c 'sleep %[1]d2 >/dev/null 2>&1 &' &) ; nohup sleep %[1]d3 >/dev/null 2>&1 & echo left`, n)
	look := fmt.Sprintf(`for p in /proc/[0-9]*; do tr '\0' ' ' <$p/cmdline; echo; done 2>/dev/null | grep -c 'sleep %d[123]' || true`, n)
	for name, flags := range executorModes {
		t.Run(name, func(t *testing.T) {
			origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
			srv := scriptedllm.New(
				scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": leave}}),
				scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": look}}),
				scriptedllm.Text("done"),
			)
			defer srv.Close()
			out, code := runProcess(t, []string{"OPENAI_API_KEY=k"}, append([]string{"--repo", origin, "--task", "x", "--base-url", srv.URL,
				"--model", "scripted", "--yes", "--transcript-dir", t.TempDir()}, flags...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, out)
			}
			reqs := srv.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d model requests, want 3\n%s", len(reqs), out)
			}
			first := reqs[1].Body.Messages[len(reqs[1].Body.Messages)-1].Content
			second := reqs[2].Body.Messages[len(reqs[2].Body.Messages)-1].Content
			if !strings.Contains(first, "left") {
				t.Fatalf("first call: %q", first)
			}
			if !strings.HasPrefix(second, "0\n") {
				t.Errorf("processes from the first call survived it: %q", second)
			}
		})
	}
}
