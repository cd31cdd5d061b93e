package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/delivery/forge"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/test/giteaserver"
	"github.com/agentry-dev/agentry/test/gitserver"
	"github.com/agentry-dev/agentry/test/s3server"
)

// s3Artifacts reads archived objects from a real S3 server, as the gateway's store does.
type s3Artifacts struct {
	c      *minio.Client
	bucket string
}

func (a s3Artifacts) ReadArtifact(ctx context.Context, uri string, max int64) ([]byte, error) {
	key, ok := strings.CutPrefix(uri, "s3://"+a.bucket+"/")
	if !ok {
		return nil, fmt.Errorf("%s is not in bucket %s", uri, a.bucket)
	}
	obj, err := a.c.GetObject(ctx, a.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(io.LimitReader(obj, max))
}

type deliveryFixture struct {
	ns       string
	git      *gitserver.Server
	repoURL  string
	store    s3Artifacts
	recorder *record.FakeRecorder
}

func startDelivery(t *testing.T, ctx context.Context) *deliveryFixture {
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
	if err := mc.MakeBucket(ctx, "agentry", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &deliveryFixture{ns: restrictedNamespace(t, ctx), git: gitserver.Start(t, "agentry-bot", "push-token-"+t.Name()[:4]),
		store: s3Artifacts{c: mc, bucket: "agentry"}}
	f.repoURL = f.git.Init(t, "app", "main", map[string]string{"README.md": "# app\n", "calc.go": "package app\n\nfunc Add(a, b int) int { return a - b }\n"})

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "git-push-" + f.ns, Namespace: operatorNS},
		Data: map[string][]byte{"username": []byte(f.git.User), "password": []byte(f.git.Password)}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	provider := &v1.GitProvider{ObjectMeta: metav1.ObjectMeta{Name: "git-" + f.ns},
		Spec: v1.GitProviderSpec{Type: v1.GitProviderGit, URL: f.git.URL, AllowPlainHTTP: true, SecretRef: v1.SecretReference{Name: secret.Name}}}
	if err := env.Client.Create(ctx, provider); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), provider) })

	allow := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-delivery", Namespace: f.ns}, Spec: v1.AgentPolicySpec{Delivery: &v1.DeliveryPolicy{}}}
	if err := env.Client.Create(ctx, allow); err != nil {
		t.Fatal(err)
	}

	f.recorder = record.NewFakeRecorder(100)
	runManager(t, f.ns, func(mgr ctrl.Manager) error {
		return (&DeliveryReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Artifacts: f.store,
			Recorder: f.recorder, OperatorNamespace: operatorNS}).SetupWithManager(mgr)
	})
	return f
}

// finish makes s look like a session the agent completed with patch as its archived result,
// as the reconciler and the gateway would have written it.
func (f *deliveryFixture) finish(t *testing.T, ctx context.Context, s *v1.AgentSession, phase v1.SessionPhase, patch []byte, uriFor *v1.AgentSession) {
	t.Helper()
	f.finishStoring(t, ctx, s, phase, patch, patch, uriFor)
}

// finishStoring is finish with stored in the bucket where status says patch (its size and
// sha256): a patch tampered with before delivery can start, never after.
func (f *deliveryFixture) finishStoring(t *testing.T, ctx context.Context, s *v1.AgentSession, phase v1.SessionPhase, patch, stored []byte, uriFor *v1.AgentSession) {
	t.Helper()
	if uriFor == nil {
		uriFor = s
	}
	key := fmt.Sprintf("sessions/%s/%s/%s/result.patch", uriFor.Namespace, uriFor.Name, uriFor.UID)
	if _, err := f.store.c.PutObject(ctx, "agentry", key, bytes.NewReader(stored), int64(len(stored)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(patch)
	now := metav1.Now()
	s.Status.Phase = phase
	s.Status.CompletionTime = &now
	s.Status.Conditions = []metav1.Condition{{Type: v1.ConditionArchived, Status: metav1.ConditionTrue, Reason: v1.ReasonUploaded, LastTransitionTime: now}}
	files := int32(0)
	if len(patch) > 0 {
		files = 1
	}
	s.Status.Result = &v1.SessionResult{Summary: "Fix Add\n\nAdd subtracted; it adds now.", FilesChanged: files, Additions: 1, Deletions: 1}
	s.Status.Patch = &v1.ArtifactRef{URI: "s3://agentry/" + key, SizeBytes: int64(len(patch)), SHA256: hex.EncodeToString(sum[:])}
	s.Status.Usage = &v1.Usage{TotalTokens: 1234}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
}

func (f *deliveryFixture) session(t *testing.T, ctx context.Context, name string, d *v1.DeliverySpec) *v1.AgentSession {
	t.Helper()
	s := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: v1.AgentSessionSpec{Task: "Fix Add.", Repository: v1.RepositorySpec{URL: f.repoURL, Ref: "main"}, Delivery: d}}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fixPatch is the runner's own patch for the agent's fix.
func (f *deliveryFixture) fixPatch(t *testing.T) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	gitserver.Git(t, filepath.Dir(dir), "clone", "-q", f.repoURL, dir)
	if err := os.WriteFile(filepath.Join(dir, "calc.go"), []byte("package app\n\nfunc Add(a, b int) int { return a + b }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := repo.Diff()
	if err != nil {
		t.Fatal(err)
	}
	return p.Text
}

func waitDelivered(t *testing.T, ctx context.Context, s *v1.AgentSession) (*v1.AgentSession, metav1.Condition) {
	t.Helper()
	var got *v1.AgentSession
	var cond metav1.Condition
	eventually(t, ctx, "the Delivered condition", func() error {
		var err error
		if got, err = getSession(ctx, s); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionDelivered)
		if c == nil || c.Status == metav1.ConditionUnknown {
			return fmt.Errorf("Delivered = %+v", c)
		}
		cond = *c
		return nil
	})
	return got, cond
}

func TestDeliveryPushesTheArchivedPatchWithTheProvidersCredential(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	f := startDelivery(t, ctx)
	s := f.session(t, ctx, "fix-add", &v1.DeliverySpec{Push: &v1.PushDelivery{}, Author: &v1.CommitAuthor{Name: "Release Bot", Email: "bot@example.com"}})
	f.finish(t, ctx, s, v1.PhaseSucceeded, f.fixPatch(t), nil)

	got, cond := waitDelivered(t, ctx, s)
	if cond.Status != metav1.ConditionTrue || cond.Reason != v1.ReasonDelivered {
		t.Fatalf("Delivered = %s/%s: %s", cond.Status, cond.Reason, cond.Message)
	}
	d := got.Status.Delivery
	if d == nil || d.Branch != "agentry/fix-add" || d.CommitSHA == "" || d.Attempts != 1 {
		t.Fatalf("status.delivery = %+v", d)
	}
	// What the host has is what status says, with the author and the session trailer.
	heads := gitserver.Git(t, t.TempDir(), "ls-remote", f.repoURL, "refs/heads/agentry/fix-add")
	if !strings.HasPrefix(heads, d.CommitSHA) {
		t.Fatalf("remote branch = %q, status.delivery.commitSHA = %s", heads, d.CommitSHA)
	}
	check := filepath.Join(t.TempDir(), "c")
	gitserver.Git(t, filepath.Dir(check), "clone", "-q", "-b", "agentry/fix-add", f.repoURL, check)
	body, err := os.ReadFile(filepath.Join(check, "calc.go"))
	if err != nil || !strings.Contains(string(body), "a + b") {
		t.Fatalf("calc.go on the branch = %q, %v", body, err)
	}
	msg := gitserver.Git(t, check, "log", "-1", "--format=%an <%ae>|%B")
	if !strings.HasPrefix(msg, "Release Bot <bot@example.com>|Fix Add") || !strings.Contains(msg, "Agentry-Session: "+f.ns+"/fix-add/"+string(s.UID)) {
		t.Fatalf("commit = %q", msg)
	}
	// Delivered is final: a later status change does not push again.
	pushes := f.git.Pushes
	got.Status.Progress = &v1.Progress{Message: "poke"}
	if err := env.Client.Status().Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	again, _ := waitDelivered(t, ctx, s)
	if again.Status.Delivery.Attempts != 1 || f.git.Pushes != pushes {
		t.Fatalf("delivered twice: attempts %d, pushes %d→%d", again.Status.Delivery.Attempts, pushes, f.git.Pushes)
	}
	select {
	case e := <-f.recorder.Events:
		if !strings.Contains(e, "Delivered") || !strings.Contains(e, "agentry/fix-add") {
			t.Fatalf("event = %q", e)
		}
	default:
		t.Fatal("no Event recorded")
	}
}

func TestDeliveryFailuresEndWithAReasonAndPushNothing(t *testing.T) {
	ctx := testContext(t, 120*time.Second)
	f := startDelivery(t, ctx)
	patch := f.fixPatch(t)
	provider := "git-" + f.ns

	cases := map[string]struct {
		delivery   *v1.DeliverySpec
		phase      v1.SessionPhase
		patch      []byte
		otherOwner bool // status.patch points at another session's archive
		tamper     bool // the archived object is not what status says
		policy     *v1.DeliveryPolicy
		noPolicy   bool // the namespace's only delivery-allowing policy is removed
		wantStatus metav1.ConditionStatus
		wantReason string
		wantMsg    string
	}{
		"session failed": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseFailed, patch: patch,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonSessionNotSucceeded, wantMsg: "ended Failed",
		},
		"nothing changed": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: nil,
			wantStatus: metav1.ConditionTrue, wantReason: v1.ReasonNoChanges, wantMsg: "changed no file",
		},
		"patch tampered with in the bucket": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch, tamper: true,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPatchUnavailable, wantMsg: "does not match status.patch.sha256",
		},
		"patch of another session": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch, otherOwner: true,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPatchUnavailable, wantMsg: "is not this session's archived patch",
		},
		"pull request through a push-only provider": {
			delivery: &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{}}, phase: v1.PhaseSucceeded, patch: patch,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonGitProviderNotFound, wantMsg: "cannot open pull requests",
		},
		"unknown provider": {
			delivery: &v1.DeliverySpec{GitProvider: "nope", Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonGitProviderNotFound, wantMsg: "GitProvider nope",
		},
		"policy forbids the repository": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch,
			policy:     &v1.DeliveryPolicy{AllowedRepositories: []string{"github.com/acme/*"}},
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonDeliveryNotAllowed, wantMsg: "allowedRepositories",
		},
		"policy forbids the provider": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch,
			policy:     &v1.DeliveryPolicy{AllowedGitProviders: []string{"github"}},
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonDeliveryNotAllowed, wantMsg: "does not allow GitProvider " + provider,
		},
		"no policy allows delivery": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch, noPolicy: true,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonDeliveryNotAllowed, wantMsg: "no AgentPolicy in namespace",
		},
		"credential the host refuses": {
			delivery: &v1.DeliverySpec{GitProvider: "bad-", Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonAuthFailed, wantMsg: "refused the GitProvider's credential",
		},
		"template with a loop": {
			delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}, phase: v1.PhaseSucceeded, patch: patch,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonInvalidTemplate, wantMsg: "range is not allowed",
		},
	}
	i := 0
	for name, tc := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			if tc.policy != nil {
				pol := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "delivery", Namespace: f.ns}, Spec: v1.AgentPolicySpec{Delivery: tc.policy}}
				if err := env.Client.Create(ctx, pol); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pol) })
			}
			if tc.noPolicy {
				allow := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-delivery", Namespace: f.ns}}
				if err := env.Client.Delete(ctx, allow); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					allow.ResourceVersion = ""
					allow.Spec.Delivery = &v1.DeliveryPolicy{}
					if err := env.Client.Create(context.Background(), allow); err != nil {
						t.Error(err)
					}
				})
			}
			d := tc.delivery.DeepCopy()
			if d.GitProvider == "bad-" {
				// A provider for the same host whose Secret holds a stale password.
				d.GitProvider = "bad-" + f.ns
				bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: d.GitProvider, Namespace: operatorNS},
					Data: map[string][]byte{"username": []byte(f.git.User), "password": []byte("revoked")}}
				if err := env.Client.Create(ctx, bad); err != nil {
					t.Fatal(err)
				}
				gp := &v1.GitProvider{ObjectMeta: metav1.ObjectMeta{Name: d.GitProvider},
					Spec: v1.GitProviderSpec{Type: v1.GitProviderGit, URL: f.git.URL, AllowPlainHTTP: true, SecretRef: v1.SecretReference{Name: bad.Name}}}
				if err := env.Client.Create(ctx, gp); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = env.Client.Delete(context.Background(), gp) })
			}
			if name == "template with a loop" {
				d.Push = nil
				d.PullRequest = &v1.PullRequestDelivery{Body: "{{ range 100000000000 }}x{{ end }}"}
				d.GitProvider = ""
			}
			s := f.session(t, ctx, fmt.Sprintf("case-%d", i), d)
			var other *v1.AgentSession
			if tc.otherOwner {
				other = &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "victim", Namespace: "other-team", UID: "victim-uid"}}
			}
			stored := tc.patch
			if tc.tamper {
				// Someone with write access to the bucket swaps the archived patch for one
				// that also adds a CI workflow. Done before status records the session as
				// finished: once it does, delivery may already have read the genuine patch.
				stored = append(append([]byte{}, tc.patch...), []byte("diff --git a/.github/workflows/x.yml b/.github/workflows/x.yml\n")...)
			}
			f.finishStoring(t, ctx, s, tc.phase, tc.patch, stored, other)
			pushes := f.git.Pushes
			_, cond := waitDelivered(t, ctx, s)
			if cond.Status != tc.wantStatus || cond.Reason != tc.wantReason || !strings.Contains(cond.Message, tc.wantMsg) {
				t.Fatalf("Delivered = %s/%s: %q; want %s/%s containing %q", cond.Status, cond.Reason, cond.Message, tc.wantStatus, tc.wantReason, tc.wantMsg)
			}
			if f.git.Pushes != pushes {
				t.Fatalf("a failed delivery pushed")
			}
		})
	}
}

// TestDeliveryOpensAPullRequestOnGitea delivers to a real Gitea: the branch is pushed, the
// pull request opened with the rendered body, a repeated attempt (a manager restarted before
// it recorded the outcome) changes nothing, and a base that changed the same lines ends
// Delivered=False/Conflict.
func TestDeliveryOpensAPullRequestOnGitea(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	f := startDelivery(t, ctx)
	forgeSrv, err := giteaserver.Start(ctx, giteaserver.Binary(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = forgeSrv.Stop() })
	repoURL, err := forgeSrv.CreateRepo(ctx, "", "svc", map[string]string{"calc.go": "package app\n\nfunc Add(a, b int) int { return a - b }\n"}, "main")
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gitea-" + f.ns, Namespace: operatorNS},
		Data: map[string][]byte{"token": []byte(forgeSrv.AdminToken)}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	provider := &v1.GitProvider{ObjectMeta: metav1.ObjectMeta{Name: "gitea-" + f.ns},
		Spec: v1.GitProviderSpec{Type: v1.GitProviderGitea, URL: forgeSrv.URL, AllowPlainHTTP: true, SecretRef: v1.SecretReference{Name: secret.Name}}}
	if err := env.Client.Create(ctx, provider); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), provider) })

	// The agent's change, made by the runner's differ on a clone.
	ws := filepath.Join(t.TempDir(), "ws")
	if _, err := forgeSrv.Git(ctx, filepath.Dir(ws), "clone", "-q", repoURL, ws); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "calc.go"), []byte("package app\n\nfunc Add(a, b int) int { return a + b }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(ws)
	if err != nil {
		t.Fatal(err)
	}
	p, err := repo.Diff()
	if err != nil {
		t.Fatal(err)
	}

	s := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "pr", Namespace: f.ns},
		Spec: v1.AgentSessionSpec{Task: "Fix Add.", Repository: v1.RepositorySpec{URL: repoURL, Ref: "main"},
			Delivery: &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{Body: "{{ .Summary }}\n\n{{ .FilesChanged }} file, {{ .Tokens }} tokens"}}}}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	f.finish(t, ctx, s, v1.PhaseSucceeded, p.Text, nil)
	got, cond := waitDelivered(t, ctx, s)
	if cond.Status != metav1.ConditionTrue || cond.Reason != v1.ReasonDelivered || !strings.Contains(cond.Message, "opened pull request #1") {
		t.Fatalf("Delivered = %s/%s: %s", cond.Status, cond.Reason, cond.Message)
	}
	d := got.Status.Delivery
	var pr struct {
		Number int64
		Title  string
		Body   string
		Head   struct{ Ref, Sha string }
		Base   struct{ Ref string }
	}
	if err := forgeSrv.API(ctx, "GET", fmt.Sprintf("/api/v1/repos/%s/svc/pulls/%d", forgeSrv.AdminUser, d.PullRequestNumber), nil, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Title != "Fix Add" || pr.Body != "Fix Add\n\nAdd subtracted; it adds now.\n\n1 file, 1234 tokens" ||
		pr.Head.Ref != "agentry/pr" || pr.Head.Sha != d.CommitSHA || pr.Base.Ref != "main" || !strings.HasSuffix(d.PullRequestURL, "/svc/pulls/1") {
		t.Fatalf("pull request = %+v; status.delivery = %+v", pr, d)
	}

	// A manager that pushed and opened the pull request but died before recording it tries
	// again: same commit, same pull request, nothing new on the forge.
	r := &DeliveryReconciler{Client: env.Client, APIReader: env.Client, Artifacts: f.store, OperatorNamespace: operatorNS}
	again := r.deliver(ctx, got)
	if again.status != metav1.ConditionTrue || again.result.CommitSHA != d.CommitSHA || again.result.PullRequestNumber != d.PullRequestNumber ||
		!strings.Contains(again.message, "updated pull request #1") {
		t.Fatalf("repeated delivery = %+v", again)
	}
	var all []struct{ Number int64 }
	if err := forgeSrv.API(ctx, "GET", fmt.Sprintf("/api/v1/repos/%s/svc/pulls?state=all", forgeSrv.AdminUser), nil, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Fatalf("%d pull requests after a repeated delivery, want 1", len(all))
	}

	// Someone fixes the same line differently on main: the next session's identical change
	// conflicts with the base and nothing is pushed.
	up := filepath.Join(t.TempDir(), "up")
	if _, err := forgeSrv.Git(ctx, filepath.Dir(up), "clone", "-q", repoURL, up); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(up, "calc.go"), []byte("package app\n\nfunc Add(a, b int) int { return b + a }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-c", "user.name=p", "-c", "user.email=p@example.com", "commit", "-qam", "fix differently"}, {"push", "-q", "origin", "main"}} {
		if out, err := forgeSrv.Git(ctx, up, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	late := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: f.ns},
		Spec: v1.AgentSessionSpec{Task: "Fix Add.", Repository: v1.RepositorySpec{URL: repoURL, Ref: "main"},
			Delivery: &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{}}}}
	if err := env.Client.Create(ctx, late); err != nil {
		t.Fatal(err)
	}
	f.finish(t, ctx, late, v1.PhaseSucceeded, p.Text, nil)
	_, cond = waitDelivered(t, ctx, late)
	if cond.Status != metav1.ConditionFalse || cond.Reason != v1.ReasonConflict || !strings.Contains(cond.Message, "calc.go") {
		t.Fatalf("Delivered = %s/%s: %s; want False/Conflict naming calc.go", cond.Status, cond.Reason, cond.Message)
	}
	if out, _ := forgeSrv.Git(ctx, up, "ls-remote", "origin", "agentry/late"); strings.TrimSpace(out) != "" {
		t.Fatalf("a conflicting delivery pushed agentry/late: %s", out)
	}

	// A protected branch: Gitea's pre-receive hook refuses the push.
	if err := forgeSrv.API(ctx, "POST", fmt.Sprintf("/api/v1/repos/%s/svc/branch_protections", forgeSrv.AdminUser),
		map[string]any{"rule_name": "release/*", "enable_push": false}, nil); err != nil {
		t.Fatal(err)
	}
	ws2 := filepath.Join(t.TempDir(), "ws2")
	if _, err := forgeSrv.Git(ctx, filepath.Dir(ws2), "clone", "-q", repoURL, ws2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws2, "NOTES.md"), []byte("notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo2, err := gitrepo.Open(ws2)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := repo2.Diff()
	if err != nil {
		t.Fatal(err)
	}
	locked := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "locked", Namespace: f.ns},
		Spec: v1.AgentSessionSpec{Task: "Add notes.", Repository: v1.RepositorySpec{URL: repoURL, Ref: "main"},
			Delivery: &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{Branch: "release/notes"}}}}
	if err := env.Client.Create(ctx, locked); err != nil {
		t.Fatal(err)
	}
	f.finish(t, ctx, locked, v1.PhaseSucceeded, p2.Text, nil)
	_, cond = waitDelivered(t, ctx, locked)
	if cond.Status != metav1.ConditionFalse || cond.Reason != v1.ReasonPushRejected {
		t.Fatalf("Delivered = %s/%s: %s; want False/PushRejected", cond.Status, cond.Reason, cond.Message)
	}
}

// TestForgeFailuresAreClassified: what a forge answers decides retry or final reason.
func TestForgeFailuresAreClassified(t *testing.T) {
	cases := map[string]struct {
		err        error
		wantStatus metav1.ConditionStatus
		wantReason string
		wantAfter  time.Duration
	}{
		"rate limited":    {&forge.Error{Reason: v1.ReasonRateLimited, Retryable: true, RetryAfter: 42 * time.Second, Err: errors.New("403")}, metav1.ConditionUnknown, v1.ReasonDelivering, 42 * time.Second},
		"server error":    {&forge.Error{Reason: v1.ReasonForgeError, Retryable: true, Err: errors.New("502")}, metav1.ConditionUnknown, v1.ReasonDelivering, 0},
		"bad credential":  {&forge.Error{Reason: v1.ReasonAuthFailed, Err: errors.New("401")}, metav1.ConditionFalse, v1.ReasonAuthFailed, 0},
		"not found":       {&forge.Error{Reason: "NotFound", Err: errors.New("404")}, metav1.ConditionFalse, v1.ReasonForgeError, 0},
		"network failure": {fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), metav1.ConditionUnknown, v1.ReasonDelivering, 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := forgeFailure(tc.err)
			if o.status != tc.wantStatus || o.reason != tc.wantReason || o.retryAfter != tc.wantAfter {
				t.Fatalf("outcome = %s/%s after %s, want %s/%s after %s", o.status, o.reason, o.retryAfter, tc.wantStatus, tc.wantReason, tc.wantAfter)
			}
		})
	}
	if got := retryDelay(1); got != 15*time.Second {
		t.Errorf("first retry after %s", got)
	}
	if got := retryDelay(10); got != 5*time.Minute {
		t.Errorf("retry delay is not capped: %s", got)
	}
}

// TestDeliveryPushesOverSSH delivers through a type Git provider over SSH: the key in the
// provider's Secret, the host checked against its known_hosts (a server with another host
// key is refused, nothing pushed).
func TestDeliveryPushesOverSSH(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	f := startDelivery(t, ctx)
	sshSrv := f.git.StartSSH(t)
	repoURL := "ssh://git@" + sshSrv.Addr + "/app.git"

	provider := func(name string, knownHosts []byte) {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNS},
			Data: map[string][]byte{"ssh-privatekey": sshSrv.ClientKeyPEM, "known_hosts": knownHosts}}
		if err := env.Client.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		gp := &v1.GitProvider{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1.GitProviderSpec{Type: v1.GitProviderGit, URL: "ssh://" + sshSrv.Addr, SecretRef: v1.SecretReference{Name: name}}}
		if err := env.Client.Create(ctx, gp); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), gp) })
	}
	provider("ssh-"+f.ns, sshSrv.KnownHosts)
	impostor := f.git.StartSSH(t) // same port layout, another host key
	provider("ssh-wrong-host-"+f.ns, []byte(strings.Replace(string(impostor.KnownHosts), impostor.Addr[strings.LastIndex(impostor.Addr, ":")+1:], sshSrv.Addr[strings.LastIndex(sshSrv.Addr, ":")+1:], 1)))

	for _, tc := range []struct {
		name, provider string
		wantStatus     metav1.ConditionStatus
		wantReason     string
	}{
		{"over-ssh", "ssh-" + f.ns, metav1.ConditionTrue, v1.ReasonDelivered},
		{"wrong-host-key", "ssh-wrong-host-" + f.ns, metav1.ConditionFalse, v1.ReasonAuthFailed},
	} {
		s := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: f.ns},
			Spec: v1.AgentSessionSpec{Task: "Fix Add.", Repository: v1.RepositorySpec{URL: repoURL, Ref: "main"},
				Delivery: &v1.DeliverySpec{GitProvider: tc.provider, Push: &v1.PushDelivery{}}}}
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		pushes := sshSrv.Pushes()
		f.finish(t, ctx, s, v1.PhaseSucceeded, f.fixPatch(t), nil)
		var cond metav1.Condition
		eventually(t, ctx, tc.name+" attempted", func() error {
			got, err := getSession(ctx, s)
			if err != nil {
				return err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionDelivered)
			if c == nil {
				return fmt.Errorf("no Delivered condition")
			}
			cond = *c
			return nil
		})
		if cond.Status != tc.wantStatus || cond.Reason != tc.wantReason {
			t.Fatalf("%s: Delivered = %s/%s: %s", tc.name, cond.Status, cond.Reason, cond.Message)
		}
		if tc.wantStatus == metav1.ConditionTrue {
			if heads := gitserver.Git(t, t.TempDir(), "ls-remote", f.repoURL, "refs/heads/agentry/"+tc.name); heads == "" {
				t.Fatalf("agentry/%s was not pushed", tc.name)
			}
		} else if !strings.Contains(cond.Message, "SSH key is not the one in the GitProvider's known_hosts") {
			t.Fatalf("a host with another key: %q, want the host key refused", cond.Message)
		} else if sshSrv.Pushes() != pushes {
			t.Fatalf("pushed to a host whose key does not match")
		}
	}
}
