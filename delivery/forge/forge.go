// Package forge opens and updates pull requests on a git host's API (GitHub, GitHub
// Enterprise Server, Gitea and Forgejo) and supplies the credential that pushes the branch
// beforehand. The manager is its only user; runner pods never hold these credentials.
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// Repo identifies a repository on a forge.
type Repo struct {
	Owner, Name string
}

func (r Repo) String() string { return r.Owner + "/" + r.Name }

// repoSegment is what GitHub and Gitea allow in an owner or repository name. Anything else
// (a "..", a "%2F") would land in an API path.
var repoSegment = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ParseRepo takes a repository's clone URL, https://host/owner/name or .../name.git, and
// the provider's web URL, and returns the repository, or an error when the URL is not on
// the provider's host (scheme, host and port) or not an owner/name path below it.
func ParseRepo(providerURL, repoURL string) (Repo, error) {
	p, err := url.Parse(providerURL)
	if err != nil {
		return Repo{}, fmt.Errorf("provider url: %w", err)
	}
	r, err := url.Parse(repoURL)
	if err != nil {
		return Repo{}, fmt.Errorf("repository url: %w", err)
	}
	if !strings.EqualFold(p.Scheme, r.Scheme) || !strings.EqualFold(hostPort(p), hostPort(r)) {
		return Repo{}, fmt.Errorf("repository %s is not on %s", r.Redacted(), p.Redacted())
	}
	prefix := strings.TrimSuffix(p.Path, "/") + "/"
	if !strings.HasPrefix(r.Path, prefix) {
		return Repo{}, fmt.Errorf("repository %s is not below %s", r.Redacted(), p.Redacted())
	}
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(r.Path, prefix), "/"), "/")
	if len(parts) != 2 {
		return Repo{}, fmt.Errorf("repository url %s is not <host>/<owner>/<name>", r.Redacted())
	}
	repo := Repo{Owner: parts[0], Name: strings.TrimSuffix(parts[1], ".git")}
	for _, s := range []string{repo.Owner, repo.Name} {
		if !repoSegment.MatchString(s) || s == "." || s == ".." {
			return Repo{}, fmt.Errorf("repository url %s: %q is not an owner or repository name", r.Redacted(), s)
		}
	}
	return repo, nil
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return u.Host + ":443"
	case "http":
		return u.Host + ":80"
	}
	return u.Host
}

// PullRequest is what a delivery asks for: a pull request from branch Head into Base of
// the same repository.
type PullRequest struct {
	Head, Base  string
	Title, Body string
	// Draft opens the pull request as a draft. It applies when the pull request is opened;
	// an existing one keeps its state on GitHub (the REST API cannot change it). Gitea
	// marks drafts by a "WIP: " title prefix, so there the title says it on every update.
	Draft bool
	// Labels are added, never removed.
	Labels []string
}

// PullRequestResult is the pull request that now exists.
type PullRequestResult struct {
	URL    string
	Number int64
	// Created says the call opened it; false means an open one was updated.
	Created bool
}

// Forge is one host's API.
type Forge interface {
	// PushCredentials returns HTTP basic-auth credentials for pushing to repo.
	PushCredentials(ctx context.Context, repo Repo) (username, password string, err error)
	// EnsurePullRequest opens a pull request from Head into Base, or, when an open one
	// from Head into Base exists, updates its title and body and adds the labels. Calling
	// it again never opens a second one.
	EnsurePullRequest(ctx context.Context, repo Repo, pr PullRequest) (PullRequestResult, error)
}

// Reasons of an *Error. Those the Delivered condition reports are the API's constants.
const (
	// ReasonAuthFailed: the credential was refused (401, or 403 that is no rate limit).
	ReasonAuthFailed = v1.ReasonAuthFailed
	// ReasonRateLimited: the host asked to wait; RetryAfter says how long when it said.
	ReasonRateLimited = v1.ReasonRateLimited
	// ReasonNotFound: the repository (or, for a GitHub App, its installation) does not
	// exist or is invisible to the credential.
	ReasonNotFound = "NotFound"
	// ReasonForgeError: anything else; Retryable for 5xx and transport failures.
	ReasonForgeError = v1.ReasonForgeError
)

// Error is a failed forge call, classified for the caller's retry decision. Its message
// never contains the credential.
type Error struct {
	Reason     string
	Retryable  bool
	RetryAfter time.Duration
	Err        error

	secret string
}

func (e *Error) Error() string {
	msg := e.Reason + ": " + e.Err.Error()
	if e.secret != "" {
		// Hosts echo headers back in error bodies now and then.
		msg = strings.ReplaceAll(msg, e.secret, "[redacted]")
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// classify is the part of error classification both hosts share, by status code.
func classify(status int, retryAfter time.Duration, err error, secret string) *Error {
	e := &Error{Reason: ReasonForgeError, Err: err, secret: secret}
	switch {
	case status == 0:
		// No answer: the network, a timeout; the context's own end is not retried.
		e.Retryable = !errors.Is(err, context.Canceled)
	case status == 401 || status == 403:
		e.Reason = ReasonAuthFailed
	case status == 404:
		e.Reason = ReasonNotFound
	case status == 429:
		e.Reason, e.Retryable, e.RetryAfter = ReasonRateLimited, true, retryAfter
	case status >= 500:
		e.Retryable, e.RetryAfter = true, retryAfter
	}
	return e
}

// retryAfterHeader reads Retry-After (seconds or an HTTP date), else x-ratelimit-reset
// (Unix seconds, GitHub's), relative to now; zero when neither says.
func retryAfterHeader(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	if v := h.Get("X-Ratelimit-Reset"); v != "" {
		if unix, err := strconv.ParseInt(v, 10, 64); err == nil {
			return max(time.Unix(unix, 0).Sub(now), 0)
		}
	}
	return 0
}
