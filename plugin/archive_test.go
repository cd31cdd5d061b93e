package plugin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/test/s3server"
	"github.com/agentry-dev/agentry/test/testutil"
)

const bucket = "agentry"

// s3Store reads archived objects from the real S3 server, as the gateway's store does.
type s3Store struct{ c *minio.Client }

func (s s3Store) ReadArtifact(ctx context.Context, uri string, max int64) ([]byte, error) {
	key, ok := strings.CutPrefix(uri, "s3://"+bucket+"/")
	if !ok {
		return nil, fmt.Errorf("%s is not in bucket %s", uri, bucket)
	}
	obj, err := s.c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(io.LimitReader(obj, max))
}

func (s s3Store) ReadLiveTranscript(context.Context, string, string, types.UID) ([]byte, error) {
	return nil, errors.New("no live transcript in this test")
}

// links is a namespace served by the real share controller and link server, reading a real
// S3 server, as the manager runs them.
type links struct {
	ns  string
	s3  *minio.Client
	web *httptest.Server
}

func startLinks(t *testing.T, ctx context.Context) *links {
	t.Helper()
	s3, err := s3server.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s3.Stop() })
	mc, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := env.CreateNamespace(ctx, "links", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := controllers.CacheOptions()
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0", Cache: opts,
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	srv := &console.Server{Client: mgr.GetClient(), Shares: mgr.GetAPIReader(), Store: s3Store{mc}, Key: key,
		Viewer: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<!doctype html>viewer") })}
	web := httptest.NewServer(srv.Handler())
	t.Cleanup(web.Close)
	if err := (&controllers.ShareReconciler{Client: mgr.GetClient(), BaseURL: web.URL, Key: key}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &links{ns: ns, s3: mc, web: web}
}

// archived creates a session that ended, its transcript and patch in S3 and pointed at
// from status, as the controller and the gateway leave it. The runner pod is gone.
func (l *links) archived(t *testing.T, ctx context.Context, name, base string, transcript, patch []byte) *v1.AgentSession {
	t.Helper()
	s := testutil.Session(name, l.ns).Obj()
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%s/%s/%s/", l.ns, name, s.UID)
	put := func(file string, b []byte) *v1.ArtifactRef {
		if _, err := l.s3.PutObject(ctx, bucket, prefix+file, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		return &v1.ArtifactRef{URI: "s3://" + bucket + "/" + prefix + file, SizeBytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
	}
	s.Status.Phase = v1.PhaseSucceeded
	s.Status.PodName = name + "-runner"
	s.Status.Resolved = &v1.Resolved{CommitSHA: base}
	s.Status.Result = &v1.SessionResult{Summary: "Fixed Add.", FilesChanged: 1, Additions: 1, Deletions: 1}
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: v1.ConditionSucceeded, Status: metav1.ConditionTrue, Reason: "Completed"})
	if transcript != nil {
		s.Status.Transcript = put("transcript.jsonl", transcript)
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: v1.ConditionArchived, Status: metav1.ConditionTrue, Reason: "Archived"})
	}
	if patch != nil {
		s.Status.Patch = put("result.patch", patch)
		put("summary.json", []byte(`{"v":1,"outcome":"Completed"}`))
	}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// noShares fails when a temporary share outlived the command.
func (l *links) noShares(t *testing.T, ctx context.Context) {
	t.Helper()
	var list v1.AgentSessionShareList
	if err := env.Client.List(ctx, &list, client.InNamespace(l.ns)); err != nil {
		t.Fatal(err)
	}
	for _, sh := range list.Items {
		if sh.DeletionTimestamp == nil {
			t.Errorf("share %s was left behind", sh.Name)
		}
	}
}

// recordedTranscript is a session's transcript as the runner records it. The model's and the
// tools' text carries what a hostile repository would put there: terminal control
// sequences, HTML, a fence-breaking run of backticks.
func recordedTranscript(t *testing.T) []byte {
	t.Helper()
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	evs := []contract.Event{
		{Type: contract.EventSessionStart, SessionStart: &contract.SessionStart{Session: "fix", Task: "Fix Add in calc.go", Model: "gpt-4.1",
			Tools: []string{"bash", "edit_file"}, Repository: "https://git.example.com/org/app.git", Ref: "main", BaseCommit: "0123456789abcdef"}},
		{Type: contract.EventModelRequest, Turn: 1, ModelRequest: &contract.ModelRequest{Model: "gpt-4.1", Messages: 2, Tools: 2}},
		{Type: contract.EventModelResponse, Turn: 1, ModelResponse: &contract.ModelResponse{Content: "Let me run the tests.\x1b]0;pwned\x07",
			ToolCalls: []contract.ToolCallSpec{{ID: "c1", Name: "bash", Arguments: `{"command":"go test ./..."}`}}, Usage: contract.Usage{PromptTokens: 1200, CompletionTokens: 30}, Attempts: 1, DurationMS: 850}},
		{Type: contract.EventApproval, Turn: 1, Approval: &contract.Approval{ID: "ap-1", CallID: "c1", Tool: "bash", Summary: "go test ./...", Decision: contract.DecisionAllow, By: "gateway", Reason: "tests only"}},
		{Type: contract.EventToolCall, Turn: 1, ToolCall: &contract.ToolCall{ID: "c1", Name: "bash", Arguments: `{"command":"go test ./..."}`}},
		{Type: contract.EventToolResult, Turn: 1, ToolResult: &contract.ToolResult{ID: "c1", Name: "bash", Output: "--- FAIL: TestAdd\n````\n<script>alert(1)</script>\nexit code: 1", DurationMS: 2300}},
		{Type: contract.EventModelResponse, Turn: 2, ModelResponse: &contract.ModelResponse{Content: "**Fixed** `Add`: it subtracted. <img src=https://evil.example/track.png>",
			Usage: contract.Usage{PromptTokens: 1500, CompletionTokens: 40}, Attempts: 1, DurationMS: 640}},
		{Type: contract.EventFinish, Turn: 2, Finish: &contract.Finish{Outcome: contract.OutcomeCompleted, Summary: "Fixed Add.", Turns: 2, ToolCalls: 1,
			Usage: contract.Usage{PromptTokens: 2700, CompletionTokens: 70}, Diff: contract.DiffStats{FilesChanged: 1, Additions: 1, Deletions: 1}, DurationMS: 5000}},
	}
	var b bytes.Buffer
	for i, ev := range evs {
		ev.Version, ev.Seq, ev.Time = contract.SchemaVersion, int64(i+1), at.Add(time.Duration(i)*time.Second)
		line, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// checkout is a git repository at a commit with calc.go, and the patch that fixes it.
func checkout(t *testing.T) (dir, base string, patch []byte) {
	t.Helper()
	dir = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	git("init", "-q", "-b", "main")
	write(t, filepath.Join(dir, "calc.go"), "package app\n\nfunc Add(a, b int) int { return a - b }\n")
	write(t, filepath.Join(dir, "README.md"), "# app\n")
	git("add", ".")
	git("commit", "-q", "-m", "calc")
	base = strings.TrimSpace(git("rev-parse", "HEAD"))
	write(t, filepath.Join(dir, "calc.go"), "package app\n\nfunc Add(a, b int) int { return a + b }\n")
	patch = []byte(git("diff"))
	git("checkout", "-q", "--", "calc.go")
	return dir, base, patch
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLogsOfAGonePodReplayTheArchivedTranscript(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLinks(t, ctx)
	l.archived(t, ctx, "fix", "", recordedTranscript(t), nil)

	code, out, errOut := agentry(ctx, "-n", l.ns, "logs", "fix")
	if code != 0 {
		t.Fatalf("logs: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "pod fix-runner is gone; showing the archived transcript") {
		t.Errorf("logs does not say it replays the archive:\n%s", errOut)
	}
	for _, want := range []string{
		"turn 1   model 850ms · ↑1.2k ↓30 tokens · 1 tool call",
		`   “Let me run the tests.\x1b]0;pwned\x07”`,
		"   ⚑ Allow bash by gateway — tests only",
		"   › bash go test ./...",
		"   ✓ bash go test ./...  2.3s exit code: 1",
		"turn 2   model 640ms · ↑1.5k ↓40 tokens · answer",
		"✓ Completed after 2 turns · 1 tool calls · 2.8k tokens · 5s · exit 0",
		"  1 files changed, +1 -1",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("logs lacks the line %q:\n%s", want, out)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("logs printed the transcript's control characters raw:\n%q", out)
	}
	l.noShares(t, ctx)

	// Neither a pod nor an archive: say so.
	if err := env.Client.Create(ctx, testutil.Session("new", l.ns).Obj()); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := agentry(ctx, "-n", l.ns, "logs", "new"); code != 1 || !strings.Contains(errOut, "has no runner pod yet") {
		t.Errorf("logs of a session without pod or archive: exit %d\n%s", code, errOut)
	}
}

func TestTranscriptFormats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLinks(t, ctx)
	recorded := recordedTranscript(t)
	l.archived(t, ctx, "fix", "", recorded, nil)

	code, out, errOut := agentry(ctx, "-n", l.ns, "transcript", "fix", "--format", "json")
	if code != 0 || out != string(recorded) {
		t.Fatalf("transcript --format json: exit %d, want the archived JSON lines as they are\n%s", code, errOut)
	}

	code, md, errOut := agentry(ctx, "-n", l.ns, "transcript", "fix") // not a terminal: markdown
	if code != 0 {
		t.Fatalf("transcript: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"# Session " + l.ns + "/fix", "## Task", "> Fix Add in calc.go", "## Turn 1", "## Turn 2",
		"**→ `bash`** `go test ./...`", "> ⚑ **Allow** `ap-1` `bash` by `gateway` — tests only", "✓ `bash` · 2.3s",
		"`````\n--- FAIL: TestAdd\n````\n<script>", "**Fixed** `Add`: it subtracted.", "## Finish: Completed"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.ContainsAny(md, "\x1b\x07") {
		t.Errorf("markdown carries raw control characters:\n%q", md)
	}

	code, text, errOut := agentry(ctx, "-n", l.ns, "transcript", "fix", "--format", "text")
	text = sgr.ReplaceAllString(text, "")
	if code != 0 || !strings.Contains(text, "Fixed") || !strings.Contains(text, "Turn 1") || strings.Contains(text, "**Fixed**") {
		t.Errorf("transcript --format text: exit %d, want rendered markdown\n%s%s", code, text, errOut)
	}
	if strings.Contains(text, "\x1b]0;") || strings.Contains(text, "\x07") {
		t.Errorf("text carries the transcript's terminal title sequence raw:\n%q", text)
	}

	page := filepath.Join(t.TempDir(), "fix.html")
	code, out, errOut = agentry(ctx, "-n", l.ns, "transcript", "fix", "--format", "html", "-o", page)
	if code != 0 || !strings.Contains(out, "wrote "+page) {
		t.Fatalf("transcript --format html: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if !strings.Contains(html, "<strong>Fixed</strong>") || !strings.Contains(html, "default-src 'none'") {
		t.Errorf("html page lacks the rendered answer or its policy:\n%s", html)
	}
	if strings.Contains(html, "<script>") || strings.Contains(html, "<img") {
		t.Errorf("html page lets the transcript's HTML through:\n%s", html)
	}
	if code, _, errOut := agentry(ctx, "-n", l.ns, "transcript", "fix", "--format", "pdf"); code != 2 || !strings.Contains(errOut, "--format must be") {
		t.Errorf("--format pdf: exit %d\n%s", code, errOut)
	}
	l.noShares(t, ctx)
}

// TestReadingANotArchivedSessionSaysWhy: the link server's refusal reaches the user, and the
// temporary share is deleted all the same.
func TestReadingANotArchivedSessionSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLinks(t, ctx)
	l.archived(t, ctx, "early", "", nil, nil)
	code, _, errOut := agentry(ctx, "-n", l.ns, "transcript", "early")
	if code != 1 || !strings.Contains(errOut, "404 Not Found: Not archived yet") {
		t.Errorf("transcript of a session not archived: exit %d\n%s", code, errOut)
	}
	l.noShares(t, ctx)
}

func TestDiffAndApply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLinks(t, ctx)
	dir, base, patch := checkout(t)
	l.archived(t, ctx, "fix", base, recordedTranscript(t), patch)

	code, out, errOut := agentry(ctx, "-n", l.ns, "diff", "fix")
	if code != 0 || out != string(patch) {
		t.Fatalf("diff (piped): exit %d, want the patch byte for byte\n%s%s", code, out, errOut)
	}
	code, out, _ = agentry(ctx, "-n", l.ns, "diff", "fix", "--color=always")
	if code != 0 || !strings.Contains(out, "\x1b[32m+func Add(a, b int) int { return a + b }\x1b[0m") || !strings.Contains(out, "\x1b[31m-func Add") {
		t.Errorf("diff --color=always is not coloured:\n%q", out)
	}

	// A checkout at another commit is refused, naming both commits.
	other := filepath.Join(dir, "README.md")
	write(t, other, "# app, changed\n")
	mustGit(t, dir, "commit", "-q", "-am", "readme")
	head := strings.TrimSpace(mustGit(t, dir, "rev-parse", "HEAD"))
	code, _, errOut = agentry(ctx, "-n", l.ns, "apply", "fix", "--dir", dir)
	if code != 1 || !strings.Contains(errOut, base) || !strings.Contains(errOut, head) || !strings.Contains(errOut, "--force-base") {
		t.Fatalf("apply on another commit: exit %d, want a refusal naming %s and %s\n%s", code, base, head, errOut)
	}
	mustGit(t, dir, "checkout", "-q", base)

	// Uncommitted changes in a file the patch touches are not mixed with the agent's.
	write(t, filepath.Join(dir, "calc.go"), "package app // mine\n")
	code, _, errOut = agentry(ctx, "-n", l.ns, "apply", "fix", "--dir", dir)
	if code != 1 || !strings.Contains(errOut, "uncommitted changes") || !strings.Contains(errOut, "calc.go") {
		t.Fatalf("apply over a changed calc.go: exit %d\n%s", code, errOut)
	}
	mustGit(t, dir, "checkout", "-q", "--", "calc.go")

	code, out, errOut = agentry(ctx, "-n", l.ns, "apply", "fix", "--dir", dir)
	if code != 0 || !strings.Contains(out, "calc.go  +1 -1") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "calc.go"))
	if !strings.Contains(string(got), "return a + b") {
		t.Errorf("calc.go after apply:\n%s", got)
	}
	if staged := mustGit(t, dir, "diff", "--cached", "--name-only"); staged != "" {
		t.Errorf("apply staged %q; it should change the working tree only", staged)
	}
	l.noShares(t, ctx)
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestShareListRevoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLinks(t, ctx)
	_, base, patch := checkout(t)
	l.archived(t, ctx, "fix", base, recordedTranscript(t), patch)

	code, out, errOut := agentry(ctx, "-n", l.ns, "share", "fix", "--expires", "2h", "--artifacts", "transcript,summary")
	if code != 0 || !strings.Contains(out, l.web.URL+"/s/"+l.ns+"/fix-share-") || !strings.Contains(out, "expires ") || !strings.Contains(out, "anyone with the link") {
		t.Fatalf("share: exit %d\n%s%s", code, out, errOut)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(out)[0], "agentsessionshare/"), ":")
	link := strings.Fields(out)[1]
	if status, body := fetch(t, link+"transcript.jsonl"); status != http.StatusOK {
		t.Log(body)
		t.Errorf("the link's transcript answered %d", status)
	}
	if status, _ := fetch(t, link+"result.patch"); status != http.StatusNotFound {
		t.Errorf("the link's patch answered %d; it was not shared", status)
	}

	if _, out, _ := agentry(ctx, "__complete", "share", "-n", l.ns, "--revoke", ""); !strings.Contains(out, name+"\tshare of fix") {
		t.Errorf("__complete share --revoke does not offer %s:\n%s", name, out)
	}
	code, out, _ = agentry(ctx, "-n", l.ns, "share", "--list", "fix")
	if code != 0 || !strings.Contains(out, name) || !strings.Contains(out, "Transcript,Summary") || !strings.Contains(out, "LinkReady") {
		t.Errorf("share --list: exit %d\n%s", code, out)
	}
	if code, out, errOut := agentry(ctx, "-n", l.ns, "share", "--revoke", name); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("share --revoke: exit %d\n%s%s", code, out, errOut)
	}
	// The link server reads shares from its cache: the link stops working once it has
	// seen the deletion.
	eventually(ctx, t, "the revoked link to stop working", func() bool {
		status, _ := fetch(t, link+"transcript.jsonl")
		return status == http.StatusNotFound
	})
	if code, out, _ := agentry(ctx, "-n", l.ns, "share", "--list"); code != 0 || !strings.Contains(out, "No shares in "+l.ns) {
		t.Errorf("share --list after revoke: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"share", "fix", "--expires", "1000h"}, {"share", "fix", "--visibility", "public"}, {"share", "fix", "--artifacts", "secrets"}, {"share"}} {
		if code, _, errOut := agentry(ctx, append([]string{"-n", l.ns}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, errOut)
		}
	}
}

// TestReadingTheArchiveNeedsShares: a user who may read sessions but not create shares gets
// the apiserver's Forbidden, whole.
func TestReadingTheArchiveNeedsShares(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	installGovernance(t, ctx)
	l := startLinks(t, ctx)
	l.archived(t, ctx, "fix", "", recordedTranscript(t), nil)
	bind(t, ctx, l.ns, "viewer", "agentry-viewer")
	code, _, errOut := agentry(ctx, "-n", l.ns, "--as", "viewer", "transcript", "fix")
	want := fmt.Sprintf(`agentsessionshares.agentry.dev is forbidden: User "viewer" cannot create resource "agentsessionshares" in API group "agentry.dev" in the namespace "%s"`, l.ns)
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("transcript as a viewer: exit %d, want 1 and\n%s\ngot:\n%s", code, want, errOut)
	}
}

// sgr matches terminal colour sequences.
var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

// eventually polls cond until it holds or ctx ends.
func eventually(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(ctx, t, what, testutil.Holds(cond))
}

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
