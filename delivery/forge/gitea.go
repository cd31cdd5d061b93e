package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"code.gitea.io/sdk/gitea"
)

// GiteaConfig configures a Gitea or Forgejo host.
type GiteaConfig struct {
	// URL is the web root, for example https://gitea.example.com (the API is below it).
	URL string
	// Token is an access token with repository (and, for labels, issue) write scope.
	Token string
	// HTTPClient defaults to http.DefaultClient.
	HTTPClient *http.Client
}

// NewGitea returns the Gitea forge for cfg.
func NewGitea(cfg GiteaConfig) (Forge, error) {
	if cfg.URL == "" || cfg.Token == "" {
		return nil, errors.New("gitea: a URL and a token are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	return &giteaForge{cfg: cfg}, nil
}

type giteaForge struct{ cfg GiteaConfig }

// draftPrefix is how Gitea marks a pull request as a draft (one of its default
// WORK_IN_PROGRESS_PREFIXES): it has no draft flag of its own.
const draftPrefix = "WIP: "

// client returns an SDK client bound to ctx. The SDK keeps the context per client, so
// each call gets its own; its server-version probe is skipped (an extra round trip, and
// Forgejo's and development builds' versions do not parse).
func (f *giteaForge) client(ctx context.Context) (*gitea.Client, error) {
	c, err := gitea.NewClient(f.cfg.URL, gitea.SetToken(f.cfg.Token), gitea.SetHTTPClient(f.cfg.HTTPClient),
		gitea.SetContext(ctx), gitea.SetGiteaVersion(""))
	if err != nil {
		return nil, fmt.Errorf("gitea client for %s: %w", f.cfg.URL, err)
	}
	return c, nil
}

// PushCredentials is the token's owner and the token, as Gitea's documentation has it for
// git over HTTP. Looking the owner up also checks the token before anything is pushed.
func (f *giteaForge) PushCredentials(ctx context.Context, repo Repo) (string, string, error) {
	c, err := f.client(ctx)
	if err != nil {
		return "", "", err
	}
	u, resp, err := c.GetMyUserInfo()
	if err != nil {
		return "", "", f.error(fmt.Errorf("looking up the token's user: %w", err), resp)
	}
	return u.UserName, f.cfg.Token, nil
}

func (f *giteaForge) EnsurePullRequest(ctx context.Context, repo Repo, pr PullRequest) (PullRequestResult, error) {
	c, err := f.client(ctx)
	if err != nil {
		return PullRequestResult{}, err
	}
	labels, err := f.labelIDs(c, repo, pr.Labels)
	if err != nil {
		return PullRequestResult{}, err
	}
	title := pr.Title
	if pr.Draft && !hasDraftPrefix(title) {
		title = draftPrefix + title
	}
	existing, err := f.findOpen(c, repo, pr)
	if err != nil {
		return PullRequestResult{}, err
	}
	if existing == nil {
		created, resp, err := c.CreatePullRequest(repo.Owner, repo.Name, gitea.CreatePullRequestOption{
			Head: pr.Head, Base: pr.Base, Title: title, Body: pr.Body, Labels: labels,
		})
		if err != nil {
			return PullRequestResult{}, f.error(fmt.Errorf("opening a pull request %s -> %s on %s: %w", pr.Head, pr.Base, repo, err), resp)
		}
		return PullRequestResult{URL: created.HTMLURL, Number: created.Index, Created: true}, nil
	}
	body := pr.Body
	edited, resp, err := c.EditPullRequest(repo.Owner, repo.Name, existing.Index, gitea.EditPullRequestOption{Title: title, Body: &body})
	if err != nil {
		return PullRequestResult{}, f.error(fmt.Errorf("updating pull request #%d on %s: %w", existing.Index, repo, err), resp)
	}
	res := PullRequestResult{URL: edited.HTMLURL, Number: edited.Index}
	if len(labels) > 0 {
		// Adding, unlike the edit's label list, keeps labels someone else put on.
		if _, resp, err := c.AddIssueLabels(repo.Owner, repo.Name, existing.Index, gitea.IssueLabelsOption{Labels: labels}); err != nil {
			return res, f.error(fmt.Errorf("adding labels to pull request #%d on %s: %w", existing.Index, repo, err), resp)
		}
	}
	return res, nil
}

func hasDraftPrefix(title string) bool {
	t := strings.ToUpper(title)
	return strings.HasPrefix(t, "WIP:") || strings.HasPrefix(t, "[WIP]")
}

// findOpen returns the open pull request from pr.Head into pr.Base within repo, or nil.
func (f *giteaForge) findOpen(c *gitea.Client, repo Repo, pr PullRequest) (*gitea.PullRequest, error) {
	opt := gitea.ListPullRequestsOptions{State: gitea.StateOpen, ListOptions: gitea.ListOptions{Page: 1, PageSize: 50}}
	for {
		list, resp, err := c.ListRepoPullRequests(repo.Owner, repo.Name, opt)
		if err != nil {
			return nil, f.error(fmt.Errorf("listing pull requests of %s: %w", repo, err), resp)
		}
		for _, p := range list {
			if p.Head != nil && p.Base != nil && p.Head.Ref == pr.Head && p.Base.Ref == pr.Base && p.Head.RepoID == p.Base.RepoID {
				return p, nil
			}
		}
		if resp == nil || resp.NextPage == 0 || len(list) == 0 {
			return nil, nil
		}
		opt.Page = resp.NextPage
	}
}

// labelIDs maps label names to the ids Gitea takes: the repository's labels, then its
// organisation's. A name found in neither is an error naming it; Gitea would drop it.
func (f *giteaForge) labelIDs(c *gitea.Client, repo Repo, names []string) ([]int64, error) {
	if len(names) == 0 {
		return nil, nil
	}
	byName := map[string]int64{}
	for page := 1; page > 0; {
		list, resp, err := c.ListRepoLabels(repo.Owner, repo.Name, gitea.ListLabelsOptions{ListOptions: gitea.ListOptions{Page: page, PageSize: 50}})
		if err != nil {
			return nil, f.error(fmt.Errorf("listing labels of %s: %w", repo, err), resp)
		}
		for _, l := range list {
			byName[l.Name] = l.ID
		}
		page = 0
		if resp != nil && len(list) > 0 {
			page = resp.NextPage
		}
	}
	missing := func() []string {
		var m []string
		for _, n := range names {
			if _, ok := byName[n]; !ok {
				m = append(m, n)
			}
		}
		return m
	}
	if len(missing()) > 0 {
		// An owner that is a user has no organisation labels: 404, nothing to add.
		list, resp, err := c.ListOrgLabels(repo.Owner, gitea.ListOrgLabelsOptions{ListOptions: gitea.ListOptions{Page: 1, PageSize: 50}})
		if err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound) {
			return nil, f.error(fmt.Errorf("listing labels of organisation %s: %w", repo.Owner, err), resp)
		}
		for _, l := range list {
			if _, ok := byName[l.Name]; !ok {
				byName[l.Name] = l.ID
			}
		}
	}
	if m := missing(); len(m) > 0 {
		return nil, &Error{Reason: ReasonForgeError, Err: fmt.Errorf("labels %s do not exist in %s: create them first", strings.Join(m, ", "), repo)}
	}
	ids := make([]int64, 0, len(names))
	for _, n := range names {
		if id := byName[n]; !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (f *giteaForge) error(err error, resp *gitea.Response) error {
	if resp == nil || resp.Response == nil {
		return classify(0, 0, err, f.cfg.Token)
	}
	return classify(resp.StatusCode, retryAfterHeader(resp.Header, time.Now()), err, f.cfg.Token)
}
