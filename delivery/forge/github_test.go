// The GitHub tests run against an httptest server that checks each request as GitHub's
// REST API documentation describes it: "REST API endpoints for pull requests" (List pull
// requests, Create a pull request, Update a pull request), "REST API endpoints for labels"
// (Add labels to an issue), "REST API endpoints for GitHub Apps" (Get a repository
// installation for the authenticated app, Create an installation access token for an app),
// "Generating a JSON Web Token (JWT) for a GitHub App", "Authenticating as a GitHub App
// installation", "Getting started with the REST API" (the Accept and X-GitHub-Api-Version
// headers) and "Rate limits for the REST API" (x-ratelimit-remaining, x-ratelimit-reset,
// retry-after).
package forge

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeGitHub is the part of GitHub's REST API a delivery uses, served under /api/v3 as
// GitHub Enterprise Server does. Every request must carry the headers GitHub documents and
// the bearer token wantToken returns.
type fakeGitHub struct {
	t         *testing.T
	srv       *httptest.Server
	appKey    *rsa.PublicKey // the App flow when set
	appID     int64
	now       time.Time
	instToken string

	mu      sync.Mutex
	calls   []string
	pulls   []map[string]any // as GitHub returns them
	labels  map[int][]string
	tokenRq []map[string]any // installation token request bodies
	// fail, when set, answers every request.
	fail func(w http.ResponseWriter, r *http.Request)
}

const ghToken = "ghp_personal0123456789"

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{t: t, labels: map[int][]string{}, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) forge(t *testing.T, cfg GitHubConfig) Forge {
	t.Helper()
	cfg.APIURL = f.srv.URL + "/api/v3/"
	cfg.Now = func() time.Time { return f.now }
	fg, err := NewGitHub(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fg
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/api/v3")
	f.calls = append(f.calls, r.Method+" "+path)
	if f.fail != nil {
		f.fail(w, r)
		return
	}
	if got := r.Header.Get("Accept"); got != "application/vnd.github.v3+json" {
		f.t.Errorf("%s %s: Accept = %q, want application/vnd.github.v3+json", r.Method, path, got)
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		f.t.Errorf("%s %s: X-GitHub-Api-Version = %q, want 2022-11-28", r.Method, path, got)
	}
	auth := r.Header.Get("Authorization")
	var raw any
	if r.Body != nil && r.ContentLength != 0 {
		if got := r.Header.Get("Content-Type"); got != "application/json" {
			f.t.Errorf("%s %s: Content-Type = %q", r.Method, path, got)
		}
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			f.t.Errorf("%s %s: body: %v", r.Method, path, err)
		}
	}
	in, _ := raw.(map[string]any)
	if strings.HasPrefix(path, "/app/") || strings.HasSuffix(path, "/installation") {
		f.checkJWT(strings.TrimPrefix(auth, "Bearer "))
	} else if want := "Bearer " + f.wantToken(); auth != want {
		f.t.Errorf("%s %s: Authorization = %q, want %q", r.Method, path, auth, want)
	}

	switch {
	case r.Method == http.MethodGet && path == "/repos/o/r/installation":
		writeJSON(w, 200, map[string]any{"id": 42, "app_id": f.appID})
	case r.Method == http.MethodPost && path == "/app/installations/42/access_tokens":
		f.tokenRq = append(f.tokenRq, in)
		writeJSON(w, 201, map[string]any{"token": f.instToken, "expires_at": f.now.Add(time.Hour).Format(time.RFC3339)})
	case r.Method == http.MethodGet && path == "/repos/o/r/pulls":
		q := r.URL.Query()
		var out []map[string]any
		for _, p := range f.pulls {
			if q.Get("state") == "open" && "o:"+ref(p, "head") == q.Get("head") && ref(p, "base") == q.Get("base") {
				out = append(out, p)
			}
		}
		if out == nil {
			out = []map[string]any{}
		}
		writeJSON(w, 200, out)
	case r.Method == http.MethodPost && path == "/repos/o/r/pulls":
		for _, k := range []string{"title", "head", "base", "body"} {
			if _, ok := in[k].(string); !ok {
				f.t.Errorf("create: %s = %v, want a string", k, in[k])
			}
		}
		n := len(f.pulls) + 1
		p := map[string]any{
			"number": n, "state": "open", "title": in["title"], "body": in["body"], "draft": in["draft"],
			"html_url": fmt.Sprintf("https://github.example/o/r/pull/%d", n),
			"head":     map[string]any{"ref": in["head"]}, "base": map[string]any{"ref": in["base"]},
		}
		f.pulls = append(f.pulls, p)
		writeJSON(w, 201, p)
	case r.Method == http.MethodPatch && strings.HasPrefix(path, "/repos/o/r/pulls/"):
		n, _ := strconv.Atoi(strings.TrimPrefix(path, "/repos/o/r/pulls/"))
		if n < 1 || n > len(f.pulls) {
			writeJSON(w, 404, map[string]any{"message": "Not Found"})
			return
		}
		for k, v := range in {
			f.pulls[n-1][k] = v
		}
		writeJSON(w, 200, f.pulls[n-1])
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/repos/o/r/issues/") && strings.HasSuffix(path, "/labels"):
		// The documented body is {"labels": [names]} or, as go-github sends it, [names].
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(path, "/repos/o/r/issues/"), "/labels"))
		names, ok := raw.([]any)
		if !ok {
			names, ok = in["labels"].([]any)
		}
		if !ok {
			f.t.Errorf("add labels: body %v has no label names", raw)
		}
		for _, l := range names {
			f.labels[n] = append(f.labels[n], l.(string))
		}
		writeJSON(w, 200, []map[string]any{})
	default:
		f.t.Errorf("unexpected request %s %s", r.Method, path)
		writeJSON(w, 404, map[string]any{"message": "Not Found"})
	}
}

func (f *fakeGitHub) wantToken() string {
	if f.appKey != nil {
		return f.instToken
	}
	return ghToken
}

// checkJWT verifies the App's JWT as GitHub does: RS256 under the App's public key, iss the
// App id, issued at most a minute early and valid no longer than ten minutes.
func (f *fakeGitHub) checkJWT(jwt string) {
	parts := strings.Split(jwt, ".")
	if f.appKey == nil || len(parts) != 3 {
		f.t.Errorf("App endpoint called with %q, want a JWT", jwt)
		return
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		f.t.Errorf("JWT signature: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(f.appKey, crypto.SHA256, sum[:], sig); err != nil {
		f.t.Errorf("JWT signature does not verify: %v", err)
	}
	var header map[string]any
	var claims struct {
		Iat, Exp int64
		Iss      any
	}
	for i, v := range []any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err == nil {
			err = json.Unmarshal(b, v)
		}
		if err != nil {
			f.t.Errorf("JWT part %d: %v", i, err)
		}
	}
	if header["alg"] != "RS256" || header["typ"] != "JWT" {
		f.t.Errorf("JWT header = %v, want alg RS256, typ JWT", header)
	}
	if claims.Iss != strconv.FormatInt(f.appID, 10) {
		f.t.Errorf("JWT iss = %#v, want %q", claims.Iss, strconv.FormatInt(f.appID, 10))
	}
	now := f.now.Unix()
	if claims.Iat > now || claims.Iat < now-60 || claims.Exp <= now || claims.Exp-claims.Iat > 600 {
		f.t.Errorf("JWT iat %d, exp %d: now %d, want iat in the last minute and exp at most 10 minutes later", claims.Iat, claims.Exp, now)
	}
}

func ref(p map[string]any, side string) string {
	s, _ := p[side].(map[string]any)["ref"].(string)
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeGitHub) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

var repoOR = Repo{Owner: "o", Name: "r"}

// TestGitHubOpensThenUpdates opens a pull request, then, asked again with a new body,
// updates it with PATCH and opens no second one; labels are added both times.
func TestGitHubOpensThenUpdates(t *testing.T) {
	ctx := context.Background()
	f := newFakeGitHub(t)
	fg := f.forge(t, GitHubConfig{Token: ghToken})
	pr := PullRequest{Head: "agentry/s1", Base: "main", Title: "Fix it", Body: "first", Draft: true, Labels: []string{"agentry"}}

	got, err := fg.EnsurePullRequest(ctx, repoOR, pr)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PullRequestResult{URL: "https://github.example/o/r/pull/1", Number: 1, Created: true}, got); diff != "" {
		t.Errorf("first result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"GET /repos/o/r/pulls", "POST /repos/o/r/pulls", "POST /repos/o/r/issues/1/labels"}, f.takeCalls()); diff != "" {
		t.Errorf("first calls (-want +got):\n%s", diff)
	}
	if p := f.pulls[0]; p["title"] != "Fix it" || p["body"] != "first" || p["draft"] != true || ref(p, "head") != "agentry/s1" || ref(p, "base") != "main" {
		t.Errorf("created pull request = %v", p)
	}

	pr.Body = "second"
	got, err = fg.EnsurePullRequest(ctx, repoOR, pr)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PullRequestResult{URL: "https://github.example/o/r/pull/1", Number: 1}, got); diff != "" {
		t.Errorf("second result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"GET /repos/o/r/pulls", "PATCH /repos/o/r/pulls/1", "POST /repos/o/r/issues/1/labels"}, f.takeCalls()); diff != "" {
		t.Errorf("second calls (-want +got):\n%s", diff)
	}
	if len(f.pulls) != 1 || f.pulls[0]["body"] != "second" {
		t.Errorf("pull requests = %v, want one with body second", f.pulls)
	}
	if diff := cmp.Diff(map[int][]string{1: {"agentry", "agentry"}}, f.labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}

	user, pass, err := fg.PushCredentials(ctx, repoOR)
	if err != nil || user != "x-access-token" || pass != ghToken {
		t.Errorf("PushCredentials = %q, %q, %v; want x-access-token and the token", user, pass, err)
	}
}

// TestGitHubApp authenticates as an App: a JWT finds the repository's installation and
// mints a token limited to that repository with contents and pull request write; the
// token pushes and makes the REST calls, and is reused until shortly before it expires.
func TestGitHubApp(t *testing.T) {
	ctx := context.Background()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeGitHub(t)
	f.appKey, f.appID, f.instToken = &key.PublicKey, 1234, "ghs_installation0123"
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	fg := f.forge(t, GitHubConfig{AppID: 1234, PrivateKeyPEM: keyPEM})

	user, pass, err := fg.PushCredentials(ctx, repoOR)
	if err != nil || user != "x-access-token" || pass != f.instToken {
		t.Fatalf("PushCredentials = %q, %q, %v; want x-access-token and the installation token", user, pass, err)
	}
	if _, err := fg.EnsurePullRequest(ctx, repoOR, PullRequest{Head: "agentry/s1", Base: "main", Title: "T"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /repos/o/r/installation", "POST /app/installations/42/access_tokens", "GET /repos/o/r/pulls", "POST /repos/o/r/pulls"}
	if diff := cmp.Diff(want, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	wantBody := []map[string]any{{"repositories": []any{"r"}, "permissions": map[string]any{"contents": "write", "pull_requests": "write"}}}
	if diff := cmp.Diff(wantBody, f.tokenRq); diff != "" {
		t.Errorf("installation token request (-want +got):\n%s", diff)
	}

	f.now = f.now.Add(56 * time.Minute) // within 5 minutes of expiry: a new token
	f.instToken = "ghs_installation4567"
	if _, pass, err := fg.PushCredentials(ctx, repoOR); err != nil || pass != f.instToken {
		t.Errorf("PushCredentials near expiry = %q, %v; want the new token", pass, err)
	}
	if got := f.takeCalls(); len(got) != 2 {
		t.Errorf("calls near expiry = %v, want a new installation lookup and token", got)
	}
}

// TestGitHubErrors classifies the answers GitHub documents for refused credentials, rate
// limits and its own failures; no message carries the token, even when echoed back.
func TestGitHubErrors(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		status  int
		header  map[string]string
		message string
		want    Error
	}{
		"bad credentials": {
			status: 401, message: "Bad credentials",
			want: Error{Reason: ReasonAuthFailed},
		},
		"forbidden": {
			status: 403, message: "Resource not accessible by integration",
			want: Error{Reason: ReasonAuthFailed},
		},
		"primary rate limit": {
			status: 403, message: "API rate limit exceeded",
			header: map[string]string{"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(now.Add(90*time.Second).Unix(), 10)},
			want:   Error{Reason: ReasonRateLimited, Retryable: true, RetryAfter: 90 * time.Second},
		},
		"secondary rate limit": {
			status: 403, message: "You have exceeded a secondary rate limit",
			header: map[string]string{"Retry-After": "60"},
			want:   Error{Reason: ReasonRateLimited, Retryable: true, RetryAfter: time.Minute},
		},
		"too many requests": {
			status: 429, message: "Too Many Requests",
			header: map[string]string{"Retry-After": "30"},
			want:   Error{Reason: ReasonRateLimited, Retryable: true, RetryAfter: 30 * time.Second},
		},
		"not found": {
			status: 404, message: "Not Found",
			want: Error{Reason: ReasonNotFound},
		},
		"server error": {
			status: 502, message: "Server Error",
			want: Error{Reason: ReasonForgeError, Retryable: true},
		},
		"validation failed": {
			status: 422, message: "Validation Failed",
			want: Error{Reason: ReasonForgeError},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFakeGitHub(t)
			f.now = now
			f.fail = func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				// The message echoes the credential, as a careless proxy might.
				writeJSON(w, tc.status, map[string]any{"message": tc.message + " " + r.Header.Get("Authorization")})
			}
			_, err := f.forge(t, GitHubConfig{Token: ghToken}).EnsurePullRequest(context.Background(), repoOR, PullRequest{Head: "h", Base: "main", Title: "T"})
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is no *Error", err, err)
			}
			got := Error{Reason: fe.Reason, Retryable: fe.Retryable, RetryAfter: fe.RetryAfter}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(Error{})); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
			if strings.Contains(err.Error(), ghToken) {
				t.Errorf("error message carries the token: %s", err)
			}
		})
	}
}
