package notify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/notify"
)

var at = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func finished() notify.Event {
	return notify.Event{Kind: notify.KindFinished, Session: notify.Session{
		Namespace: "team", Name: "fix", UID: "0b9c4f3e-uid",
		Phase: "Succeeded", Reason: "Completed", Message: "The agent finished.",
		Summary: "Fixed the flaky test.", Repository: "https://git.example.com/acme/app.git",
		TotalTokens: 12345, FilesChanged: 3, Additions: 10, Deletions: 2,
		PullRequestURL: "https://git.example.com/acme/app/pulls/7", Branch: "agentry/fix",
		TranscriptURI: "s3://transcripts/team/fix.jsonl", Time: at,
	}}
}

func waiting() notify.Event {
	e := finished()
	e.Kind = notify.KindWaitingForApproval
	e.Session.Phase, e.Session.Reason, e.Session.PullRequestURL = "WaitingForApproval", "", ""
	e.Session.Approval = &notify.Approval{ID: "ap-1", Tool: "bash", Summary: "go test ./... && rm -rf /tmp/x",
		Digest: "sha256:abc", ExpiresAt: at.Add(time.Hour)}
	return e
}

// verifySignature is how docs/notifications.md tells a receiver to check a request: the
// HMAC-SHA256 of the raw body with the shared secret, compared in constant time with the
// hex after "sha256=" in X-Agentry-Signature.
func verifySignature(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

// receiver is a webhook endpoint that verifies signatures as the docs say and keeps what it
// accepted.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !verifySignature(rc.secret, body, r.Header.Get("X-Agentry-Signature")) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.bodies = append(rc.bodies, body)
	rc.heads = append(rc.heads, r.Header.Clone())
	w.WriteHeader(http.StatusAccepted)
}

func TestWebhookSendsSignedCloudEvent(t *testing.T) {
	secret := []byte("s3cr3t-signing-key")
	rc := &receiver{secret: secret}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	for _, e := range []notify.Event{finished(), waiting()} {
		if err := (notify.Webhook{URL: srv.URL + "/hooks/agentry", Secret: secret}).Send(context.Background(), e); err != nil {
			t.Fatalf("Send %s: %v", e.Kind, err)
		}
	}
	if len(rc.bodies) != 2 {
		t.Fatalf("receiver accepted %d requests, want 2", len(rc.bodies))
	}
	wantTypes := []string{"dev.agentry.session.finished.v1", "dev.agentry.session.waitingforapproval.v1"}
	wantIDs := []string{"0b9c4f3e-uid/Finished", "0b9c4f3e-uid/WaitingForApproval/ap-1"}
	wantData := []notify.Session{finished().Session, waiting().Session}
	for i, body := range rc.bodies {
		if ct := rc.heads[i].Get("Content-Type"); ct != "application/cloudevents+json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var ev struct {
			SpecVersion     string          `json:"specversion"`
			ID              string          `json:"id"`
			Source          string          `json:"source"`
			Type            string          `json:"type"`
			Subject         string          `json:"subject"`
			Time            string          `json:"time"`
			DataContentType string          `json:"datacontenttype"`
			Data            json.RawMessage `json:"data"`
		}
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("decoding %s: %v", body, err)
		}
		attrs := []string{ev.SpecVersion, ev.ID, ev.Source, ev.Type, ev.Subject, ev.Time, ev.DataContentType}
		want := []string{"1.0", wantIDs[i], "agentry.dev/namespaces/team/agentsessions/fix", wantTypes[i], "team/fix",
			"2025-03-04T05:06:07Z", "application/json"}
		if d := cmp.Diff(want, attrs); d != "" {
			t.Errorf("attributes (-want +got):\n%s", d)
		}
		var data notify.Session
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(wantData[i], data); d != "" {
			t.Errorf("data (-want +got):\n%s", d)
		}
	}
	// The field names are the documented contract, not whatever Go makes of the struct.
	for _, key := range []string{`"namespace":"team"`, `"totalTokens":12345`, `"filesChanged":3`, `"pullRequestURL":`,
		`"transcriptURI":`, `"time":"2025-03-04T05:06:07Z"`} {
		if !strings.Contains(string(rc.bodies[0]), key) {
			t.Errorf("data lacks %s: %s", key, rc.bodies[0])
		}
	}
	if !strings.Contains(string(rc.bodies[1]), `"approval":{"id":"ap-1","tool":"bash","summary":"go test ./... \u0026\u0026 rm -rf /tmp/x","digest":"sha256:abc","expiresAt":"2025-03-04T06:06:07Z"}`) {
		t.Errorf("approval data: %s", rc.bodies[1])
	}
}

// A request whose body was changed after signing, or signed with another secret, fails the
// verification the docs describe.
func TestWebhookSignatureCoversBody(t *testing.T) {
	secret := []byte("s3cr3t-signing-key")
	var body []byte
	var sig string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		sig = r.Header.Get("X-Agentry-Signature")
	}))
	defer srv.Close()
	if err := (notify.Webhook{URL: srv.URL, Secret: secret}).Send(context.Background(), finished()); err != nil {
		t.Fatal(err)
	}
	if !verifySignature(secret, body, sig) {
		t.Fatalf("genuine request fails verification: %s", sig)
	}
	forged := []byte(strings.Replace(string(body), `"phase":"Succeeded"`, `"phase":"Failed"`, 1))
	if string(forged) == string(body) {
		t.Fatal("forgery did not change the body")
	}
	if verifySignature(secret, forged, sig) {
		t.Error("a changed body passes verification with the original signature")
	}
	if verifySignature([]byte("another-secret"), body, sig) {
		t.Error("verification passes with another secret")
	}

	// Without a secret there is no signature header at all.
	var hdr http.Header
	unsigned := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hdr = r.Header.Clone() }))
	defer unsigned.Close()
	if err := (notify.Webhook{URL: unsigned.URL}).Send(context.Background(), finished()); err != nil {
		t.Fatal(err)
	}
	if v, ok := hdr["X-Agentry-Signature"]; ok {
		t.Errorf("unsigned webhook sent X-Agentry-Signature %q", v)
	}
}

// A receiver that answers with a redirect does not get the signed body sent on elsewhere.
func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	elsewhere := make(chan struct{}, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere <- struct{}{} }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()

	n, err := notify.Deliver(context.Background(), notify.Webhook{URL: srv.URL, Secret: []byte("k")}, finished(), fastBackoff)
	var se *notify.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTemporaryRedirect || n != 1 {
		t.Fatalf("Deliver = %d, %v; want one attempt and a 307 StatusError", n, err)
	}
	select {
	case <-elsewhere:
		t.Error("the request followed the redirect")
	default:
	}
}

// However long the summary, the request stays small.
func TestWebhookBodyIsBounded(t *testing.T) {
	var size int
	var data notify.Session
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		size = len(body)
		var ev struct{ Data notify.Session }
		_ = json.Unmarshal(body, &ev)
		data = ev.Data
	}))
	defer srv.Close()
	e := waiting()
	e.Session.Summary = strings.Repeat("é", 1<<20)
	e.Session.Message = strings.Repeat("m", 1<<20)
	e.Session.Approval.Summary = strings.Repeat("x", 1<<20)
	if err := (notify.Webhook{URL: srv.URL}).Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if size > 16<<10 {
		t.Errorf("body is %d bytes, want at most 16 KiB", size)
	}
	if !strings.HasSuffix(data.Summary, "é…") || !strings.HasPrefix(data.Summary, "éé") {
		t.Errorf("summary not cut at a character boundary with an ellipsis: ...%q", data.Summary[len(data.Summary)-8:])
	}
}
