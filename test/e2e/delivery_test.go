//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// The dev cluster's forge (hack/dev-up.sh): Gitea on the bridge, its admin token in the dev
// directory, GitProvider dev-gitea.
var (
	giteaHostURL = getenv("E2E_GITEA_URL", "http://10.203.0.1:13000")
	giteaPodURL  = getenv("E2E_GITEA_POD_URL", "http://gitea.agentry.test:13000")
	giteaToken   = getenv("E2E_GITEA_TOKEN_FILE", "/var/lib/agentry-cluster/dev/gitea/token")
	s3Endpoint   = getenv("E2E_S3_ENDPOINT", "10.203.0.1:17070")
)

func gitea(t *testing.T, method, path, body string) []byte {
	t.Helper()
	tok, err := os.ReadFile(giteaToken)
	if err != nil {
		t.Fatalf("the dev forge's token (make dev writes it): %v", err)
	}
	req, err := http.NewRequest(method, giteaHostURL+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("gitea %s %s: %s\n%s", method, path, resp.Status, out)
	}
	return out
}

// TestDeliveryOpensAPullRequestOnGitea runs a session with spec.delivery.pullRequest against
// the dev Gitea: the pull request's diff is the archived patch, a second delivery attempt
// (the controller re-reading the session) opens no second one, and the runner pod never
// held a push credential.
func TestDeliveryOpensAPullRequestOnGitea(t *testing.T) {
	repo := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	gitea(t, "POST", "/user/repos", fmt.Sprintf(`{"name":%q,"auto_init":true,"default_branch":"main","readme":"Default"}`, repo))
	t.Cleanup(func() { gitea(t, "DELETE", "/repos/agentry-dev/"+repo, "") })
	gitea(t, "POST", "/repos/agentry-dev/"+repo+"/labels", `{"name":"agentry","color":"#00aabb"}`)

	// Delivery is off in a namespace until an AgentPolicy allows it.
	if _, err := kubectlIn(manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentPolicy
metadata: {name: delivery, namespace: %s}
spec:
  delivery: {allowedGitProviders: [dev-gitea], allowedRepositories: ["gitea.agentry.test:13000/agentry-dev/*"]}`, namespace), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentpolicy", "delivery", "--ignore-not-found") }) //nolint:errcheck

	name := "deliver-pr"
	m := manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: %s, namespace: %s}
spec:
  task: "[e2e:success] List the workspace and write NOTES.md."
  repository: {url: "%s/agentry-dev/%s.git", ref: main}
  model: {provider: %s, name: scripted}
  tools: [list_dir, read_file, write_file]
  limits: {maxTurns: 10}
  delivery:
    gitProvider: dev-gitea
    pullRequest:
      labels: [agentry]
      body: "{{ .Summary }}\n\nSession {{ .Namespace }}/{{ .Name }}: {{ .FilesChanged }} file(s), +{{ .Additions }}"`,
		name, namespace, giteaPodURL, repo, providerName)
	if _, err := kubectlIn(m, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsession", name, "--ignore-not-found", "--wait=false") }) //nolint:errcheck

	// The runner pod, checked while it exists: no container and no volume carries a Secret
	// other than the checkout's (none here) and no env var names a forge token.
	var podSeen bool
	eventually(t, 3*time.Minute, "the session to be delivered", func() bool {
		if !podSeen {
			if p := getPod(t, name+"-runner"); p != nil {
				podSeen = true
				for _, v := range p.Spec.Volumes {
					if v.Secret != nil {
						t.Errorf("runner pod mounts Secret %s", v.Secret.SecretName)
					}
					if v.Projected != nil {
						for _, src := range v.Projected.Sources {
							if src.Secret != nil {
								t.Errorf("runner pod projects Secret %s", src.Secret.Name)
							}
						}
					}
				}
				for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
					for _, e := range c.Env {
						if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
							t.Errorf("container %s takes %s from Secret %s", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
						}
						if strings.Contains(strings.ToLower(e.Name), "token") || strings.Contains(e.Value, "dev-gitea") {
							t.Errorf("container %s has env %s", c.Name, e.Name)
						}
					}
					for _, ef := range c.EnvFrom {
						if ef.SecretRef != nil {
							t.Errorf("container %s takes env from Secret %s", c.Name, ef.SecretRef.Name)
						}
					}
				}
			}
		}
		c := meta.FindStatusCondition(getSession(t, name).Status.Conditions, v1.ConditionDelivered)
		return c != nil && c.Status != metav1.ConditionUnknown
	})
	s := getSession(t, name)
	if !podSeen {
		t.Fatalf("the runner pod was never seen; the session: %s %+v", s.Status.Phase, s.Status.Conditions)
	}
	c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered)
	if c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonDelivered {
		t.Fatalf("Delivered = %s/%s: %s", c.Status, c.Reason, c.Message)
	}
	d := s.Status.Delivery
	if d == nil || d.PullRequestNumber == 0 || !strings.Contains(d.PullRequestURL, "/agentry-dev/"+repo+"/pulls/") {
		t.Fatalf("status.delivery = %+v", d)
	}

	var pr struct {
		Title  string `json:"title"`
		Body   string `json:"body"`
		Head   struct{ Ref, Sha string }
		Base   struct{ Ref string }
		Labels []struct{ Name string }
	}
	if err := json.Unmarshal(gitea(t, "GET", fmt.Sprintf("/repos/agentry-dev/%s/pulls/%d", repo, d.PullRequestNumber), ""), &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Head.Ref != "agentry/"+name || pr.Base.Ref != "main" || pr.Head.Sha != d.CommitSHA {
		t.Fatalf("pull request head %s@%s base %s; status says %s@%s", pr.Head.Ref, pr.Head.Sha, pr.Base.Ref, d.Branch, d.CommitSHA)
	}
	if pr.Title != "Listed the workspace and wrote NOTES.md." || !strings.Contains(pr.Body, "Session "+namespace+"/"+name+": 1 file(s), +1") {
		t.Fatalf("pull request title %q body %q", pr.Title, pr.Body)
	}
	if len(pr.Labels) != 1 || pr.Labels[0].Name != "agentry" {
		t.Fatalf("labels = %+v", pr.Labels)
	}

	// The pull request's diff is the archived patch, hunk for hunk.
	archived := readArchived(t, s.Status.Patch.URI)
	prDiff := string(gitea(t, "GET", fmt.Sprintf("/repos/agentry-dev/%s/pulls/%d.diff", repo, d.PullRequestNumber), ""))
	if hunks(prDiff) != hunks(archived) {
		t.Fatalf("pull request diff differs from the archived patch:\n--- pull request\n%s\n--- archived\n%s", prDiff, archived)
	}

	// One pull request for the branch, however often the controller looks again.
	kubectl("-n", namespace, "annotate", "agentsession", name, "e2e/poke=1", "--overwrite") //nolint:errcheck
	var open []struct{ Number int64 }
	if err := json.Unmarshal(gitea(t, "GET", "/repos/agentry-dev/"+repo+"/pulls?state=all", ""), &open); err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 {
		t.Fatalf("%d pull requests, want 1", len(open))
	}
	if ev, _ := kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name="+name, "-o", "jsonpath={.items[*].reason}"); !strings.Contains(ev, "Delivered") {
		t.Fatalf("no Delivered event; events: %s", ev)
	}
}

// hunks is the patch's file headers and changed lines, the part both sides must agree on
// (index lines and context differ in form between git implementations).
func hunks(patch string) string {
	var b strings.Builder
	for _, l := range strings.Split(patch, "\n") {
		if strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func readArchived(t *testing.T, uri string) string {
	t.Helper()
	bucket, key, ok := strings.Cut(strings.TrimPrefix(uri, "s3://"), "/")
	if !ok {
		t.Fatalf("bad artifact uri %q", uri)
	}
	mc, err := minio.New(s3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(getenv("E2E_S3_ACCESS_KEY", "agentry-dev"), getenv("E2E_S3_SECRET_KEY", "agentry-dev-secret"), "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obj, err := mc.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %s: %v", uri, err)
	}
	return string(b)
}
