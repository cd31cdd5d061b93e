package forge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/test/giteaserver"
)

// gt is the package's one real Gitea (hack/build-gitea.sh builds it).
var gt *giteaserver.Server

func TestMain(m *testing.M) {
	os.Exit(runWithGitea(m))
}

func runWithGitea(m *testing.M) int {
	dir, err := os.MkdirTemp("", "forge-gitea-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if gt, err = giteaserver.Start(ctx, giteaserver.Binary(), dir); err != nil {
		fmt.Fprintf(os.Stderr, "starting Gitea for the forge tests (run 'bash hack/build-gitea.sh' if it is missing): %v\n", err)
		return 1
	}
	defer gt.Stop()
	return m.Run()
}

// giteaRepo creates a repository with main and a branch agentry/x one commit ahead.
func giteaRepo(t *testing.T, ctx context.Context, name string) (Repo, string) {
	t.Helper()
	cloneURL, err := gt.CreateRepo(ctx, "", name, map[string]string{"README.md": "# " + name + "\n"}, "main")
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "w")
	for _, args := range [][]string{
		{"clone", "-q", cloneURL, work},
		{"-C", work, "checkout", "-q", "-b", "agentry/x"},
		{"-C", work, "commit", "-q", "--allow-empty", "-m", "The change"},
		{"-C", work, "push", "-q", "origin", "agentry/x"},
	} {
		if _, err := gt.Git(ctx, "", args...); err != nil {
			t.Fatal(err)
		}
	}
	return Repo{Owner: gt.AdminUser, Name: name}, work
}

func sdk(t *testing.T) *gitea.Client {
	t.Helper()
	c, err := gitea.NewClient(gt.URL, gitea.SetToken(gt.AdminToken), gitea.SetGiteaVersion(""))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func giteaForgeFor(t *testing.T, token string) Forge {
	t.Helper()
	fg, err := NewGitea(GiteaConfig{URL: gt.URL + "/", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return fg
}

// TestGiteaOpensThenUpdates opens a pull request with a label on a real Gitea, then asked
// again with a new body updates the same one.
func TestGiteaOpensThenUpdates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo, _ := giteaRepo(t, ctx, "opens")
	if _, _, err := sdk(t).CreateLabel(repo.Owner, repo.Name, gitea.CreateLabelOption{Name: "agentry", Color: "#00aabb"}); err != nil {
		t.Fatal(err)
	}
	fg := giteaForgeFor(t, gt.AdminToken)
	pr := PullRequest{Head: "agentry/x", Base: "main", Title: "Fix it", Body: "first", Labels: []string{"agentry"}}

	first, err := fg.EnsurePullRequest(ctx, repo, pr)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.Number == 0 || first.URL != fmt.Sprintf("%s/%s/%s/pulls/%d", gt.URL, repo.Owner, repo.Name, first.Number) {
		t.Errorf("first result = %+v, want a created pull request with its web URL", first)
	}
	pr.Body = "second"
	second, err := fg.EnsurePullRequest(ctx, repo, pr)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PullRequestResult{URL: first.URL, Number: first.Number}, second); diff != "" {
		t.Errorf("second result (-want +got):\n%s", diff)
	}

	got, _, err := sdk(t).GetPullRequest(repo.Owner, repo.Name, first.Number)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, l := range got.Labels {
		labels = append(labels, l.Name)
	}
	if got.Title != "Fix it" || got.Body != "second" || got.Head.Ref != "agentry/x" || got.Base.Ref != "main" || !cmp.Equal(labels, []string{"agentry"}) {
		t.Errorf("pull request = title %q, body %q, %s -> %s, labels %v", got.Title, got.Body, got.Head.Ref, got.Base.Ref, labels)
	}
	open, _, err := sdk(t).ListRepoPullRequests(repo.Owner, repo.Name, gitea.ListPullRequestsOptions{State: gitea.StateAll})
	if err != nil || len(open) != 1 {
		t.Errorf("pull requests = %d (%v), want 1", len(open), err)
	}
}

// TestGiteaDraftAndUnknownLabel: a draft is a "WIP: " title, Gitea's own draft marker; a
// label the repository lacks is an error naming it, before anything is opened.
func TestGiteaDraftAndUnknownLabel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo, _ := giteaRepo(t, ctx, "draft")
	fg := giteaForgeFor(t, gt.AdminToken)

	_, err := fg.EnsurePullRequest(ctx, repo, PullRequest{Head: "agentry/x", Base: "main", Title: "T", Labels: []string{"no-such-label"}})
	var fe *Error
	if !errors.As(err, &fe) || fe.Reason != ReasonForgeError || fe.Retryable || !strings.Contains(err.Error(), "no-such-label") {
		t.Errorf("unknown label: error %v, want a ForgeError naming it", err)
	}

	res, err := fg.EnsurePullRequest(ctx, repo, PullRequest{Head: "agentry/x", Base: "main", Title: "Draft change", Draft: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := sdk(t).GetPullRequest(repo.Owner, repo.Name, res.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "WIP: Draft change" || !got.Draft {
		t.Errorf("draft pull request: title %q, draft %v; want WIP: Draft change, true", got.Title, got.Draft)
	}
}

// TestGiteaAuth: a wrong token is AuthFailed, never retried, and not in the message; the
// right one's push credentials push a branch over HTTP.
func TestGiteaAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo, work := giteaRepo(t, ctx, "auth")

	const wrong = "0123456789abcdef0123456789abcdef01234567"
	bad := giteaForgeFor(t, wrong)
	for name, call := range map[string]func() error{
		"EnsurePullRequest": func() error {
			_, err := bad.EnsurePullRequest(ctx, repo, PullRequest{Head: "agentry/x", Base: "main", Title: "T"})
			return err
		},
		"PushCredentials": func() error { _, _, err := bad.PushCredentials(ctx, repo); return err },
	} {
		err := call()
		var fe *Error
		if !errors.As(err, &fe) || fe.Reason != ReasonAuthFailed || fe.Retryable {
			t.Errorf("%s with a wrong token: %v, want AuthFailed, not retryable", name, err)
		} else if strings.Contains(err.Error(), wrong) {
			t.Errorf("%s: error carries the token: %v", name, err)
		}
	}

	user, pass, err := giteaForgeFor(t, gt.AdminToken).PushCredentials(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if user != gt.AdminUser || pass != gt.AdminToken {
		t.Errorf("PushCredentials = %q, %q; want the token's user and the token", user, pass)
	}
	if _, err := giteaserver.RunGit(ctx, work, giteaserver.BasicAuthHeader(user, pass), "push", "-q", "origin", "HEAD:refs/heads/agentry/pushed"); err != nil {
		t.Fatalf("pushing with the credentials: %v", err)
	}
	if out, err := gt.Git(ctx, work, "ls-remote", "origin", "refs/heads/agentry/pushed"); err != nil || out == "" {
		t.Errorf("pushed branch not on the server: %q, %v", out, err)
	}
	if _, err := giteaserver.RunGit(ctx, work, giteaserver.BasicAuthHeader(user, wrong), "push", "-q", "origin", "HEAD:refs/heads/agentry/refused"); err == nil {
		t.Error("push with a wrong token succeeded")
	}
}
