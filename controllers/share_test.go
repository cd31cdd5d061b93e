package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/contract"
)

// liveStore adds the live transcript (the segments the gateway would list) to the S3 reader.
type liveStore struct {
	s3Artifacts
	live []byte
}

func (l liveStore) ReadLiveTranscript(context.Context, string, string, types.UID) ([]byte, error) {
	return l.live, nil
}

func transcriptOf(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		ev := contract.Event{Version: contract.SchemaVersion, Seq: int64(i), Time: time.Now(), Type: contract.EventError,
			Error: &contract.ErrorInfo{Message: fmt.Sprintf("event %d", i)}}
		line, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func get(t *testing.T, url string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestShareLinksServeUntilExpiredOrRevoked(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	f := startDelivery(t, ctx) // a namespace and a real S3 holding archives
	key := []byte("0123456789abcdef0123456789abcdef")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }

	live := transcriptOf(t, 3)
	srv := &console.Server{Store: liveStore{s3Artifacts: f.store, live: live}, Key: key, Now: now,
		Viewer: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<!doctype html>viewer") })}
	web := httptest.NewServer(nil)
	t.Cleanup(web.Close)

	runManager(t, f.ns, func(mgr ctrl.Manager) error {
		srv.Client = mgr.GetClient()
		web.Config.Handler = srv.Handler()
		return (&ShareReconciler{Client: mgr.GetClient(), BaseURL: web.URL, Key: key, Now: now}).SetupWithManager(mgr)
	})

	// A running session: the page follows its live transcript.
	s := f.session(t, ctx, "shared", nil)
	s.Status.Phase = v1.PhaseRunning
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	policy := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "shares", Namespace: f.ns}, Spec: v1.AgentPolicySpec{MaxShareExpiry: &metav1.Duration{Duration: 2 * time.Hour}}}
	if err := env.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	share := &v1.AgentSessionShare{ObjectMeta: metav1.ObjectMeta{Name: "review", Namespace: f.ns},
		Spec: v1.AgentSessionShareSpec{Session: "shared", Visibility: v1.ShareLinkVisibility, ExpiresIn: &metav1.Duration{Duration: 48 * time.Hour}}}
	if err := env.Client.Create(ctx, share); err != nil {
		t.Fatal(err)
	}
	waitShare := func(reason string) *v1.AgentSessionShare {
		t.Helper()
		var got v1.AgentSessionShare
		eventually(t, ctx, "share "+reason, func() error {
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: f.ns, Name: "review"}, &got); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(got.Status.Conditions, ConditionReady); c == nil || c.Reason != reason {
				return fmt.Errorf("Ready = %+v", c)
			}
			return nil
		})
		return &got
	}
	got := waitShare(ReasonLinkReady)
	if d := got.Status.ExpiresAt.Sub(got.CreationTimestamp.Time); d != 2*time.Hour {
		t.Fatalf("expiry %s after creation, want the policy's cap of 2h", d)
	}
	link := got.Status.URL
	if !strings.HasPrefix(link, web.URL+"/s/"+f.ns+"/review/") || !strings.HasSuffix(link, "/") {
		t.Fatalf("link = %q", link)
	}

	if code, body, h := get(t, link); code != 200 || body != "<!doctype html>viewer" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("page: %d %q %v", code, body, h)
	}
	code, body, _ := get(t, link+console.PathSession)
	var view console.SessionView
	if err := json.Unmarshal([]byte(body), &view); code != 200 || err != nil || view.Name != "shared" || !view.Live || view.Task != "Fix Add." || !view.ExpiresAt.Equal(got.Status.ExpiresAt.Time) {
		t.Fatalf("session.json: %d %s (%v)", code, body, err)
	}
	code, body, h := get(t, link+console.PathEvents+"?after=1")
	if code != 200 || strings.Count(body, "\n") != 2 || !strings.Contains(body, "event 3") || h.Get(console.LastSeqHeader) != "3" {
		t.Fatalf("live events after 1: %d %q last=%s", code, body, h.Get(console.LastSeqHeader))
	}
	if code, body, _ := get(t, link+console.PathTranscript); code != 404 || !strings.Contains(body, "Not archived yet") {
		t.Fatalf("transcript of a running session: %d %q", code, body)
	}

	// It finishes and is archived: the link serves the archive.
	archived := transcriptOf(t, 5)
	f.finish(t, ctx, s, v1.PhaseSucceeded, []byte("diff --git a/x b/x\n"), nil)
	key2 := fmt.Sprintf("sessions/%s/shared/%s/transcript.jsonl", f.ns, s.UID)
	if _, err := f.store.c.PutObject(ctx, "agentry", key2, bytes.NewReader(archived), int64(len(archived)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	s, _ = getSession(ctx, s)
	s.Status.Transcript = &v1.ArtifactRef{URI: "s3://agentry/" + key2}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the archived transcript through the link", func() error {
		if code, body, _ := get(t, link+console.PathTranscript); code != 200 || body != string(archived) {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	if code, body, _ := get(t, link+console.PathPatch); code != 200 || body != "diff --git a/x b/x\n" {
		t.Fatalf("patch: %d %q", code, body)
	}

	// A forged or altered token gets nothing.
	forged := strings.Replace(link, "/review/", "/review/x", 1)
	if code, body, _ := get(t, forged+console.PathTranscript); code != 404 || strings.Contains(body, "event") {
		t.Fatalf("forged token: %d %q", code, body)
	}

	// Expired: a clear page, never data, and the share says so.
	clock.Store(got.Status.ExpiresAt.Add(time.Second).UnixNano())
	for _, p := range []string{"", console.PathSession, console.PathEvents, console.PathTranscript, console.PathPatch} {
		code, body, _ := get(t, link+p)
		if code != http.StatusGone || !strings.Contains(body, "This link has expired") || strings.Contains(body, "event 1") || strings.Contains(body, "Fix Add") {
			t.Fatalf("expired %q: %d %q", p, code, body)
		}
	}
	got.Annotations = map[string]string{"poke": "1"}
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	expired := waitShare(ReasonLinkExpired)
	if expired.Status.URL != "" {
		t.Fatalf("an expired share still shows its URL")
	}

	// Revoked: deleting the share ends the link at once.
	clock.Store(time.Now().UnixNano())
	if err := env.Client.Delete(ctx, expired); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the revoked link refused", func() error {
		if code, body, _ := get(t, link+console.PathTranscript); code != 404 || !strings.Contains(body, "revoked") {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}

func TestPrivateShareNeedsAnIdentityThatMayGetIt(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	f := startDelivery(t, ctx)
	key := []byte("fedcba9876543210fedcba9876543210")
	srv := &console.Server{Client: env.Client, Store: liveStore{s3Artifacts: f.store}, Key: key}
	web := httptest.NewServer(srv.Handler())
	t.Cleanup(web.Close)
	s := f.session(t, ctx, "private", nil)
	f.finish(t, ctx, s, v1.PhaseSucceeded, []byte("diff --git a/y b/y\n"), nil)
	share := &v1.AgentSessionShare{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: f.ns}, Spec: v1.AgentSessionShareSpec{Session: "private"}}
	if err := env.Client.Create(ctx, share); err != nil {
		t.Fatal(err)
	}
	r := &ShareReconciler{Client: env.Client, BaseURL: web.URL, Key: key}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: f.ns, Name: "mine"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: f.ns, Name: "mine"}, share); err != nil {
		t.Fatal(err)
	}
	if share.Spec.Visibility != v1.SharePrivate {
		t.Fatalf("default visibility = %q, want Private", share.Spec.Visibility)
	}
	link := share.Status.URL + console.PathPatch

	kube := kubernetes.NewForConfigOrDie(env.Config)
	token := func(sa string) string {
		t.Helper()
		if _, err := kube.CoreV1().ServiceAccounts(f.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := kube.CoreV1().ServiceAccounts(f.ns).CreateToken(ctx, sa, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reader, stranger := token("reader"), token("stranger")
	if _, err := kube.RbacV1().Roles(f.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "share-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"agentry.dev"}, Resources: []string{"agentsessionshares"}, Verbs: []string{"get"}, ResourceNames: []string{"mine"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().RoleBindings(f.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "share-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "share-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: f.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if code, body, _ := get(t, link); code != 403 || strings.Contains(body, "diff --git") {
		t.Fatalf("private link without identity: %d %q", code, body)
	}
	if code, body, _ := get(t, link, "Authorization", "Bearer "+stranger); code != 403 || !strings.Contains(body, "may not get this share") {
		t.Fatalf("private link for someone without RBAC: %d %q", code, body)
	}
	if code, body, _ := get(t, link, "Authorization", "Bearer not-a-token"); code != 403 || strings.Contains(body, "diff --git") {
		t.Fatalf("private link with a bad token: %d %q", code, body)
	}
	eventually(t, ctx, "the reader's RBAC", func() error {
		if code, body, _ := get(t, link, "Authorization", "Bearer "+reader); code != 200 || body != "diff --git a/y b/y\n" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}
