package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/minio/minio-go/v7"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/cli"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func writeFile(path, content string) scriptedllm.Step {
	return scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": path, "content": content}})
}

// getContinuation asks the gateway for the continuation with token, as a checkout or a
// runner does; query is appended to the path (a forged parameter).
func getContinuation(t *testing.T, g *gw, token, query string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.URL+contract.PathContinuation+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := gwClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func continueFrom(of string) func(*v1.AgentSession) {
	return func(s *v1.AgentSession) {
		s.Spec.ContinueFrom = &v1.ContinueFrom{Session: of}
		s.Spec.Task = "Now add b.txt."
	}
}

// recordContinuation writes status.continuedFrom as the reconciler does before creating
// the follow-up's pod.
func (f *fixture) recordContinuation(s *v1.AgentSession, earlier *v1.AgentSession, commit string) {
	f.t.Helper()
	f.setStatus(s, fmt.Sprintf(`{"status":{"continuedFrom":{"session":%q,"uid":%q,"commit":%q,"patchSHA256":%q}}}`,
		earlier.Name, earlier.UID, commit, earlier.Status.Patch.SHA256))
}

func headCommit(t *testing.T, dir string) string {
	t.Helper()
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	return h.Hash().String()
}

// TestFollowUpContinuesTheEarlierSession is the follow-up's acceptance test, end to end
// without a cluster: a first session's runner adds a.txt through the gateway, which
// archives its patch and transcript in S3; a follow-up's checkout fetches that patch from
// the gateway with the follow-up's token and applies it; the follow-up's runner starts
// with the earlier task and summary before its own task, adds b.txt, and its archived
// patch holds both changes.
func TestFollowUpContinuesTheEarlierSession(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t,
		writeFile("a.txt", "first\n"), scriptedllm.Text("Added a.txt."),
		writeFile("b.txt", "second\n"), scriptedllm.Text("Added b.txt."),
	)
	g := startGateway(t)

	first := f.session("first", func(s *v1.AgentSession) { s.Spec.Task = "Add a.txt." })
	ra := runnerFor(t, first, g, f.tokenFile(f.runnerPod(first)))
	if code := ra.run(ctx); code != 0 {
		t.Fatalf("first runner exit %d: %s", code, ra.stderr.String())
	}
	eventually(t, 10*time.Second, "the first session's archived patch in status", func() bool {
		first = f.get(first)
		return first.Status.Patch != nil && first.Status.Transcript != nil
	})
	base := headCommit(t, ra.workspace)

	second := f.session("second", continueFrom("first"))
	secondToken := f.tokenFile(f.runnerPod(second))
	f.recordContinuation(second, first, base)

	// The checkout init container: clone at the earlier base, fetch and apply the patch.
	ws := filepath.Join(t.TempDir(), "ws")
	var out, errOut bytes.Buffer
	code := cli.Run(ctx, []string{"checkout", "--repo", ra.workspace, "--dir", ws, "--ref", base,
		"--continuation-from-gateway", g.URL, "--token-file", secondToken, "--gateway-ca-file", caFile},
		cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	if code != 0 {
		t.Fatalf("checkout exit %d: %s%s", code, out.String(), errOut.String())
	}

	rb := runnerFor(t, second, g, secondToken, "--continuation")
	for i, a := range rb.args {
		if a == "--workspace" {
			rb.args[i+1], rb.workspace = ws, ws
		}
	}
	if code := rb.run(ctx); code != 0 {
		t.Fatalf("follow-up runner exit %d: %s", code, rb.stderr.String())
	}

	// The follow-up's model saw the earlier conversation before its own task.
	reqs := f.llm.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d model requests, want 4", len(reqs))
	}
	var got []string
	for _, m := range reqs[2].Body.Messages[1:] {
		got = append(got, m.Role+": "+m.Content)
	}
	want := []string{"user: Add a.txt.", "assistant: Added a.txt.", "user: Now add b.txt."}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("follow-up's first prompt after the system message:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	var after *v1.AgentSession
	eventually(t, 10*time.Second, "the follow-up's archived patch", func() bool {
		after = f.get(second)
		return after.Status.Patch != nil && after.Status.Transcript != nil
	})
	patch := string(objectBytes(t, after.Status.Patch.URI))
	for _, w := range []string{"+++ b/a.txt", "+first", "+++ b/b.txt", "+second"} {
		if !strings.Contains(patch, w) {
			t.Errorf("the follow-up's patch lacks %q:\n%s", w, patch)
		}
	}
	start := sessionStart(t, objectBytes(t, after.Status.Transcript.URI))
	wantCont := contract.Continuation{Session: "first", Commit: base, PatchSHA256: first.Status.Patch.SHA256, Messages: 2}
	if start.ContinuedFrom == nil || *start.ContinuedFrom != wantCont {
		t.Errorf("session-start continuedFrom = %+v, want %+v", start.ContinuedFrom, wantCont)
	}
}

func sessionStart(t *testing.T, transcript []byte) *contract.SessionStart {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(transcript))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		ev, err := contract.DecodeEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if ev.SessionStart != nil {
			return ev.SessionStart
		}
	}
	t.Fatal("no session-start event")
	return nil
}

// TestContinuationGoesOnlyToTheFollowUp performs the attacks on the endpoint: a runner of a
// session that continues nothing asks (with a forged parameter naming another session), a
// token of another audience, and a follow-up whose earlier patch was changed in the object
// store after it finished. Each is refused, and the follow-up gets exactly its own.
func TestContinuationGoesOnlyToTheFollowUp(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t, writeFile("secret.txt", "only for my follow-ups\n"), scriptedllm.Text("Added secret.txt."))
	g := startGateway(t)
	first := f.session("first", func(s *v1.AgentSession) { s.Spec.Task = "Add secret.txt." })
	firstPod := f.runnerPod(first)
	ra := runnerFor(t, first, g, f.tokenFile(firstPod))
	if code := ra.run(ctx); code != 0 {
		t.Fatalf("first runner exit %d: %s", code, ra.stderr.String())
	}
	eventually(t, 10*time.Second, "the archived patch in status", func() bool {
		first = f.get(first)
		return first.Status.Patch != nil && first.Status.Transcript != nil
	})

	follow := f.session("follow", continueFrom("first"))
	followTok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(follow)))
	f.recordContinuation(follow, first, headCommit(t, ra.workspace))
	other := f.session("other")
	otherTok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(other)))

	code, body := getContinuation(t, g, followTok, "")
	var resp contract.ContinuationResponse
	if code != http.StatusOK || json.Unmarshal([]byte(body), &resp) != nil || !strings.Contains(string(resp.Patch), "+only for my follow-ups") {
		t.Fatalf("the follow-up's own continuation: %d %s", code, body)
	}

	for name, tc := range map[string]struct {
		token, query string
		status       int
		want         string
	}{
		"no continueFrom":      {otherTok, "", http.StatusNotFound, "does not continue another session"},
		"forged session param": {otherTok, "?session=first&namespace=" + f.ns, http.StatusNotFound, "does not continue another session"},
		"other audience":       {f.token("kubernetes", boundTo(f.runnerPod(f.session("aud")))), "", http.StatusUnauthorized, ""},
		"finished session":     {f.token(contract.GatewayAudience, boundTo(firstPod)), "", http.StatusForbidden, ""},
	} {
		t.Run(name, func(t *testing.T) {
			code, body := getContinuation(t, g, tc.token, tc.query)
			if code != tc.status || !strings.Contains(body, tc.want) || strings.Contains(body, "only for my follow-ups") {
				t.Fatalf("%d %s; want %d %q and no patch", code, body, tc.status, tc.want)
			}
		})
	}

	// The archive is changed after the session finished: the patch is no longer the one
	// the reconciler recorded, and it is refused.
	key := strings.TrimPrefix(first.Status.Patch.URI, "s3://"+bucket+"/")
	evil := []byte("diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\n")
	if _, err := s3c.PutObject(ctx, bucket, key, bytes.NewReader(evil), int64(len(evil)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	code, body = getContinuation(t, g, followTok, "")
	if code != http.StatusBadGateway || !strings.Contains(body, "not status.continuedFrom.patchSHA256") || strings.Contains(body, "hooks") {
		t.Fatalf("tampered patch: %d %s", code, body)
	}
}
