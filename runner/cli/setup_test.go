package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/cli"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
	"github.com/agentry-dev/agentry/test/testutil"
)

// runSetup runs `runner setup` with env and returns its exit code, stderr and the results
// it wrote.
func runSetup(t *testing.T, env map[string]string, extra ...string) (int, string, []contract.Setup) {
	t.Helper()
	ws := t.TempDir()
	resultPath := filepath.Join(t.TempDir(), "result.json")
	r := runPlain(env, append([]string{"setup", "--workspace", ws, "--result", resultPath}, extra...)...)
	var results []contract.Setup
	if b, err := os.ReadFile(resultPath); err == nil {
		if err := json.Unmarshal(b, &results); err != nil {
			t.Fatalf("result is not JSON: %v\n%s", err, b)
		}
	}
	return r.code, r.stderr, results
}

func TestSetupRunsCommandsInOrderInTheWorkspaceAndStopsAtTheFirstFailure(t *testing.T) {
	code, stderr, results := runSetup(t, nil,
		"--command", "echo one > marker; pwd",
		"--command", "cat marker; echo to-stderr >&2; exit 3",
		"--command", "touch never-ran")
	if code != 0 {
		t.Fatalf("a failing command is a result, not a setup error: exit %d\n%s", code, stderr)
	}
	if len(results) != 2 {
		t.Fatalf("want 2 results (the third command must not run), got %+v", results)
	}
	if results[0].ExitCode != 0 || results[1].ExitCode != 3 {
		t.Errorf("exit codes: %d, %d", results[0].ExitCode, results[1].ExitCode)
	}
	if !strings.Contains(results[1].Output, "one") || !strings.Contains(results[1].Output, "to-stderr") {
		t.Errorf("second command's combined output: %q", results[1].Output)
	}
}

func TestSetupTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	start := time.Now()
	code, stderr, results := runSetup(t, nil, "--timeout", "1s",
		"--command", "echo started; (sleep 300 & echo $! > "+pidFile+"; wait) ; sleep 300",
		"--command", "touch never-ran")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("setup took %s with a 1s timeout", took)
	}
	if len(results) != 1 || !results[0].TimedOut || results[0].ExitCode == 0 {
		t.Fatalf("want one timed-out result, got %+v", results)
	}
	if !strings.Contains(results[0].Output, "started") || !strings.Contains(results[0].Output, "timed out") {
		t.Errorf("output: %q", results[0].Output)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the background child never started: %v", err)
	}
	pid := strings.TrimSpace(string(b))
	testutil.Within(t, 5*time.Second, "the background child "+pid+" to end with the setup timeout", testutil.Holds(func() bool {
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			return true
		}
		st, _ := os.ReadFile("/proc/" + pid + "/stat")
		return strings.Contains(string(st), ") Z ") // a zombie: killed, not yet reaped by its (dead) parent's reaper
	}))
}

func TestSetupRedactsItsSecretsInEveryEncoding(t *testing.T) {
	const secret = "s3tup-T0ken-9f8e7d6c5b4a"
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	t.Setenv("REGISTRY_TOKEN", secret) // what the commands see; Getenv is what setup redacts
	code, stderr, results := runSetup(t, map[string]string{"REGISTRY_TOKEN": secret}, "--secret-env", "REGISTRY_TOKEN",
		"--command", `echo "plain $REGISTRY_TOKEN"; printf %s "$REGISTRY_TOKEN" | base64; printf %s "$REGISTRY_TOKEN" | od -An -tx1 | tr -d ' \n'; echo`)
	if code != 0 || len(results) != 1 {
		t.Fatalf("exit %d, results %+v\n%s", code, results, stderr)
	}
	out := results[0].Output
	if results[0].ExitCode != 0 {
		t.Fatalf("the command failed: %q", out)
	}
	for _, form := range []string{secret, b64, strings.TrimRight(b64, "="), "73337475702d"} {
		if strings.Contains(out, form) {
			t.Errorf("the output holds the secret as %q:\n%s", form, out)
		}
	}
	if strings.Count(out, "[REDACTED:secret]") < 3 {
		t.Errorf("want the three forms redacted, got:\n%s", out)
	}
	if strings.Contains(stderr, secret) {
		t.Errorf("stderr holds the secret")
	}
}

func TestSetupOutputKeepsTheTailAndNeverHalfASecret(t *testing.T) {
	const secret = "cut-me-in-half-0123456789"
	// 200 KiB of noise, then the secret, then exactly enough bytes that the kept 64 KiB would
	// start in the middle of the secret if it were cut before redaction.
	noise := cli.SetupOutputBytes - (len(secret) - len(secret)/2) - len("END\n")
	t.Setenv("S", secret)
	code, _, results := runSetup(t, map[string]string{"S": secret}, "--secret-env", "S",
		"--command", `head -c 204800 /dev/zero | tr '\0' x; printf %s "$S"; head -c `+strconv.Itoa(noise)+` /dev/zero | tr '\0' y; echo END`)
	if code != 0 || len(results) != 1 {
		t.Fatalf("exit %d: %+v", code, results)
	}
	out := results[0].Output
	if len(out) > cli.SetupOutputBytes {
		t.Errorf("output is %d bytes, cap is %d", len(out), cli.SetupOutputBytes)
	}
	if !strings.HasSuffix(out, "END\n") {
		t.Errorf("the tail was not kept: ...%q", out[max(0, len(out)-20):])
	}
	if strings.Contains(out, secret[len(secret)/2:]) {
		t.Errorf("the second half of the secret survived the cut")
	}
}

func TestSetupRefusesBadFlags(t *testing.T) {
	code, stderr, _ := runSetup(t, nil)
	if code != int(contract.ExitUsage) || !strings.Contains(stderr, "--command") {
		t.Errorf("no command: exit %d\n%s", code, stderr)
	}
	r := runPlain(nil, "setup", "--workspace", t.TempDir(), "--result", "/nonexistent/dir/result.json", "--command", "true")
	if r.code != int(contract.ExitError) || !strings.Contains(r.stderr, "writing the setup result") {
		t.Errorf("unwritable result: exit %d\n%s", r.code, r.stderr)
	}
}

// runPlain runs a command that has no termination message (run() adds that flag).
func runPlain(env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.IO{
		In: strings.NewReader(""), Out: &out, Err: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// runWithSetup runs a session after a setup phase whose result file holds content.
func runWithSetup(t *testing.T, content string, steps ...scriptedllm.Step) (result, *scriptedllm.Server, []contract.Event) {
	t.Helper()
	ws := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	// Setup changed the workspace: the patch still shows it.
	if err := os.WriteFile(filepath.Join(ws, "setup.lock"), []byte("locked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resultPath := filepath.Join(t.TempDir(), "result.json")
	if err := os.WriteFile(resultPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := scriptedllm.New(steps...)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--workspace", ws, "--task", "do it", "--base-url", srv.URL, "--transcript-dir", dir, "--setup-result", resultPath, "--yes")
	return r, srv, readTranscript(t, filepath.Join(dir, "transcript.jsonl"))
}

func readTranscript(t *testing.T, path string) []contract.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []contract.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e contract.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("transcript line: %v", err)
		}
		evs = append(evs, e)
	}
	return evs
}

func setupResultJSON(t *testing.T, rs ...contract.Setup) string {
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFailedSetupEndsTheSessionWithoutCallingTheModel(t *testing.T) {
	longOutput := strings.Repeat("noise\n", 2000) + "npm ERR! 404 left-pad not found\n"
	content := setupResultJSON(t,
		contract.Setup{Command: "go mod download", ExitCode: 0, Output: "ok\n", DurationMS: 1200},
		contract.Setup{Command: "npm ci", ExitCode: 1, Output: longOutput, DurationMS: 300})
	r, srv, evs := runWithSetup(t, content, scriptedllm.Text("must never be asked"))

	if r.code != int(contract.ExitSetupFailed) || r.termination.Outcome != contract.OutcomeSetupFailed {
		t.Fatalf("exit %d, outcome %q\n%s", r.code, r.termination.Outcome, r.stderr)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("the model was called %d times after a failed setup", n)
	}
	msg := r.termination.Message
	if !strings.HasPrefix(msg, "setup failed: `npm ci` exited 1: …") || !strings.HasSuffix(msg, "npm ERR! 404 left-pad not found") || len(msg) > 1200 {
		t.Errorf("summary (%d bytes): %q", len(msg), msg)
	}
	var types []contract.EventType
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := []contract.EventType{contract.EventSessionStart, contract.EventSetup, contract.EventSetup, contract.EventFinish}
	if strings.Join(eventTypes(types), ",") != strings.Join(eventTypes(want), ",") {
		t.Fatalf("events %v, want %v", types, want)
	}
	if s := evs[2].Setup; s.Command != "npm ci" || s.ExitCode != 1 || !strings.Contains(s.Output, "left-pad") {
		t.Errorf("second setup event: %+v", s)
	}
	if r.termination.Diff.FilesChanged != 1 {
		t.Errorf("the patch must still be produced (setup.lock): %+v", r.termination.Diff)
	}
}

func TestSucceededSetupIsRecordedBeforeTheAgentRuns(t *testing.T) {
	content := setupResultJSON(t, contract.Setup{Command: "make deps", ExitCode: 0, Output: "fetched 12 modules\n", DurationMS: 50})
	r, srv, evs := runWithSetup(t, content, scriptedllm.Text("done"))
	if r.code != 0 || len(srv.Requests()) != 1 {
		t.Fatalf("exit %d, %d model calls\n%s", r.code, len(srv.Requests()), r.stderr)
	}
	if evs[1].Type != contract.EventSetup || evs[1].Setup.Output != "fetched 12 modules\n" || evs[2].Type != contract.EventModelRequest {
		t.Errorf("events: %+v", evs[:3])
	}
}

// The result file is written in the agent's image by setup commands the repository
// controls: whatever it holds, the session ends with a clear reason and the model is not
// called.
func TestGarbageSetupResultIsAClearSetupFailure(t *testing.T) {
	cases := map[string]struct{ content, want string }{
		"not JSON":      {"{{{{", "not a JSON list"},
		"unknown field": {`[{"command":"x","exitCode":0,"durationMs":1,"approved":true}]`, "unknown field"},
		"empty list":    {`[]`, "lists no command"},
		"trailing data": {`[{"command":"x","exitCode":0,"durationMs":1}] [{"command":"y"}]`, "data after"},
		"huge":          {`[{"command":"x","exitCode":0,"durationMs":1,"output":"` + strings.Repeat("A", cli.MaxSetupResultBytes) + `"}]`, "larger than"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r, srv, evs := runWithSetup(t, tc.content, scriptedllm.Text("must never be asked"))
			if r.code != int(contract.ExitSetupFailed) || !strings.Contains(r.termination.Message, tc.want) {
				t.Errorf("exit %d, message %q", r.code, r.termination.Message)
			}
			if len(srv.Requests()) != 0 {
				t.Errorf("the model was called")
			}
			if len(evs) < 2 || evs[1].Type != contract.EventError || evs[1].Error.Source != "setup" {
				t.Errorf("want an error event from setup after sessionStart, got %+v", evs)
			}
		})
	}
}

// The runner reads the result from a volume setup code could write to: a symlink towards a
// file only the runner may read is not followed, a FIFO does not block it.
func TestSetupResultThatIsNotAFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "token")
	if err := os.WriteFile(secretFile, []byte(`[{"command":"gateway-token-value","exitCode":0,"durationMs":1}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "result-link.json")
	if err := os.Symlink(secretFile, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "result-fifo.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{link, fifo} {
		results, err := cli.ReadSetupResult(path)
		if err == nil || results != nil || strings.Contains(err.Error(), "gateway-token-value") {
			t.Errorf("%s: results %v, error %v; want a refusal that shows nothing of the target", filepath.Base(path), results, err)
		}
	}
}

func eventTypes(ts []contract.EventType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// A setup command that stores its Secret in a file (an .npmrc with the token, a docker
// config with it in base64) would hand it to the agent, whose code reads those directories.
func TestSetupFailsAndRemovesFilesHoldingItsSecret(t *testing.T) {
	const secret = "npm_T0kenValue0123456789"
	t.Setenv("NPM_TOKEN", secret)
	home := t.TempDir()
	ws := t.TempDir()
	resultPath := filepath.Join(t.TempDir(), "result.json")
	// A symlink to a file outside the checked directories holding the secret is not followed.
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	r := runPlain(map[string]string{"NPM_TOKEN": secret}, "setup", "--workspace", ws, "--result", resultPath,
		"--secret-env", "NPM_TOKEN", "--check-dir", ws, "--check-dir", home,
		"--command", `echo "//registry/:_authToken=$NPM_TOKEN" > `+home+`/.npmrc`,
		"--command", `mkdir -p `+home+`/.docker && printf '{"auth":"%s"}' "$(printf %s "$NPM_TOKEN" | base64 -w0)" > `+home+`/.docker/config.json`,
		// The value straddles the first read's 256 KiB boundary.
		"--command", `{ head -c 262139 /dev/zero | tr '\0' x; printf %s "$NPM_TOKEN"; } > cache.bin`,
		"--command", `echo "clean" > ok.txt`)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(resultPath)
	if err != nil {
		t.Fatal(err)
	}
	var results []contract.Setup
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	last := results[len(results)-1]
	if len(results) != 5 || last.Command != cli.SetupLeakCheck || last.ExitCode == 0 {
		t.Fatalf("want the four commands and a failed leak check, got %d results, last %q: %.500s", len(results), last.Command, last.Output)
	}
	for _, want := range []string{home + "/.npmrc held the value of NPM_TOKEN (as is)", ".docker/config.json held the value of NPM_TOKEN (base64)", "cache.bin held"} {
		if !strings.Contains(last.Output, want) {
			t.Errorf("leak report lacks %q:\n%s", want, last.Output)
		}
	}
	if strings.Contains(last.Output, "link") || strings.Contains(last.Output, "ok.txt") {
		t.Errorf("reported a file that holds no secret of its own:\n%s", last.Output)
	}
	for _, p := range []string{filepath.Join(home, ".npmrc"), filepath.Join(home, ".docker/config.json"), filepath.Join(ws, "cache.bin")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists", p)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the symlink's target outside the checked directories was touched: %v", err)
	}
	if strings.Contains(string(b), secret) {
		t.Error("the result holds the secret")
	}
}

// In the pod `runner setup` is its container's first process. A setup command can leave a
// process outside its group (setsid) that keeps writing the Secret into the workspace; it
// must not outlive the check for leftovers. Run as PID 1 of a new PID namespace, as in the pod.
func TestSetupEndsProcessesThatLeftItsGroupBeforeTheCheck(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid on this machine")
	}
	const secret = "late-writer-secret-0123456789"
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	// A large file the check reads after late.txt: time for a surviving writer to write again.
	if err := os.WriteFile(filepath.Join(ws, "zz.bin"), make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	resultPath := filepath.Join(t.TempDir(), "result.json")
	cmd := exec.Command(exe, "setup", "--workspace", ws, "--result", resultPath, "--secret-env", "S", "--check-dir", ws,
		// The pause lets the writer leave the group before the command ends.
		"--command", `setsid sh -c 'while :; do echo "$S" > late.txt; sleep 0.001; done' </dev/null >/dev/null 2>&1 & sleep 0.3`)
	cmd.Env = append(os.Environ(), "S="+secret)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") || strings.Contains(err.Error(), "invalid argument") {
			t.Skipf("no user and PID namespaces here: %v", err)
		}
		t.Fatalf("runner setup: %v\n%s", err, out)
	}
	// The writer truncates and rewrites late.txt: killed between the two, it leaves an empty
	// file, which holds nothing to report. What must never be there is the Secret.
	late, lateErr := os.ReadFile(filepath.Join(ws, "late.txt"))
	if strings.Contains(string(late), secret) {
		t.Errorf("late.txt holds the Secret after setup: a process outlived the check, or the check missed it")
	}
	b, err := os.ReadFile(resultPath)
	if err != nil {
		t.Fatal(err)
	}
	var results []contract.Setup
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	reported := results[len(results)-1].Command == cli.SetupLeakCheck && strings.Contains(results[len(results)-1].Output, "late.txt held the value of S")
	if !reported && !(lateErr == nil && len(late) == 0) {
		t.Errorf("want the leak check to report late.txt (it held the Secret), got %+v", results)
	}
}
