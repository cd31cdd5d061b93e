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
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v75/github"
)

// GitHubConfig configures github.com or GitHub Enterprise Server access: a token, or a
// GitHub App (AppID and PrivateKeyPEM) that mints a token per repository.
type GitHubConfig struct {
	// APIURL is the REST API root: "" for https://api.github.com/, <url>/api/v3/ for
	// GitHub Enterprise Server. Used as given.
	APIURL string
	// Token is a personal access token (classic or fine-grained) or any bearer token.
	Token string
	// AppID and PrivateKeyPEM (PKCS#1 as GitHub issues it, or PKCS#8) authenticate as a
	// GitHub App. InstallationID 0 looks the installation up per repository.
	AppID, InstallationID int64
	PrivateKeyPEM         []byte
	// HTTPClient defaults to http.DefaultClient.
	HTTPClient *http.Client
	// Now defaults to time.Now; the App's JWT and token expiry are computed from it.
	Now func() time.Time
}

// NewGitHub returns the GitHub forge for cfg.
func NewGitHub(cfg GitHubConfig) (Forge, error) {
	g := &gitHub{cfg: cfg, tokens: map[Repo]installationToken{}}
	if g.cfg.Now == nil {
		g.cfg.Now = time.Now
	}
	switch {
	case cfg.Token != "" && (cfg.AppID != 0 || len(cfg.PrivateKeyPEM) > 0):
		return nil, errors.New("github: both a token and a GitHub App are configured")
	case cfg.Token == "" && (cfg.AppID == 0 || len(cfg.PrivateKeyPEM) == 0):
		return nil, errors.New("github: neither a token nor a GitHub App (app id and private key) is configured")
	case cfg.Token == "":
		key, err := parseRSAKey(cfg.PrivateKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("github: App private key: %w", err)
		}
		g.key = key
	}
	g.client = github.NewClient(cfg.HTTPClient)
	if cfg.APIURL != "" {
		u, err := url.Parse(cfg.APIURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("github: API URL %q is not an http(s) URL", cfg.APIURL)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		g.client.BaseURL = u
	}
	return g, nil
}

type gitHub struct {
	cfg    GitHubConfig
	client *github.Client // no credential; see authed
	key    *rsa.PrivateKey

	mu     sync.Mutex
	tokens map[Repo]installationToken
}

type installationToken struct {
	token   string
	expires time.Time
}

// GitHub's installation tokens live an hour; one is reused until this long before its end,
// so a push or API call never starts with a token about to expire.
const tokenRenewBefore = 5 * time.Minute

// authed returns a client and the token it sends for calls about repo.
func (g *gitHub) authed(ctx context.Context, repo Repo) (*github.Client, string, error) {
	if g.key == nil {
		return g.client.WithAuthToken(g.cfg.Token), g.cfg.Token, nil
	}
	tok, err := g.installationToken(ctx, repo)
	if err != nil {
		return nil, "", err
	}
	return g.client.WithAuthToken(tok), tok, nil
}

// installationToken returns a token of the App's installation limited to repo, with
// contents and pull requests write: all a delivery needs, on that repository alone.
func (g *gitHub) installationToken(ctx context.Context, repo Repo) (string, error) {
	now := g.cfg.Now()
	g.mu.Lock()
	t, ok := g.tokens[repo]
	g.mu.Unlock()
	if ok && now.Before(t.expires.Add(-tokenRenewBefore)) {
		return t.token, nil
	}
	jwt, err := g.appJWT(now)
	if err != nil {
		return "", err
	}
	app := g.client.WithAuthToken(jwt)
	id := g.cfg.InstallationID
	if id == 0 {
		inst, resp, err := app.Apps.FindRepositoryInstallation(ctx, repo.Owner, repo.Name)
		if err != nil {
			return "", g.error(fmt.Errorf("finding the GitHub App installation on %s: %w", repo, err), resp, jwt)
		}
		id = inst.GetID()
	}
	write := "write"
	it, resp, err := app.Apps.CreateInstallationToken(ctx, id, &github.InstallationTokenOptions{
		Repositories: []string{repo.Name},
		Permissions:  &github.InstallationPermissions{Contents: &write, PullRequests: &write},
	})
	if err != nil {
		return "", g.error(fmt.Errorf("creating an installation token for %s: %w", repo, err), resp, jwt)
	}
	t = installationToken{token: it.GetToken(), expires: it.GetExpiresAt().Time}
	if t.expires.IsZero() {
		t.expires = now.Add(time.Hour)
	}
	g.mu.Lock()
	g.tokens[repo] = t
	g.mu.Unlock()
	return t.token, nil
}

// appJWT signs the JSON Web Token that authenticates as the App itself (RS256; issued a
// minute in the past against clock drift, valid nine minutes, under GitHub's ten).
func (g *gitHub) appJWT(now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(9 * time.Minute).Unix(),
		"iss": strconv.FormatInt(g.cfg.AppID, 10),
	})
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, g.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("signing the GitHub App JWT: %w", err)
	}
	return signed + "." + enc.EncodeToString(sig), nil
}

func parseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("neither PKCS#1 nor PKCS#8: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA key", k)
	}
	return rk, nil
}

// PushCredentials is x-access-token and the token, the form GitHub documents for App
// installation tokens; personal tokens are accepted in it too.
func (g *gitHub) PushCredentials(ctx context.Context, repo Repo) (string, string, error) {
	_, tok, err := g.authed(ctx, repo)
	if err != nil {
		return "", "", err
	}
	return "x-access-token", tok, nil
}

func (g *gitHub) EnsurePullRequest(ctx context.Context, repo Repo, pr PullRequest) (PullRequestResult, error) {
	c, tok, err := g.authed(ctx, repo)
	if err != nil {
		return PullRequestResult{}, err
	}
	existing, err := g.findOpen(ctx, c, tok, repo, pr)
	if err != nil {
		return PullRequestResult{}, err
	}
	var res PullRequestResult
	if existing == nil {
		created, resp, err := c.PullRequests.Create(ctx, repo.Owner, repo.Name, &github.NewPullRequest{
			Title: &pr.Title, Head: &pr.Head, Base: &pr.Base, Body: &pr.Body, Draft: &pr.Draft,
		})
		switch {
		case err == nil:
			existing, res.Created = created, true
		case resp != nil && resp.StatusCode == http.StatusUnprocessableEntity:
			// Possibly opened by a concurrent attempt since the lookup: update that one.
			if existing, _ = g.findOpen(ctx, c, tok, repo, pr); existing == nil {
				return PullRequestResult{}, g.error(fmt.Errorf("opening a pull request %s -> %s on %s: %w", pr.Head, pr.Base, repo, err), resp, tok)
			}
		default:
			return PullRequestResult{}, g.error(fmt.Errorf("opening a pull request %s -> %s on %s: %w", pr.Head, pr.Base, repo, err), resp, tok)
		}
	}
	if !res.Created {
		edited, resp, err := c.PullRequests.Edit(ctx, repo.Owner, repo.Name, existing.GetNumber(), &github.PullRequest{Title: &pr.Title, Body: &pr.Body})
		if err != nil {
			return PullRequestResult{}, g.error(fmt.Errorf("updating pull request #%d on %s: %w", existing.GetNumber(), repo, err), resp, tok)
		}
		existing = edited
	}
	res.URL, res.Number = existing.GetHTMLURL(), int64(existing.GetNumber())
	if len(pr.Labels) > 0 {
		if _, resp, err := c.Issues.AddLabelsToIssue(ctx, repo.Owner, repo.Name, existing.GetNumber(), pr.Labels); err != nil {
			return res, g.error(fmt.Errorf("adding labels to pull request #%d on %s: %w", existing.GetNumber(), repo, err), resp, tok)
		}
	}
	return res, nil
}

// findOpen returns the open pull request from pr.Head into pr.Base, or nil.
func (g *gitHub) findOpen(ctx context.Context, c *github.Client, tok string, repo Repo, pr PullRequest) (*github.PullRequest, error) {
	list, resp, err := c.PullRequests.List(ctx, repo.Owner, repo.Name, &github.PullRequestListOptions{
		State: "open", Head: repo.Owner + ":" + pr.Head, Base: pr.Base,
	})
	if err != nil {
		return nil, g.error(fmt.Errorf("listing pull requests of %s: %w", repo, err), resp, tok)
	}
	for _, p := range list {
		if p.GetHead().GetRef() == pr.Head && p.GetBase().GetRef() == pr.Base {
			return p, nil
		}
	}
	return nil, nil
}

// error classifies a go-github error. GitHub reports its primary rate limit as 403 with
// x-ratelimit-remaining 0 and secondary limits as 403 or 429, so those come before the
// status codes.
func (g *gitHub) error(err error, resp *github.Response, secret string) error {
	now := g.cfg.Now()
	var rle *github.RateLimitError
	if errors.As(err, &rle) {
		return &Error{Reason: ReasonRateLimited, Retryable: true, RetryAfter: max(rle.Rate.Reset.Sub(now), 0), Err: err, secret: secret}
	}
	var arle *github.AbuseRateLimitError
	if errors.As(err, &arle) {
		e := &Error{Reason: ReasonRateLimited, Retryable: true, Err: err, secret: secret}
		if arle.RetryAfter != nil {
			e.RetryAfter = *arle.RetryAfter
		}
		return e
	}
	var accepted *github.AcceptedError
	if errors.As(err, &accepted) {
		return &Error{Reason: ReasonForgeError, Retryable: true, Err: err, secret: secret}
	}
	if resp == nil || resp.Response == nil {
		return classify(0, 0, err, secret)
	}
	if resp.StatusCode == http.StatusForbidden && resp.Header.Get("Retry-After") != "" {
		return &Error{Reason: ReasonRateLimited, Retryable: true, RetryAfter: retryAfterHeader(resp.Header, now), Err: err, secret: secret}
	}
	return classify(resp.StatusCode, retryAfterHeader(resp.Header, now), err, secret)
}
